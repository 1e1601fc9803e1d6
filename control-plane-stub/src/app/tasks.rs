//! Tasks: RunTask (validate, place, record each task with its agent's payload, deliver),
//! StopTask, DescribeTasks, ListTasks, and a task's event history.

use std::collections::HashMap;
use std::sync::Arc;

use super::clusters::Clusters;
use super::instances::Instances;
use super::secrets::Secrets;
use super::security_groups::{NetworkConfiguration, SecurityGroups};
use super::tags::{NewTaskTags, Tags};
use super::task_definitions::TaskDefinitions;
use super::CpError;
use crate::agents::{wire, Agents};
use crate::clock::now_ms;
use crate::domain::ids::{self, Arns};
use crate::domain::placement::{ConstraintSpec, Placement, StrategySpec};
use crate::domain::security::{self, IngressRule};
use crate::domain::service::check_launch_type;
use crate::domain::tags::Resource;
use crate::domain::task::{
    Container, ContainerStatus, Task, TaskEvent, TaskStatus, SCHEDULER_STOP_CODE, USER_STOP_CODE,
};
use crate::domain::taskdef::{self, required_attributes, TaskDefSpec};
use crate::scheduler::placement::{self, Candidate, PlacementFailure};
use crate::state::{Store, TaskDefRecord, TaskFilter};

pub struct RunTaskInput {
    pub cluster: String,
    pub task_definition: String,
    pub count: i64,
    pub started_by: Option<String>,
    pub group: Option<String>,
    pub overrides: Option<serde_json::Value>,
    /// RunTask's networkConfiguration, when given.
    pub network_configuration: Option<NetworkConfiguration>,
    /// A service's task: its revision may have been deregistered since (ECS keeps running a
    /// service on a deregistered revision; RunTask refuses one).
    pub from_service: bool,
    /// The request's (or the service's) placementStrategy and placementConstraints.
    pub strategies: Vec<StrategySpec>,
    pub constraints: Vec<ConstraintSpec>,
    /// StartTask (and a DAEMON service): one task on each of these instances (ids), checked
    /// for resources and constraints, no strategy; `count` is ignored.
    pub on_instances: Option<Vec<String>>,
    /// tags, propagateTags, enableECSManagedTags.
    pub tags: NewTaskTags,
    /// EC2 (the default) or EXTERNAL.
    pub launch_type: Option<String>,
    /// enableExecuteCommand: ExecuteCommand may run commands in the task's containers.
    pub enable_execute_command: bool,
}

#[derive(Clone)]
pub struct Tasks {
    pub(super) store: Arc<dyn Store>,
    pub(super) agents: Arc<Agents>,
    pub(super) arns: Arns,
    pub(super) clusters: Clusters,
    pub(super) task_definitions: TaskDefinitions,
    pub(super) instances: Instances,
    pub(super) security_groups: SecurityGroups,
    pub(super) secrets: Secrets,
    pub(super) tags: Tags,
}

