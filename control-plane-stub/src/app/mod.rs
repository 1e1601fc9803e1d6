//! The control plane's operations, shared by the ECS API and the agent service. Domain types in
//! and out; the two edges translate to JSON and protobuf and map errors in their own single place.

use std::collections::HashMap;
use std::sync::Arc;

use thiserror::Error;

use crate::agents::sessions::Sessions;
use crate::domain::compat;
use crate::domain::ids::{self, Arns};
use crate::domain::instance::{check_credential, Instance, InstanceInfo, Refusal};
use crate::domain::secrets::{self, SecretInfo};
use crate::domain::security::{self, IngressRule, SecurityGroup};
use crate::domain::task::{AgentChange, Container, ContainerStatus, Task, TaskEvent, TaskStatus};
use crate::domain::taskdef::{
    self, HealthDef, Needs, PortRange, Protocol, TaskDefError, TaskDefSpec,
};
use crate::scheduler::placement::{self, Candidate, PlacementFailure};
use crate::state::{ChangeOutcome, ClusterCounts, Store, StoreError, TaskDefRecord, TaskFilter};

#[derive(Debug, Error)]
pub enum CpError {
    #[error("{0}")]
    InvalidParameter(String),
    #[error("{0}")]
    Client(String),
    #[error(transparent)]
    TaskDefinition(#[from] TaskDefError),
    #[error("Cluster not found: {0}")]
    ClusterNotFound(String),
    #[error("Unable to describe task definition: {0} not found")]
    TaskDefinitionNotFound(String),
    #[error("TaskDefinition {0} is inactive")]
    TaskDefinitionInactive(String),
    #[error("The referenced task was not found: {0}")]
    TaskNotFound(String),
    /// A Berth endpoint's task (by id or ARN) that does not exist: 404, unlike ECS's
    /// operations, which answer an unknown task with a 400.
    #[error("The referenced task was not found: {0}")]
    NoSuchTask(String),
    #[error("The security group {0:?} does not exist")]
    SecurityGroupNotFound(String),
    #[error("The secret {0:?} does not exist")]
    SecretNotFound(String),
    #[error("The security group {group} is in use by {tasks} task(s) that are not stopped (e.g. {example}); stop them first")]
    SecurityGroupInUse {
        group: String,
        tasks: usize,
        example: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub struct ControlPlane {
    pub store: Arc<dyn Store>,
    pub sessions: Sessions,
    /// Log requests waiting for their agent's chunks.
    pub logs: crate::api::berth::logs::LogRouter,
    pub arns: Arns,
    pub heartbeat_interval_ms: u32,
    /// How often each session gets a fresh TaskManifest.
    pub manifest_interval_ms: u32,
}

pub struct RunTaskInput {
    pub cluster: String,
    pub task_definition: String,
    pub count: i64,
    pub started_by: Option<String>,
    pub group: Option<String>,
    pub overrides: Option<serde_json::Value>,
    /// RunTask's networkConfiguration, when given.
    pub network_configuration: Option<NetworkConfiguration>,
}

/// RunTask's `networkConfiguration.awsvpcConfiguration`, as far as Berth acts on it: subnets
/// and assignPublicIp are accepted and ignored (Berth's task subnet is the agent's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkConfiguration {
    /// Security group ids or names.
    pub security_groups: Vec<String>,
}

/// The message ECS answers a networkConfiguration for a task that is not awsvpc with.
pub const NETWORK_CONFIGURATION_NOT_AWSVPC: &str =
    "Network Configuration is not valid for the given networkMode of this task definition.";

/// An instance with what the API shows about it beyond the stored record.
pub struct InstanceView {
    pub instance: Instance,
    pub connected: bool,
    pub used: Needs,
    /// Host ports held: the instance's reserved ports and its tasks' fixed host ports.
    pub used_ports: Vec<PortRange>,
    pub running_tasks: i64,
    pub pending_tasks: i64,
}

/// What the task definitions of some tasks say about their containers' health (essential,
/// has a healthCheck): what a task's healthStatus is decided over.
#[derive(Debug, Default)]
pub struct HealthDefs(HashMap<(String, i64), Vec<HealthDef>>);

impl HealthDefs {
    /// The task's containers, as its definition has them; empty when it cannot be found.
    pub fn of(&self, t: &Task) -> &[HealthDef] {
        self.0
            .get(&(t.family.clone(), t.revision))
            .map_or(&[], Vec::as_slice)
    }
}

/// A successful registration.
pub struct Registered {
    pub instance_id: String,
    /// Only on first registration.
    pub secret: Option<String>,
}

impl ControlPlane {
    pub fn new(
        store: Arc<dyn Store>,
        arns: Arns,
        heartbeat_interval_ms: u32,
        manifest_interval_ms: u32,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            sessions: Sessions::default(),
            logs: Default::default(),
            arns,
            heartbeat_interval_ms,
            manifest_interval_ms,
        })
    }

