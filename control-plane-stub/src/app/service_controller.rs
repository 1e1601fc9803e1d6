//! The service controller (issue #17): for each service not INACTIVE, reads a snapshot (the
//! service, its deployments, its tasks and their health), asks the pure scheduler
//! (`scheduler::service::plan`) what to do, carries it out through `Tasks`, and records every
//! decision as a service event in ECS's wording. Run on every applied agent report or service
//! change, and on a timer; each run starts from the store, so a restarted berth-cp resumes
//! where it was.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::services::rules_of;
use super::tags::NewTaskTags;
use super::task_definitions::TaskDefinitions;
use super::tasks::{RunTaskInput, Tasks};
use super::{CpError, NetworkConfiguration};
use crate::clock::now_ms;
use crate::domain::instance::InstanceStatus;
use crate::domain::placement::{Constraint, Placement, SpreadOn, Strategy};
use crate::domain::service::history;
use crate::domain::service::{self, RolloutState, SchedulingStrategy, Service, ServiceStatus};
use crate::domain::tags::Propagate;
use crate::domain::task::{
    task_health_status, HealthStatus, Task, TaskStatus, SCHEDULER_STOP_CODE, USER_STOP_CODE,
};
use crate::domain::taskdef::HealthDef;
use crate::scheduler::daemon::{self, DaemonInstance, DaemonTask, DaemonView};
use crate::scheduler::service::{
    plan, throttle, Action, Backoff, DeploymentView, ServiceView, StopReason, TaskHealth, TaskView,
    ThrottleSettings,
};
use crate::state::{Store, TaskFilter};

/// The same "unable to place" event is said at most this often (ECS repeats it too, not every
/// pass).
const PLACEMENT_EVENT_WINDOW_MS: i64 = 60_000;

/// RunTask places at most this many tasks per call.
const START_BATCH: u32 = 10;

/// How the service scheduler judges and paces a service (berth-cp settings).
#[derive(Debug, Clone, Copy)]
pub struct ServiceSettings {
    /// How long a task without health checks must run to count as healthy (ECS: 40 s).
    pub settle_ms: u32,
    pub throttle: ThrottleSettings,
}

/// A cluster's instances as one controller pass reads them.
#[derive(Default)]
struct ClusterInstances {
    /// The ids of the DRAINING ones.
    draining: HashSet<String>,
    /// Each one's attributes (its agent's and the custom ones), by instance id.
    attributes: HashMap<String, Vec<(String, String)>>,
}

impl ClusterInstances {
    /// Where a task on `instance` is, for the spread strategy on `key`.
    fn spread_value(&self, key: &SpreadOn, instance: &str) -> String {
        match key {
            SpreadOn::Instance => instance.to_string(),
            SpreadOn::Attribute(name) => self
                .attributes
                .get(instance)
                .and_then(|a| a.iter().find(|(n, _)| n == name))
                .map(|(_, v)| v.clone())
                .unwrap_or_default(),
        }
    }
}

#[derive(Clone)]
pub struct ServiceController {
    pub(super) store: Arc<dyn Store>,
    pub(super) tasks: Tasks,
    pub(super) task_definitions: TaskDefinitions,
    /// How long a task without health checks must run to count as healthy.
    pub(super) settle_ms: i64,
    pub(super) throttle: ThrottleSettings,
}

impl ServiceController {
    /// One pass over every service that is not INACTIVE. A service that fails is logged and
    /// the others still run.
    pub fn reconcile_all(&self) {
        let services = match self.store.live_services() {
            Ok(s) => s,
            Err(e) => {
                tracing::error!("service controller: cannot read the services: {e}");
                return;
            }
        };
        // Which instances drain, and their attributes, change only by an API call or a
        // registration, so a pass reads each cluster's instances once, not once per service.
        let mut by_cluster: HashMap<String, ClusterInstances> = HashMap::new();
        for s in services {
            let span = tracing::info_span!("reconcile", service = %s.name, cluster = %s.cluster);
            let _enter = span.enter();
            if !by_cluster.contains_key(&s.cluster) {
                match self.cluster_instances(&s.cluster) {
                    Ok(d) => by_cluster.insert(s.cluster.clone(), d),
                    Err(e) => {
                        tracing::error!("service controller: cannot read the instances: {e}");
                        continue;
                    }
                };
            }
            let instances = &by_cluster[&s.cluster];
            if let Err(e) = self.reconcile(s, instances) {
                tracing::error!("service controller: {e}");
            }
        }
    }