impl Tasks {
    pub fn run(&self, input: RunTaskInput) -> Result<(Vec<Task>, Vec<PlacementFailure>), CpError> {
        if !(1..=10).contains(&input.count) {
            return Err(CpError::InvalidParameter(format!(
                "count: {} must be between 1 and 10",
                input.count
            )));
        }
        self.clusters.require(&input.cluster)?;
        if let Some(lt) = &input.launch_type {
            check_launch_type(lt).map_err(CpError::InvalidParameter)?;
        }
        let record = if input.from_service {
            self.task_definitions.get(&input.task_definition)?
        } else {
            self.task_definitions.runnable(&input.task_definition)?
        };
        let td_arn = self.arns.task_definition(&record.family, record.revision);
        let task_tags = self.tags.for_new_tasks(
            &input.cluster,
            &record.family,
            record.revision,
            &input.tags,
        )?;
        let overrides = taskdef::parse_overrides(input.overrides.as_ref())?;
        let spec = taskdef::apply_overrides(&taskdef::parse(&record.raw)?, &overrides)?;
        self.secrets.check_repository_credentials(&spec)?;
        let needs = spec.needs();
        let host_ports = spec.host_ports();
        let groups = self
            .security_groups
            .for_task(&spec, input.network_configuration.as_ref())?;
        let group_ids: Vec<String> = groups.iter().map(|g| g.id.clone()).collect();
        // No group named: all ingress is allowed (Berth has no VPC default group to fall back on).
        let ingress: Option<Vec<IngressRule>> =
            (!groups.is_empty()).then(|| security::union(&groups));

        let placement = Placement::new(
            &input.strategies,
            &input.constraints,
            &spec.placement_constraints,
            input.from_service,
        )
        .map_err(|e| CpError::InvalidParameter(e.0))?;
        let candidates = self.instances.candidates(&input.cluster)?;
        let now = now_ms();
        let mut tasks = Vec::new();
        let mut failures = Vec::new();
        let group = task_group(&input, &record);
        // Each target instance is a placement of one copy among that instance alone.
        let rounds: Vec<(usize, Vec<Candidate>)> = match &input.on_instances {
            None => vec![(input.count as usize, candidates)],
            Some(ids) => ids
                .iter()
                .map(|id| {
                    let only: Vec<Candidate> = candidates
                        .iter()
                        .filter(|c| &c.instance_id == id)
                        .cloned()
                        .collect();
                    (1, only)
                })
                .collect(),
        };
        let required = required_attributes(&record.raw);
        for (count, candidates) in rounds {
            let request = placement::Request {
                needs,
                ports: &host_ports,
                network_mode: &spec.network_mode,
                required_attributes: &required,
                count,
                group: &group,
                task_definition_arn: &td_arn,
                placement: &placement,
                seed: fastrand::u64(..),
            };
            for outcome in placement::place(&request, &candidates) {
                match outcome {
                    Ok(instance_id) => {
                        let attribute = |name: &str| {
                            let c = candidates.iter().find(|c| c.instance_id == instance_id)?;
                            let (_, v) = c.attributes.iter().find(|(n, _)| n == name)?;
                            Some(v.clone()).filter(|v| !v.is_empty())
                        };
                        let zone = attribute("ecs.availability-zone");
                        let architecture = attribute("ecs.cpu-architecture");
                        let mut task = new_task(&input, &record, &spec, instance_id, now);
                        task.availability_zone = zone;
                        task.cpu_architecture = architecture;
                        task.security_groups = group_ids.clone();
                        tasks.push(task)
                    }
                    Err(f) => failures.push(f),
                }
            }
        }
        if tasks.is_empty() {
            return Ok((tasks, failures));
        }
        let specs: HashMap<&str, berth_proto::v1::TaskSpec> = tasks
            .iter()
            .map(|t| {
                let arn = self.arns.task(&t.cluster, &t.id);
                (
                    t.id.as_str(),
                    wire::task_spec(&arn, t, &spec, ingress.as_deref()),
                )
            })
            .collect();
        self.store.insert_tasks(&tasks, &|seq, group| {
            wire::start_payload(
                seq,
                group.iter().map(|t| specs[t.id.as_str()].clone()).collect(),
            )
        })?;
        // Tags are not the agent's business: recorded next, in their own transaction.
        self.tags.set_new(
            tasks
                .iter()
                .map(|t| {
                    let r = Resource::Task {
                        cluster: t.cluster.clone(),
                        id: t.id.clone(),
                    };
                    (r, task_tags.clone())
                })
                .collect(),
        )?;
        let mut instances: Vec<&str> = tasks.iter().map(|t| t.instance_id.as_str()).collect();
        instances.dedup();
        for instance in instances {
            self.agents.deliver(instance)?;
        }
        for t in &tasks {
            tracing::info!(task.id = %t.id, instance.id = %t.instance_id, family = %t.family, "task placed");
        }
        Ok((tasks, failures))
    }

    /// StartTask: one task on each named container instance (ids or ARNs, at most 10). An
    /// instance the cluster does not have is a MISSING failure; one that cannot take the task
    /// fails with placement's reason.
    pub fn start(
        &self,
        mut input: RunTaskInput,
        instances: &[String],
    ) -> Result<(Vec<Task>, Vec<PlacementFailure>), CpError> {
        if instances.is_empty() || instances.len() > 10 {
            return Err(CpError::InvalidParameter(format!(
                "containerInstances: 1 to 10 container instances, {} given",
                instances.len()
            )));
        }
        self.clusters.require(&input.cluster)?;
        let known = self.store.list_instances(&input.cluster)?;
        let mut ids = Vec::new();
        let mut missing = Vec::new();
        for r in instances {
            let id = ids::resource_id(r);
            match known.iter().find(|i| i.id == id) {
                Some(i) => ids.push(i.id.clone()),
                None => missing.push(PlacementFailure {
                    arn: self.arns.container_instance(&input.cluster, id),
                    reason: "MISSING",
                    detail: "no such container instance in the cluster".to_string(),
                }),
            }
        }
        if ids.is_empty() {
            return Ok((Vec::new(), missing));
        }
        input.count = ids.len() as i64;
        input.strategies.clear();
        input.on_instances = Some(ids);
        let (tasks, mut failures) = self.run(input)?;
        failures.extend(missing);
        Ok((tasks, failures))
    }

    /// Finds a task of `cluster` by ARN or id.
    pub(super) fn find_task(
        &self,
        cluster: &str,
        reference: &str,
    ) -> Result<Option<Task>, CpError> {
        Ok(self
            .store
            .get_task(ids::resource_id(reference))?
            .filter(|t| t.cluster == cluster))
    }