    fn require_cluster(&self, name: &str) -> Result<(), CpError> {
        if self.store.cluster_exists(name)? {
            Ok(())
        } else {
            Err(CpError::ClusterNotFound(name.to_string()))
        }
    }

    // ------------------------------------------------------------ clusters

    pub fn create_cluster(&self, name: &str) -> Result<(), CpError> {
        if !valid_cluster_name(name) {
            return Err(CpError::InvalidParameter(format!(
                "clusterName: {name:?} must be 1-255 letters, digits, hyphens or underscores"
            )));
        }
        self.store.ensure_cluster(name, now_ms())?;
        Ok(())
    }

    pub fn list_clusters(&self) -> Result<Vec<String>, CpError> {
        Ok(self.store.list_clusters()?)
    }

    pub fn cluster_counts(&self, name: &str) -> Result<Option<ClusterCounts>, CpError> {
        if !self.store.cluster_exists(name)? {
            return Ok(None);
        }
        Ok(Some(self.store.cluster_counts(name)?))
    }

    // ------------------------------------------------------------ task definitions

    pub fn register_task_definition(
        &self,
        raw: &serde_json::Value,
    ) -> Result<TaskDefRecord, CpError> {
        let spec = taskdef::parse(raw)?;
        let review = compat::review(raw);
        if !review.refused.is_empty() {
            return Err(CpError::Client(format!(
                "not supported on Berth: {}",
                review.refused.join("; ")
            )));
        }
        let record = self
            .store
            .insert_task_definition(&spec.family, raw, now_ms())?;
        if !review.ignored.is_empty() {
            tracing::warn!(
                family = %spec.family,
                revision = record.revision,
                "accepted and ignored: {}",
                review.ignored.join(", ")
            );
        }
        if !review.unknown.is_empty() {
            tracing::warn!(
                family = %spec.family,
                revision = record.revision,
                "unknown fields, kept and echoed back: {}",
                review.unknown.join(", ")
            );
        }
        Ok(record)
    }

    pub fn task_definition(&self, reference: &str) -> Result<TaskDefRecord, CpError> {
        let (family, revision) = ids::parse_task_definition_ref(reference).ok_or_else(|| {
            CpError::Client(format!(
                "taskDefinition: {reference:?} is not a family, family:revision or task definition ARN"
            ))
        })?;
        self.store
            .get_task_definition(&family, revision)?
            .ok_or_else(|| CpError::TaskDefinitionNotFound(reference.to_string()))
    }

    pub fn list_task_definitions(
        &self,
        family_prefix: Option<&str>,
        active: Option<bool>,
    ) -> Result<Vec<(String, i64)>, CpError> {
        Ok(self.store.list_task_definitions(family_prefix, active)?)
    }