    /// One service's pass, over its cluster's instances as this pass read them.
    fn reconcile(&self, mut s: Service, instances: &ClusterInstances) -> Result<(), CpError> {
        let draining = &instances.draining;
        let now = now_ms();
        let group = s.group();
        // The service's tasks are its deployments' (startedBy, indexed): a deployment retires
        // only once it has no task left, so none is missed, and the cluster's history of other
        // tasks is never read.
        let mut all: Vec<Task> = Vec::new();
        for d in &s.deployments {
            let of_deployment = self.store.list_tasks(&TaskFilter {
                cluster: Some(s.cluster.clone()),
                started_by: Some(d.id.clone()),
                ..TaskFilter::default()
            })?;
            all.extend(of_deployment.into_iter().filter(|t| t.group == group));
        }
        let defs = self.task_definitions.health_defs(&all)?;
        let grace_ms = i64::from(s.health_check_grace_period_seconds.unwrap_or(0)) * 1000;
        let before = s.clone();

        for d in &mut s.deployments {
            d.failed_tasks = all
                .iter()
                .filter(|t| t.started_by.as_deref() == Some(d.id.as_str()))
                .filter(|t| failed_to_start(t, defs.of(t), self.settle_ms))
                .count() as u32;
        }
        let live: Vec<&Task> = all
            .iter()
            .filter(|t| t.last_status != TaskStatus::Stopped)
            .collect();

        if s.status == ServiceStatus::Draining {
            let stopping: Vec<&Task> = live
                .iter()
                .copied()
                .filter(|t| t.desired_status != TaskStatus::Stopped)
                .collect();
            for t in &stopping {
                self.tasks.stop_for_service(t, "Service deleted")?;
            }
            if !stopping.is_empty() {
                let message = format!(
                    "{} has stopped {} running tasks: {}.",
                    s.tag(),
                    stopping.len(),
                    task_list(&stopping)
                );
                s.record(message, now);
            }
            if live.is_empty() {
                s.status = ServiceStatus::Inactive;
                s.deployments.clear();
                tracing::info!("service drained: INACTIVE");
            }
            return self.save_if_changed(&before, &s);
        }

        // What a scale-in balances over: the service's spread strategies (ECS's defaults when
        // it has none).
        let spread_keys: Vec<SpreadOn> = Placement::new(&s.placement_strategy, &[], &[], true)
            .map(|p| p.strategies)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|st| match st {
                Strategy::Spread(on) => Some(on),
                _ => None,
            })
            .collect();
        let views: Vec<TaskView> = live
            .iter()
            .map(|t| TaskView {
                draining: draining.contains(&t.instance_id),
                id: t.id.clone(),
                deployment_id: t.started_by.clone().unwrap_or_default(),
                health: health_of(t, defs.of(t), now, self.settle_ms, grace_ms),
                stopping: t.desired_status == TaskStatus::Stopped,
                protected: t.is_protected(now),
                spread: spread_keys
                    .iter()
                    .map(|key| instances.spread_value(key, &t.instance_id))
                    .collect(),
            })
            .collect();
        let backoff = self.throttle_pass(&mut s, &views, now);
        let deployments: Vec<DeploymentView> = s
            .deployments
            .iter()
            .map(|d| DeploymentView {
                id: d.id.clone(),
                rollout: match d.rollout_state {
                    RolloutState::InProgress => crate::scheduler::service::Rollout::InProgress,
                    RolloutState::Completed => crate::scheduler::service::Rollout::Completed,
                    RolloutState::Failed => crate::scheduler::service::Rollout::Failed,
                },
                failed_tasks: d.failed_tasks,
            })
            .collect();
        let actions = match s.scheduling_strategy {
            SchedulingStrategy::Replica => plan(&ServiceView {
                desired_count: s.desired_count,
                config: rules_of(&s.deployment),
                deployments: &deployments,
                tasks: &views,
            }),
            SchedulingStrategy::Daemon => {
                let instances = self.daemon_instances(&s, draining)?;
                // A daemon's desired count is what it should run now.
                s.desired_count = daemon::desired_count(&instances);
                let tasks: Vec<DaemonTask> = live
                    .iter()
                    .zip(&views)
                    .map(|(t, v)| DaemonTask {
                        id: v.id.clone(),
                        deployment_id: v.deployment_id.clone(),
                        instance_id: t.instance_id.clone(),
                        health: v.health,
                        stopping: v.stopping,
                        protected: v.protected,
                    })
                    .collect();
                daemon::plan(&DaemonView {
                    instances: &instances,
                    deployments: &deployments,
                    tasks: &tasks,
                    minimum_healthy_percent: s.deployment.minimum_healthy_percent,
                    circuit_breaker: s
                        .deployment
                        .circuit_breaker_enable
                        .then_some(s.deployment.circuit_breaker_rollback),
                })
            }
        };