    pub fn stop(
        &self,
        cluster: &str,
        reference: &str,
        reason: Option<&str>,
    ) -> Result<Task, CpError> {
        self.clusters.require(cluster)?;
        let Some(task) = self.find_task(cluster, reference)? else {
            return Err(CpError::TaskNotFound(reference.to_string()));
        };
        let task = self
            .stop_as(&task, USER_STOP_CODE, reason)?
            .ok_or_else(|| CpError::TaskNotFound(reference.to_string()))?;
        tracing::info!(task.id = %task.id, instance.id = %task.instance_id, "stop requested");
        Ok(task)
    }

    /// A service's scheduler stops one of its tasks (stop code ServiceSchedulerInitiated).
    pub fn stop_for_service(&self, task: &Task, reason: &str) -> Result<Option<Task>, CpError> {
        self.stop_as(task, SCHEDULER_STOP_CODE, Some(reason))
    }

    /// Records the stop with its payload, then delivers it.
    fn stop_as(
        &self,
        task: &Task,
        code: &str,
        reason: Option<&str>,
    ) -> Result<Option<Task>, CpError> {
        let arn = self.arns.task(&task.cluster, &task.id);
        let stopped = self
            .store
            .stop_task(&task.id, code, reason, now_ms(), &|seq, t| {
                wire::stop_payload(seq, &arn, t.stopped_reason.as_deref().unwrap_or(""))
            })?;
        if let Some(t) = &stopped {
            self.agents.deliver(&t.instance_id)?;
        }
        Ok(stopped)
    }

    /// Found tasks, and the references that matched nothing.
    pub fn describe(
        &self,
        cluster: &str,
        references: &[String],
    ) -> Result<(Vec<Task>, Vec<String>), CpError> {
        self.clusters.require(cluster)?;
        let mut found = Vec::new();
        let mut missing = Vec::new();
        for r in references {
            match self.find_task(cluster, r)? {
                Some(t) => found.push(t),
                None => missing.push(r.clone()),
            }
        }
        Ok((found, missing))
    }

    pub fn list(&self, filter: TaskFilter) -> Result<Vec<Task>, CpError> {
        if let Some(c) = &filter.cluster {
            self.clusters.require(c)?;
        }
        Ok(self.store.list_tasks(&filter)?)
    }

    /// The state changes applied to a task (by id or ARN), in sequence order.
    pub fn events(&self, reference: &str) -> Result<(Task, Vec<TaskEvent>), CpError> {
        let not_found = || CpError::NoSuchTask(reference.to_string());
        let id = ids::resource_id(reference);
        let task = self.store.get_task(id)?.ok_or_else(not_found)?;
        // An ARN names the task's cluster too: another cluster's ARN does not find it.
        if let Some(cluster) = ids::task_arn_cluster(reference) {
            if cluster != task.cluster {
                return Err(not_found());
            }
        }
        let events = self.store.task_events(id)?.ok_or_else(not_found)?;
        Ok((task, events))
    }
}

fn new_task(
    input: &RunTaskInput,
    record: &TaskDefRecord,
    spec: &TaskDefSpec,
    instance_id: String,
    now: i64,
) -> Task {
    Task {
        id: ids::new_id(),
        cluster: input.cluster.clone(),
        instance_id,
        family: record.family.clone(),
        revision: record.revision,
        last_status: TaskStatus::Pending,
        desired_status: TaskStatus::Running,
        created_at_ms: now,
        started_at_ms: None,
        stopping_at_ms: None,
        stopped_at_ms: None,
        execution_stopped_at_ms: None,
        stop_code: None,
        stopped_reason: None,
        group: task_group(input, record),
        started_by: input.started_by.clone(),
        cpu: spec.cpu,
        memory: spec.memory,
        overrides: input
            .overrides
            .clone()
            .unwrap_or_else(|| serde_json::json!({"containerOverrides": []})),
        version: 1,
        needs: spec.needs(),
        host_ports: spec.host_ports(),
        network_mode: spec.network_mode.clone(),
        security_groups: Vec::new(),
        network: None,
        pull_started_at_ms: None,
        pull_stopped_at_ms: None,
        protected_until_ms: None,
        availability_zone: None,
        cpu_architecture: None,
        launch_type: input.launch_type.clone().unwrap_or_else(|| "EC2".into()),
        enable_execute_command: input.enable_execute_command,
        containers: spec
            .containers
            .iter()
            .map(|c| Container {
                id: uuid::Uuid::new_v4().to_string(),
                name: c.name.clone(),
                image: c.image.clone(),
                runtime_id: None,
                last_status: ContainerStatus::Pending,
                exit_code: None,
                reason: None,
                cpu: c.cpu,
                memory: c.memory,
                memory_reservation: c.memory_reservation,
                restart_count: 0,
                port_mappings: c.port_mappings.clone(),
                health: None,
                image_digest: None,
            })
            .collect(),
    }
}

/// RunTask's group, or ECS's default: `family:NAME`.
fn task_group(input: &RunTaskInput, record: &TaskDefRecord) -> String {
    input
        .group
        .clone()
        .unwrap_or_else(|| format!("family:{}", record.family))
}