    pub fn deregister_task_definition(&self, reference: &str) -> Result<TaskDefRecord, CpError> {
        let (family, revision) = ids::parse_task_definition_ref(reference)
            .and_then(|(f, r)| Some((f, r?)))
            .ok_or_else(|| {
                CpError::InvalidParameter(format!(
                    "taskDefinition: {reference:?} must name a revision (family:revision or ARN)"
                ))
            })?;
        self.store
            .deregister_task_definition(&family, revision, now_ms())?
            .ok_or_else(|| CpError::TaskDefinitionNotFound(reference.to_string()))
    }

    // ------------------------------------------------------------ tasks

    pub fn run_task(
        &self,
        input: RunTaskInput,
    ) -> Result<(Vec<Task>, Vec<PlacementFailure>), CpError> {
        if !(1..=10).contains(&input.count) {
            return Err(CpError::InvalidParameter(format!(
                "count: {} must be between 1 and 10",
                input.count
            )));
        }
        self.require_cluster(&input.cluster)?;
        let record = self.task_definition(&input.task_definition)?;
        let td_arn = self.arns.task_definition(&record.family, record.revision);
        if !record.active {
            return Err(CpError::TaskDefinitionInactive(td_arn));
        }
        let overrides = taskdef::parse_overrides(input.overrides.as_ref())?;
        let spec = taskdef::apply_overrides(&taskdef::parse(&record.raw)?, &overrides)?;
        self.check_repository_credentials(&spec)?;
        let needs = spec.needs();
        let host_ports = spec.host_ports();
        let groups = self.task_security_groups(&spec, input.network_configuration.as_ref())?;
        let group_ids: Vec<String> = groups.iter().map(|g| g.id.clone()).collect();
        // No group named: all ingress is allowed (Berth has no VPC default group to fall back on).
        let ingress: Option<Vec<IngressRule>> =
            (!groups.is_empty()).then(|| security::union(&groups));

        let candidates = self.candidates(&input.cluster)?;
        let now = now_ms();
        let mut tasks = Vec::new();
        let mut failures = Vec::new();
        for outcome in placement::place(
            needs,
            &host_ports,
            &spec.network_mode,
            input.count as usize,
            &candidates,
            &td_arn,
        ) {
            match outcome {
                Ok(instance_id) => {
                    let mut task = new_task(&input, &record, &spec, instance_id, now);
                    task.security_groups = group_ids.clone();
                    tasks.push(task)
                }
                Err(f) => failures.push(f),
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
                    crate::agents::wire::task_spec(&arn, t, &spec, ingress.as_deref()),
                )
            })
            .collect();
        self.store.insert_tasks(&tasks, &|seq, group| {
            crate::agents::wire::start_payload(
                seq,
                group.iter().map(|t| specs[t.id.as_str()].clone()).collect(),
            )
        })?;
        let mut instances: Vec<&str> = tasks.iter().map(|t| t.instance_id.as_str()).collect();
        instances.dedup();
        for instance in instances {
            self.sessions.flush(instance, &*self.store)?;
        }
        for t in &tasks {
            tracing::info!(task.id = %t.id, instance.id = %t.instance_id, family = %t.family, "task placed");
        }
        Ok((tasks, failures))
    }

    /// Every secret the task's containers name in repositoryCredentials must exist now (as ECS
    /// checks at launch; registration does not). Their logins are read when the payload is sent.
    fn check_repository_credentials(&self, spec: &TaskDefSpec) -> Result<(), CpError> {
        for c in &spec.containers {
            let Some(parameter) = c.repository_credentials.as_deref() else {
                continue;
            };
            if self.store.get_secret(parameter)?.is_none() {
                return Err(CpError::Client(format!(
                    "repositoryCredentials of container {}: no secret named {parameter} in \
                     berth-cp (create it with berthctl create-secret)",
                    c.name
                )));
            }
        }
        Ok(())
    }

    /// The security groups a RunTask names, checked against the task's network mode.
    fn task_security_groups(
        &self,
        spec: &TaskDefSpec,
        config: Option<&NetworkConfiguration>,
    ) -> Result<Vec<SecurityGroup>, CpError> {
        let Some(config) = config else {
            return Ok(Vec::new());
        };
        if spec.network_mode != "awsvpc" {
            return Err(CpError::InvalidParameter(
                NETWORK_CONFIGURATION_NOT_AWSVPC.to_string(),
            ));
        }
        if config.security_groups.len() > security::MAX_GROUPS_PER_TASK {
            return Err(CpError::InvalidParameter(format!(
                "networkConfiguration.awsvpcConfiguration.securityGroups: at most {} security groups per task, got {}",
                security::MAX_GROUPS_PER_TASK,
                config.security_groups.len()
            )));
        }
        let mut groups: Vec<SecurityGroup> = Vec::new();
        for reference in &config.security_groups {
            let group = self.store.get_security_group(reference)?.ok_or_else(|| {
                CpError::InvalidParameter(format!(
                    "networkConfiguration.awsvpcConfiguration.securityGroups: no security group \
                     with id or name {reference:?} (create it with berthctl create-security-group)"
                ))
            })?;
            if !groups.iter().any(|g| g.id == group.id) {
                groups.push(group);
            }
        }
        Ok(groups)
    }

    fn candidates(&self, cluster: &str) -> Result<Vec<Candidate>, CpError> {
        let connected = self.sessions.connected();
        let active = self.store.list_tasks(&TaskFilter {
            cluster: Some(cluster.to_string()),
            not_stopped: true,
            ..TaskFilter::default()
        })?;
        Ok(self
            .store
            .list_instances(cluster)?
            .into_iter()
            .map(|i| {
                let mine = || active.iter().filter(|t| t.instance_id == i.id);
                let used = sum_needs(mine());
                let used_ports = used_ports(&i.info, mine());
                Candidate {
                    instance_arn: self.arns.container_instance(&i.cluster, &i.id),
                    connected: connected.contains(&i.id),
                    active: !i.revoked,
                    network_modes: i.info.network_modes(),
                    registered: Needs {
                        cpu: i.info.integer_resource("CPU"),
                        memory: i.info.integer_resource("MEMORY"),
                    },
                    used,
                    used_ports,
                    instance_id: i.id,
                }
            })
            .collect())
    }

    /// Finds a task of `cluster` by ARN or id.
    fn find_task(&self, cluster: &str, reference: &str) -> Result<Option<Task>, CpError> {
        Ok(self
            .store
            .get_task(ids::resource_id(reference))?
            .filter(|t| t.cluster == cluster))
    }

    pub fn stop_task(
        &self,
        cluster: &str,
        reference: &str,
        reason: Option<&str>,
    ) -> Result<Task, CpError> {
        self.require_cluster(cluster)?;
        let id = ids::resource_id(reference);
        if self.find_task(cluster, reference)?.is_none() {
            return Err(CpError::TaskNotFound(reference.to_string()));
        }
        let arn = self.arns.task(cluster, id);
        let task = self
            .store
            .stop_task(id, reason, now_ms(), &|seq, t| {
                crate::agents::wire::stop_payload(
                    seq,
                    &arn,
                    t.stopped_reason.as_deref().unwrap_or(""),
                )
            })?
            .ok_or_else(|| CpError::TaskNotFound(reference.to_string()))?;
        self.sessions.flush(&task.instance_id, &*self.store)?;
        tracing::info!(task.id = %task.id, instance.id = %task.instance_id, "stop requested");
        Ok(task)
    }

    /// Found tasks, and the references that matched nothing.
    pub fn describe_tasks(
        &self,
        cluster: &str,
        references: &[String],
    ) -> Result<(Vec<Task>, Vec<String>), CpError> {
        self.require_cluster(cluster)?;
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

    /// The health-relevant part of the task definitions `tasks` were made from, each read once.
    /// Task definitions are never deleted (deregistering keeps them), so each is found.
    pub fn health_defs(&self, tasks: &[Task]) -> Result<HealthDefs, CpError> {
        let mut out = HashMap::new();
        for t in tasks {
            let key = (t.family.clone(), t.revision);
            if out.contains_key(&key) {
                continue;
            }
            let defs = self
                .store
                .get_task_definition(&t.family, Some(t.revision))?
                .map(|r| taskdef::health_defs(&r.raw))
                .unwrap_or_default();
            out.insert(key, defs);
        }
        Ok(HealthDefs(out))
    }

    pub fn list_tasks(&self, filter: TaskFilter) -> Result<Vec<Task>, CpError> {
        if let Some(c) = &filter.cluster {
            self.require_cluster(c)?;
        }
        Ok(self.store.list_tasks(&filter)?)
    }

    // ------------------------------------------------------------ container instances

    pub fn instances(&self, cluster: &str) -> Result<Vec<InstanceView>, CpError> {
        self.require_cluster(cluster)?;
        let connected = self.sessions.connected();
        let active = self.store.list_tasks(&TaskFilter {
            cluster: Some(cluster.to_string()),
            not_stopped: true,
            ..TaskFilter::default()
        })?;
        Ok(self
            .store
            .list_instances(cluster)?
            .into_iter()
            .map(|instance| {
                let mine: Vec<&Task> = active
                    .iter()
                    .filter(|t| t.instance_id == instance.id)
                    .collect();
                InstanceView {
                    connected: connected.contains(&instance.id),
                    used: sum_needs(mine.iter().copied()),
                    used_ports: used_ports(&instance.info, mine.iter().copied()),
                    running_tasks: mine
                        .iter()
                        .filter(|t| t.last_status == TaskStatus::Running)
                        .count() as i64,
                    pending_tasks: mine
                        .iter()
                        .filter(|t| t.last_status != TaskStatus::Running)
                        .count() as i64,
                    instance,
                }
            })
            .collect())
    }

    // ------------------------------------------------------------ agents

    pub fn register_with_code(
        &self,
        cluster: &str,
        code: &str,
        info: InstanceInfo,
    ) -> Result<Result<Registered, Refusal>, CpError> {
        let secret = ids::new_secret();
        let instance = Instance {
            id: ids::new_id(),
            cluster: cluster.to_string(),
            secret_sha256: ids::sha256_hex(&secret),
            revoked: false,
            registered_at_ms: now_ms(),
            last_heartbeat_ms: None,
            last_state_change_seq: 0,
            info,
            health: None,
        };
        Ok(self
            .store
            .register_with_activation(&ids::sha256_hex(code), &instance, now_ms())?
            .map(|()| Registered {
                instance_id: instance.id,
                secret: Some(secret),
            }))
    }

    /// Checks a credential; on success returns the instance.
    pub fn authenticate(
        &self,
        instance_id: &str,
        secret: &str,
    ) -> Result<Result<Instance, Refusal>, CpError> {
        let instance = self.store.get_instance(instance_id)?;
        Ok(check_credential(instance.as_ref(), secret).map(|()| instance.expect("checked")))
    }

    pub fn register_with_credential(
        &self,
        cluster: &str,
        instance_id: &str,
        secret: &str,
        info: InstanceInfo,
    ) -> Result<Result<Registered, Refusal>, CpError> {
        let instance = match self.authenticate(instance_id, secret)? {
            Ok(i) => i,
            Err(r) => return Ok(Err(r)),
        };
        if instance.cluster != cluster {
            // The credential is bound to its cluster: moving an instance needs a new activation.
            return Ok(Err(Refusal::CredentialRejected));
        }
        self.store.update_instance_info(&instance.id, &info)?;
        Ok(Ok(Registered {
            instance_id: instance.id,
            secret: None,
        }))
    }

    pub fn still_allowed(&self, instance_id: &str) -> Result<bool, CpError> {
        Ok(self
            .store
            .get_instance(instance_id)?
            .is_some_and(|i| !i.revoked))
    }

    /// The ARNs of the tasks the instance should know about: every task placed on it whose
    /// lastStatus is not STOPPED, whatever its desiredStatus (a task being stopped is still
    /// the agent's to stop). Read from the store on every call, never cached: the agent stops
    /// what consecutive manifests leave out.
    pub fn manifest(&self, instance_id: &str) -> Result<Vec<String>, CpError> {
        Ok(self
            .store
            .list_tasks(&TaskFilter {
                instance_id: Some(instance_id.to_string()),
                not_stopped: true,
                ..TaskFilter::default()
            })?
            .iter()
            .map(|t| self.arns.task(&t.cluster, &t.id))
            .collect())
    }

    pub fn apply_change(
        &self,
        instance_id: &str,
        seq: u64,
        change: &AgentChange,
    ) -> Result<ChangeOutcome, CpError> {
        Ok(self
            .store
            .apply_state_change(instance_id, seq, change, now_ms())?)
    }

    pub fn ack_payloads(&self, instance_id: &str, seq: u64) -> Result<(), CpError> {
        Ok(self.store.ack_payloads(instance_id, seq)?)
    }

    pub fn heartbeat(&self, instance_id: &str, containerd_healthy: bool) -> Result<(), CpError> {
        let health = self
            .store
            .record_heartbeat(instance_id, containerd_healthy, now_ms())?;
        // Logged when it changes (or is first known), not on every heartbeat.
        if let Some(h) = health.filter(|h| h.changed_at_ms == h.updated_at_ms) {
            if h.containerd_healthy {
                tracing::info!(instance.id = instance_id, "containerd reported healthy");
            } else {
                tracing::warn!(
                    instance.id = instance_id,
                    "containerd reported not healthy: instance IMPAIRED"
                );
            }
        }
        Ok(())
    }

    /// The state changes applied to a task (by id or ARN), in sequence order.
    pub fn task_events(&self, reference: &str) -> Result<(Task, Vec<TaskEvent>), CpError> {
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

    // ------------------------------------------------------------ security groups

    /// Creates or replaces the group `name`; returns it and whether it was created.
    pub fn put_security_group(
        &self,
        name: &str,
        body: &serde_json::Value,
    ) -> Result<(SecurityGroup, bool), CpError> {
        let mut problems = Vec::new();
        if let Err(e) = security::check_name(name) {
            problems.push(e);
        }
        let content = match security::parse_content(body) {
            Ok(c) => Some(c),
            Err(p) => {
                problems.extend(p);
                None
            }
        };
        let Some(content) = content.filter(|_| problems.is_empty()) else {
            return Err(CpError::InvalidParameter(problems.join("; ")));
        };
        let (group, created) = self.store.put_security_group(name, &content, now_ms())?;
        tracing::info!(group.id = %group.id, group.name = %group.name, rules = group.ingress.len(), created, "security group saved");
        Ok((group, created))
    }

    pub fn list_security_groups(&self) -> Result<Vec<SecurityGroup>, CpError> {
        Ok(self.store.list_security_groups()?)
    }

    pub fn security_group(&self, reference: &str) -> Result<SecurityGroup, CpError> {
        self.store
            .get_security_group(reference)?
            .ok_or_else(|| CpError::SecurityGroupNotFound(reference.to_string()))
    }

    /// Deletes a group no task that is not stopped uses (as EC2 refuses to delete a group in use).
    pub fn delete_security_group(&self, reference: &str) -> Result<SecurityGroup, CpError> {
        let group = self.security_group(reference)?;
        let users: Vec<Task> = self
            .store
            .list_tasks(&TaskFilter {
                not_stopped: true,
                ..TaskFilter::default()
            })?
            .into_iter()
            .filter(|t| t.security_groups.contains(&group.id))
            .collect();
        if let Some(t) = users.first() {
            return Err(CpError::SecurityGroupInUse {
                group: format!("{} ({})", group.id, group.name),
                tasks: users.len(),
                example: self.arns.task(&t.cluster, &t.id),
            });
        }
        if !self.store.delete_security_group(&group.id)? {
            return Err(CpError::SecurityGroupNotFound(reference.to_string()));
        }
        tracing::info!(group.id = %group.id, group.name = %group.name, "security group deleted");
        Ok(group)
    }

    // ------------------------------------------------------------ secrets

    /// Creates the secret `name` or replaces its login; returns it and whether it was created.
    pub fn put_secret(
        &self,
        name: &str,
        body: &serde_json::Value,
    ) -> Result<(SecretInfo, bool), CpError> {
        let mut problems = Vec::new();
        if let Err(e) = secrets::check_name(name) {
            problems.push(e);
        }
        let login = match secrets::parse_login(body) {
            Ok(l) => Some(l),
            Err(p) => {
                problems.extend(p);
                None
            }
        };
        let Some(login) = login.filter(|_| problems.is_empty()) else {
            return Err(CpError::InvalidParameter(problems.join("; ")));
        };
        let (info, created) =
            self.store
                .put_secret(name, &self.arns.secret(name), &login, now_ms())?;
        // The name and ARN only: never the login.
        tracing::info!(secret.name = %info.name, secret.arn = %info.arn, created, "secret saved");
        Ok((info, created))
    }

    pub fn list_secrets(&self) -> Result<Vec<SecretInfo>, CpError> {
        Ok(self.store.list_secrets()?)
    }

    /// Deletes a secret by name or ARN. Tasks already placed that name it are sent without a
    /// login from then on (their agent may still have one).
    pub fn delete_secret(&self, reference: &str) -> Result<SecretInfo, CpError> {
        let (info, _) = self
            .store
            .get_secret(reference)?
            .ok_or_else(|| CpError::SecretNotFound(reference.to_string()))?;
        if !self.store.delete_secret(&info.name)? {
            return Err(CpError::SecretNotFound(reference.to_string()));
        }
        tracing::info!(secret.name = %info.name, "secret deleted");
        Ok(info)
    }
}

pub fn valid_cluster_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
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
        group: input
            .group
            .clone()
            .unwrap_or_else(|| format!("family:{}", record.family)),
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
            })
            .collect(),
    }
}