        let primary = s
            .deployments
            .first()
            .map(|d| d.id.clone())
            .unwrap_or_default();
        let mut started: Vec<Task> = Vec::new();
        let mut stopped: Vec<&Task> = Vec::new();
        let mut moved = false;
        for action in &actions {
            match action {
                Action::Start { deployment, count } => {
                    if backoff.holds_starts(now) {
                        tracing::debug!(until_ms = backoff.until_ms, "throttled: no task started");
                        continue;
                    }
                    moved = true;
                    self.start(&mut s, deployment, *count, None, &mut started, now)?;
                }
                Action::StartOn {
                    deployment,
                    instance,
                } => {
                    if backoff.holds_starts(now) {
                        continue;
                    }
                    moved = true;
                    let on = Some(instance.as_str());
                    self.start(&mut s, deployment, 1, on, &mut started, now)?;
                }
                Action::Stop { task, reason } => {
                    moved = true;
                    let Some(t) = live.iter().copied().find(|t| &t.id == task) else {
                        continue;
                    };
                    let why = match reason {
                        StopReason::Unhealthy => "Task failed container health checks".to_string(),
                        StopReason::Replaced | StopReason::ScaleIn => {
                            format!("Scaling activity initiated by (deployment {primary})")
                        }
                        StopReason::Draining => "Container instance is draining".to_string(),
                    };
                    self.tasks.stop_for_service(t, &why)?;
                    if *reason == StopReason::Unhealthy {
                        let message = format!(
                            "{} (task {}) failed container health checks.",
                            s.tag(),
                            t.id
                        );
                        s.record(message, now);
                    }
                    stopped.push(t);
                }
                Action::Complete { deployment } => {
                    if let Some(d) = s.deployments.iter_mut().find(|d| &d.id == deployment) {
                        d.rollout_state = RolloutState::Completed;
                        d.rollout_state_reason = format!("ECS deployment {} completed.", d.id);
                        d.updated_at_ms = now;
                    }
                    history::complete(&mut s, deployment, now);
                    let message = format!(
                        "{} (deployment {deployment}) deployment completed.",
                        s.tag()
                    );
                    s.record(message, now);
                }
                Action::Fail {
                    deployment,
                    rollback,
                } => {
                    self.fail(&mut s, deployment, *rollback, now);
                }
                Action::Retire { deployment } => {
                    s.deployments.retain(|d| &d.id != deployment);
                }
            }
        }
        if !started.is_empty() {
            let refs: Vec<&Task> = started.iter().collect();
            let message = format!(
                "{} has started {} tasks: {}.",
                s.tag(),
                started.len(),
                task_list(&refs)
            );
            s.record(message, now);
        }
        if !stopped.is_empty() {
            let message = format!(
                "{} has stopped {} running tasks: {}.",
                s.tag(),
                stopped.len(),
                task_list(&stopped)
            );
            s.record(message, now);
        }
        if moved {
            s.steady = false;
        } else if !s.steady && steady(&s, &views) {
            s.steady = true;
            let message = format!("{} has reached a steady state.", s.tag());
            s.record(message, now);
        }
        self.save_if_changed(&before, &s)
    }

    /// Starts `count` tasks of a deployment, as RunTask would with the service's group.
    fn start(
        &self,
        s: &mut Service,
        deployment: &str,
        count: u32,
        on_instance: Option<&str>,
        started: &mut Vec<Task>,
        now: i64,
    ) -> Result<(), CpError> {
        let Some(d) = s.deployments.iter().find(|d| d.id == deployment).cloned() else {
            return Ok(());
        };
        let mut left = count;
        while left > 0 {
            let batch = left.min(START_BATCH);
            left -= batch;
            let input = RunTaskInput {
                cluster: s.cluster.clone(),
                task_definition: d.task_definition.clone(),
                count: i64::from(batch),
                started_by: Some(d.id.clone()),
                group: Some(s.group()),
                overrides: None,
                network_configuration: (!d.security_groups.is_empty()).then(|| {
                    NetworkConfiguration {
                        security_groups: d.security_groups.clone(),
                    }
                }),
                from_service: true,
                strategies: s.placement_strategy.clone(),
                constraints: s.placement_constraints.clone(),
                on_instances: on_instance.map(|i| vec![i.to_string()]),
                // Checked when the service was created or updated.
                tags: NewTaskTags {
                    own: Vec::new(),
                    propagate: Propagate::parse(s.propagate_tags.as_deref()).unwrap_or_default(),
                    managed: s.enable_ecs_managed_tags,
                    service: Some(s.name.clone()),
                },
                launch_type: Some(s.launch_type.clone()),
                enable_execute_command: s.enable_execute_command,
            };
            match self.tasks.run(input) {
                Ok((tasks, failures)) => {
                    started.extend(tasks);
                    if let Some(f) = failures.first() {
                        let closest = f
                            .arn
                            .contains(":container-instance/")
                            .then(|| crate::domain::ids::resource_id(&f.arn));
                        let message =
                            service::unable_to_place(&s.tag(), f.reason, closest, &f.detail);
                        s.record_unless_recent(message, now, PLACEMENT_EVENT_WINDOW_MS);
                        break;
                    }
                }
                Err(e) => {
                    let message = format!("{} was unable to start a task: {e}", s.tag());
                    s.record(message, now);
                    break;
                }
            }
        }
        Ok(())
    }

    fn cluster_instances(&self, cluster: &str) -> Result<ClusterInstances, CpError> {
        let mut out = ClusterInstances::default();
        for i in self.store.list_instances(cluster)? {
            if i.state.status == InstanceStatus::Draining {
                out.draining.insert(i.id.clone());
            }
            let mut attributes = i.info.attributes.clone();
            attributes.extend(i.state.attributes.iter().cloned());
            out.attributes.insert(i.id, attributes);
        }
        Ok(out)
    }

    /// The cluster's instances as a DAEMON service sees them: eligible when ACTIVE and every
    /// memberOf constraint of the service (and of its task definition) holds there.
    fn daemon_instances(
        &self,
        s: &Service,
        draining: &HashSet<String>,
    ) -> Result<Vec<DaemonInstance>, CpError> {
        let placement = Placement::new(&[], &s.placement_constraints, &[], true)
            .map_err(|e| CpError::InvalidParameter(e.0))?;
        let group = s.group();
        let candidates = self.tasks.instances.candidates(&s.cluster)?;
        Ok(candidates
            .iter()
            .map(|c| DaemonInstance {
                id: c.instance_id.clone(),
                eligible: c.active
                    && placement.constraints.iter().all(|k| match k {
                        Constraint::MemberOf(e) => e.matches(c),
                        Constraint::DistinctInstance => true,
                    }),
                connected: c.connected,
                draining: draining.contains(&c.instance_id),
                other_tasks: (c.running_tasks
                    - c.groups
                        .get(&group)
                        .copied()
                        .unwrap_or(0)
                        .min(c.running_tasks)) as u32,
            })
            .collect())
    }

    /// Counts the primary deployment's new failed tasks into the service's back-off; says so
    /// in an event when it makes the scheduler wait.
    fn throttle_pass(&self, s: &mut Service, views: &[TaskView], now: i64) -> Backoff {
        let Some(primary) = s.deployments.first() else {
            return Backoff::default();
        };
        if s.throttle.deployment != primary.id {
            s.throttle = service::Throttle {
                deployment: primary.id.clone(),
                ..service::Throttle::default()
            };
        }
        let failed = primary.failed_tasks;
        let became_healthy = views
            .iter()
            .any(|v| v.deployment_id == primary.id && v.health == TaskHealth::Healthy);
        let prev = Backoff {
            consecutive_failures: s.throttle.consecutive_failures,
            until_ms: s.throttle.until_ms,
        };
        let new_failures = failed.saturating_sub(s.throttle.failures_seen);
        let (backoff, waits) = throttle(prev, new_failures, became_healthy, now, &self.throttle);
        s.throttle.failures_seen = failed;
        s.throttle.consecutive_failures = backoff.consecutive_failures;
        s.throttle.until_ms = backoff.until_ms;
        if waits {
            tracing::warn!(
                failures = backoff.consecutive_failures,
                wait_ms = backoff.until_ms - now,
                "tasks keep failing to start: backing off"
            );
            let message = format!(
                "{} is unable to consistently start tasks successfully.",
                s.tag()
            );
            s.record(message, now);
        }
        backoff
    }

    /// The circuit breaker tripped: the deployment is FAILED; with rollback, a new deployment
    /// goes back to the revision that last succeeded.
    fn fail(&self, s: &mut Service, deployment: &str, rollback: bool, now: i64) {
        let reason = "ECS deployment circuit breaker: tasks failed to start.";
        if let Some(d) = s.deployments.iter_mut().find(|d| d.id == deployment) {
            d.rollout_state = RolloutState::Failed;
            d.rollout_state_reason = reason.to_string();
            d.updated_at_ms = now;
        }
        let message = format!(
            "{} (deployment {deployment}) deployment failed: tasks failed to start.",
            s.tag()
        );
        s.record(message, now);
        tracing::warn!(deployment, "deployment failed: circuit breaker");
        if rollback {
            if let Some((id, task_definition)) =
                history::roll_back(s, deployment, reason, true, now)
            {
                // The revision's id is the digits of the deployment that first ran it.
                let message = format!(
                    "{} (deployment {deployment}) rolling back to (deployment ecs-svc/{}): a new \
                     deployment {id} of {task_definition}.",
                    s.tag(),
                    s.deployments[0].revision
                );
                s.record(message, now);
                return;
            }
        }
        history::fail(s, deployment, reason, now);
    }

    fn save_if_changed(&self, before: &Service, after: &Service) -> Result<(), CpError> {
        if before != after {
            // Read again: an UpdateService between the snapshot and now wins over this pass's
            // bookkeeping, and the next pass works from it.
            let current = self.store.get_service(&after.cluster, &after.name)?;
            if current.as_ref() == Some(before) {
                self.store.save_service(after)?;
            }
        }
        Ok(())
    }
}