/// What a set of tasks holds of an instance.
fn sum_needs<'a>(tasks: impl Iterator<Item = &'a Task>) -> Needs {
    tasks.fold(Needs::default(), |acc, t| Needs {
        cpu: acc.cpu + t.needs.cpu,
        memory: acc.memory + t.needs.memory,
    })
}

/// The host ports an instance holds: those it registered as reserved (its PORTS and PORTS_UDP
/// resources, as ECS's), and the fixed host ports of `tasks` (its tasks not STOPPED) and the
/// host ports their agent reported bound.
fn used_ports<'a>(
    info: &crate::domain::instance::InstanceInfo,
    tasks: impl Iterator<Item = &'a Task>,
) -> Vec<PortRange> {
    let mut out: Vec<PortRange> = Vec::new();
    for (name, protocol) in [("PORTS", Protocol::Tcp), ("PORTS_UDP", Protocol::Udp)] {
        for r in info.resources.iter().filter(|r| r.name == name) {
            out.extend(
                r.string_set_value
                    .iter()
                    .filter_map(|p| p.trim().parse::<u16>().ok())
                    .map(|p| PortRange::single(protocol, p)),
            );
        }
    }
    for t in tasks {
        out.extend(t.host_ports.iter().copied());
        // Dynamic host ports the agent bound (bridge) are taken too, once reported.
        let bound = t.network.iter().filter(|n| n.mode != "awsvpc");
        out.extend(bound.flat_map(|n| &n.bindings).filter_map(|b| {
            let protocol = Protocol::parse(&b.protocol)?;
            let port = u16::try_from(b.host_port).ok().filter(|p| *p != 0)?;
            Some(PortRange::single(protocol, port))
        }));
    }
    out.sort();
    out.dedup();
    out
}