/// `(task a) (task b)`, as ECS's events list tasks.
fn task_list(tasks: &[&Task]) -> String {
    tasks
        .iter()
        .map(|t| format!("(task {})", t.id))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The scheduler's view of a task's health: healthy once RUNNING and, with health checks on an
/// essential container, HEALTHY; without, once RUNNING for the settle period. UNHEALTHY counts
/// only after the grace period.
fn health_of(t: &Task, defs: &[HealthDef], now: i64, settle_ms: i64, grace_ms: i64) -> TaskHealth {
    if t.last_status != TaskStatus::Running {
        return TaskHealth::Starting;
    }
    let running_for = t.started_at_ms.map_or(0, |s| now - s);
    let checked = defs.iter().any(|d| d.essential && d.health_check);
    if !checked {
        return if running_for >= settle_ms {
            TaskHealth::Healthy
        } else {
            TaskHealth::Starting
        };
    }
    match task_health_status(t, defs) {
        HealthStatus::Healthy => TaskHealth::Healthy,
        HealthStatus::Unhealthy if running_for >= grace_ms => TaskHealth::Unhealthy,
        _ => TaskHealth::Starting,
    }
}

/// A task that stopped before it became healthy, and not because it was asked to: what the
/// circuit breaker counts.
fn failed_to_start(t: &Task, defs: &[HealthDef], settle_ms: i64) -> bool {
    if t.last_status != TaskStatus::Stopped {
        return false;
    }
    if matches!(
        t.stop_code.as_deref(),
        Some(USER_STOP_CODE) | Some(SCHEDULER_STOP_CODE)
    ) {
        return false;
    }
    let Some(started) = t.started_at_ms else {
        return true;
    };
    let checked = defs.iter().any(|d| d.essential && d.health_check);
    if checked {
        task_health_status(t, defs) != HealthStatus::Healthy
    } else {
        t.stopped_at_ms.unwrap_or(i64::MAX) - started < settle_ms
    }
}

/// One deployment, completed, with its desired count healthy.
fn steady(s: &Service, tasks: &[TaskView]) -> bool {
    s.deployments.len() == 1
        && s.deployments[0].rollout_state == RolloutState::Completed
        && tasks
            .iter()
            .filter(|t| t.health == TaskHealth::Healthy && !t.stopping)
            .count()
            == s.desired_count as usize
}
