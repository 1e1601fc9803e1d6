//! Tasks as the control plane records them, and the pure rules for changing them: a user's stop
//! request and the agent's reported state changes.

use serde::{Deserialize, Serialize};

use crate::domain::taskdef::{HealthDef, Needs, PortMapping, PortRange};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskStatus {
    Provisioning,
    Pending,
    Running,
    Stopped,
}

impl TaskStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Provisioning => "PROVISIONING",
            TaskStatus::Pending => "PENDING",
            TaskStatus::Running => "RUNNING",
            TaskStatus::Stopped => "STOPPED",
        }
    }
    fn rank(self) -> u8 {
        self as u8
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ContainerStatus {
    /// The agent's NONE: known but nothing done yet. Shown as PENDING, as ECS does.
    Pending,
    Pulled,
    Created,
    Running,
    Stopped,
}

impl ContainerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ContainerStatus::Pending => "PENDING",
            ContainerStatus::Pulled => "PULLED",
            ContainerStatus::Created => "CREATED",
            ContainerStatus::Running => "RUNNING",
            ContainerStatus::Stopped => "STOPPED",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub id: String,
    pub cluster: String,
    pub instance_id: String,
    pub family: String,
    pub revision: i64,
    pub last_status: TaskStatus,
    pub desired_status: TaskStatus,
    pub created_at_ms: i64,
    pub started_at_ms: Option<i64>,
    pub stopping_at_ms: Option<i64>,
    pub stopped_at_ms: Option<i64>,
    pub execution_stopped_at_ms: Option<i64>,
    pub stop_code: Option<String>,
    pub stopped_reason: Option<String>,
    pub group: String,
    pub started_by: Option<String>,
    /// Task-level CPU units and MiB after overrides, when set.
    pub cpu: Option<i64>,
    pub memory: Option<i64>,
    /// RunTask's overrides as the user gave them, echoed by DescribeTasks.
    pub overrides: serde_json::Value,
    /// Incremented on every change, as ECS's task version.
    pub version: i64,
    /// What placement reserved on the instance.
    pub needs: Needs,
    /// The fixed host ports placement reserved on the instance (RESOURCE:PORTS). Absent in
    /// records written before port accounting: those tasks held none.
    #[serde(default)]
    pub host_ports: Vec<PortRange>,
    /// The network mode the task runs in. Absent in older records, which ran in host or none
    /// mode; nothing shown depends on telling those apart.
    #[serde(default)]
    pub network_mode: String,
    /// awsvpc: the ids of the security groups RunTask named (empty: all ingress allowed).
    #[serde(default)]
    pub security_groups: Vec<String>,
    /// The network the agent reported with the task's RUNNING or STOPPED change.
    #[serde(default)]
    pub network: Option<TaskNetwork>,
    /// ECS's pullStartedAt and pullStoppedAt (ms), as the agent reported them.
    #[serde(default)]
    pub pull_started_at_ms: Option<i64>,
    #[serde(default)]
    pub pull_stopped_at_ms: Option<i64>,
    pub containers: Vec<Container>,
}

/// A task's network as its agent set it up.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskNetwork {
    /// "bridge", "host", "none" or "awsvpc".
    pub mode: String,
    /// The task's own address (bridge, awsvpc); empty otherwise.
    pub private_ipv4: String,
    pub prefix_length: u32,
    pub gateway_ipv4: String,
    pub mac_address: String,
    pub bindings: Vec<NetworkBinding>,
}

/// A host port bound to a container's port.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkBinding {
    pub container_name: String,
    /// "tcp" or "udp".
    pub protocol: String,
    pub container_port: u32,
    pub host_port: u32,
    pub bind_ip: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Container {
    pub id: String,
    pub name: String,
    pub image: String,
    pub runtime_id: Option<String>,
    pub last_status: ContainerStatus,
    pub exit_code: Option<i32>,
    pub reason: Option<String>,
    pub cpu: Option<i64>,
    pub memory: Option<i64>,
    pub memory_reservation: Option<i64>,
    /// Times the agent restarted the container under its restartPolicy. Absent in records
    /// written before restart policies, hence the default (no schema change needed: the task
    /// is a JSON body).
    #[serde(default)]
    pub restart_count: i64,
    /// The container's portMappings (awsvpc tasks show them as networkBindings).
    #[serde(default)]
    pub port_mappings: Vec<PortMapping>,
    /// The health its agent last reported (containers with a healthCheck, from RUNNING on).
    /// Absent in records written before health checks.
    #[serde(default)]
    pub health: Option<ContainerHealth>,
}

/// A container's health status, as ECS names it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HealthStatus {
    #[default]
    Unknown,
    Healthy,
    Unhealthy,
}

impl HealthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Unknown => "UNKNOWN",
            HealthStatus::Healthy => "HEALTHY",
            HealthStatus::Unhealthy => "UNHEALTHY",
        }
    }

    /// The agent's status; anything else (a newer agent's status, or none) is UNKNOWN.
    pub fn parse(s: &str) -> Self {
        match s {
            "HEALTHY" => HealthStatus::Healthy,
            "UNHEALTHY" => HealthStatus::Unhealthy,
            _ => HealthStatus::Unknown,
        }
    }
}

/// The health an agent reports with a container change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthReport {
    pub status: HealthStatus,
    /// When the last check ended (the agent's clock); None before the first check.
    pub checked_at_ms: Option<i64>,
    /// The last check's exit code; -1 when it timed out and was killed, or could not run.
    pub exit_code: Option<i32>,
    /// The start of the last check's output (at most [`MAX_HEALTH_OUTPUT_BYTES`]).
    pub output: String,
}

/// How much of a check's output is kept: what the agent sends, at most.
pub const MAX_HEALTH_OUTPUT_BYTES: usize = 1024;

/// A container's health as the control plane keeps it: the agent's last report, and when the
/// control plane applied it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerHealth {
    pub status: HealthStatus,
    pub checked_at_ms: Option<i64>,
    pub exit_code: Option<i32>,
    pub output: String,
    /// The control plane's clock when it applied the change that carried this report.
    pub received_at_ms: i64,
}

/// ECS's healthStatus of one container: what its agent last reported; UNKNOWN before that, and
/// for containers without a healthCheck (as ECS shows them).
pub fn container_health_status(c: &Container) -> HealthStatus {
    c.health
        .as_ref()
        .map_or(HealthStatus::Unknown, |h| h.status)
}

/// ECS's healthStatus of a task, over its essential containers that have a healthCheck:
/// UNHEALTHY if any is UNHEALTHY, else UNKNOWN if any is UNKNOWN (not reported yet included),
/// else HEALTHY; UNKNOWN when no essential container has a healthCheck.
pub fn task_health_status(t: &Task, defs: &[HealthDef]) -> HealthStatus {
    let mut any = false;
    let mut unknown = false;
    for c in &t.containers {
        let checked_essential = defs
            .iter()
            .any(|d| d.name == c.name && d.essential && d.health_check);
        if !checked_essential {
            continue;
        }
        any = true;
        match container_health_status(c) {
            HealthStatus::Unhealthy => return HealthStatus::Unhealthy,
            HealthStatus::Unknown => unknown = true,
            HealthStatus::Healthy => {}
        }
    }
    if !any || unknown {
        HealthStatus::Unknown
    } else {
        HealthStatus::Healthy
    }
}

/// A state change reported by the agent, already converted from the wire.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentChange {
    Task {
        task_arn: String,
        status: TaskStatus,
        stop_code: String,
        stopped_reason: String,
        at_ms: i64,
        /// Sent with RUNNING and STOPPED by agents that report it.
        network: Option<TaskNetwork>,
        /// When the task's image pulls began and ended (ms), if any image was pulled.
        pull: Option<(i64, i64)>,
    },
    Container {
        task_arn: String,
        container_name: String,
        status: ContainerStatus,
        exit_code: Option<i32>,
        reason: String,
        runtime_id: String,
        at_ms: i64,
        restart_count: i64,
        /// Containers with a healthCheck, from RUNNING on; None keeps the last report.
        health: Option<HealthReport>,
    },
}

impl AgentChange {
    pub fn task_arn(&self) -> &str {
        match self {
            AgentChange::Task { task_arn, .. } | AgentChange::Container { task_arn, .. } => {
                task_arn
            }
        }
    }
}

/// Whether an event changed the task or one of its containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Task,
    Container,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Task => "task",
            EventKind::Container => "container",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "task" => Some(EventKind::Task),
            "container" => Some(EventKind::Container),
            _ => None,
        }
    }
}

/// One state change the control plane applied, as the task's event history keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskEvent {
    /// The agent's sequence number (per instance; a task lives on one instance).
    pub seq: u64,
    pub instance_id: String,
    pub kind: EventKind,
    /// Container events only.
    pub container_name: Option<String>,
    /// The reported status (TaskStatus or ContainerStatus as ECS names it).
    pub status: String,
    pub exit_code: Option<i32>,
    /// The task's stopped reason or the container's reason, as reported (may be empty).
    pub reason: String,
    /// The agent's clock.
    pub at_ms: i64,
    /// The control plane's clock when it applied the change.
    pub received_at_ms: i64,
}

impl TaskEvent {
    /// The event recording `change`, applied under `seq` at `received_at_ms`.
    pub fn of(seq: u64, instance_id: &str, change: &AgentChange, received_at_ms: i64) -> Self {
        let (kind, container_name, status, exit_code, reason, at_ms) = match change {
            AgentChange::Task {
                status,
                stopped_reason,
                at_ms,
                ..
            } => (
                EventKind::Task,
                None,
                status.as_str(),
                None,
                stopped_reason,
                *at_ms,
            ),
            AgentChange::Container {
                container_name,
                status,
                exit_code,
                reason,
                at_ms,
                ..
            } => (
                EventKind::Container,
                Some(container_name.clone()),
                status.as_str(),
                *exit_code,
                reason,
                *at_ms,
            ),
        };
        Self {
            seq,
            instance_id: instance_id.to_string(),
            kind,
            container_name,
            status: status.to_string(),
            exit_code,
            reason: reason.clone(),
            at_ms,
            received_at_ms,
        }
    }
}

pub const USER_STOP_CODE: &str = "UserInitiated";
pub const DEFAULT_USER_STOP_REASON: &str = "Task stopped by user";

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

impl Task {
    /// A user's StopTask. Returns whether the agent must be told (false when the task is already
    /// stopped or already being stopped). The first stop code recorded wins.
    pub fn request_stop(&mut self, reason: Option<&str>, now_ms: i64) -> bool {
        if self.last_status == TaskStatus::Stopped || self.desired_status == TaskStatus::Stopped {
            return false;
        }
        self.desired_status = TaskStatus::Stopped;
        self.stopping_at_ms = Some(now_ms);
        if self.stop_code.is_none() {
            self.stop_code = Some(USER_STOP_CODE.to_string());
            self.stopped_reason = Some(
                reason
                    .filter(|r| !r.is_empty())
                    .unwrap_or(DEFAULT_USER_STOP_REASON)
                    .to_string(),
            );
        }
        self.version += 1;
        true
    }

    /// Applies one agent change, at `now_ms` on the control plane's clock. Returns false when the
    /// change does not concern this task's containers. A stopped task never moves back: late or
    /// reordered reports cannot revive it.
    pub fn apply(&mut self, change: &AgentChange, now_ms: i64) -> bool {
        match change {
            AgentChange::Task {
                status,
                stop_code,
                stopped_reason,
                at_ms,
                network,
                pull,
                ..
            } => {
                if self.last_status == TaskStatus::Stopped
                    || status.rank() < self.last_status.rank()
                {
                    return true;
                }
                self.last_status = *status;
                if let Some((started, stopped)) = *pull {
                    self.pull_started_at_ms = Some(started);
                    self.pull_stopped_at_ms = Some(stopped);
                }
                // A report without a network (or an empty one) keeps what an earlier one said.
                if let Some(n) = network.as_ref().filter(|n| **n != TaskNetwork::default()) {
                    self.network = Some(n.clone());
                }
                match status {
                    TaskStatus::Running => {
                        self.started_at_ms.get_or_insert(*at_ms);
                    }
                    TaskStatus::Stopped => {
                        self.stopped_at_ms = Some(*at_ms);
                        self.execution_stopped_at_ms = Some(*at_ms);
                        self.desired_status = TaskStatus::Stopped;
                        self.stopping_at_ms.get_or_insert(*at_ms);
                        if self.stop_code.is_none() {
                            self.stop_code = non_empty(stop_code);
                            self.stopped_reason = non_empty(stopped_reason);
                        }
                    }
                    TaskStatus::Provisioning | TaskStatus::Pending => {}
                }
                self.version += 1;
                true
            }
            AgentChange::Container {
                container_name,
                status,
                exit_code,
                reason,
                runtime_id,
                restart_count,
                health,
                ..
            } => {
                let Some(c) = self
                    .containers
                    .iter_mut()
                    .find(|c| &c.name == container_name)
                else {
                    return false;
                };
                if c.last_status != ContainerStatus::Stopped {
                    c.last_status = *status;
                }
                if exit_code.is_some() {
                    c.exit_code = *exit_code;
                }
                // As on ECS, a container's reason says why it stopped; what the agent says
                // along the way (how its image was pulled) is in the task's events only.
                if !reason.is_empty() && *status == ContainerStatus::Stopped {
                    c.reason = Some(reason.clone());
                }
                if !runtime_id.is_empty() {
                    c.runtime_id = Some(runtime_id.clone());
                }
                // Reports arrive in order, but a count never goes back.
                c.restart_count = c.restart_count.max(*restart_count);
                // A change without health (a status change the agent sends anyway) keeps the
                // last report.
                if let Some(h) = health {
                    c.health = Some(ContainerHealth {
                        status: h.status,
                        checked_at_ms: h.checked_at_ms,
                        exit_code: h.exit_code,
                        output: h.output.clone(),
                        received_at_ms: now_ms,
                    });
                }
                self.version += 1;
                true
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub fn sample_task() -> Task {
        Task {
            id: "t1".into(),
            cluster: "default".into(),
            instance_id: "i1".into(),
            family: "web".into(),
            revision: 1,
            last_status: TaskStatus::Pending,
            desired_status: TaskStatus::Running,
            created_at_ms: 1,
            started_at_ms: None,
            stopping_at_ms: None,
            stopped_at_ms: None,
            execution_stopped_at_ms: None,
            stop_code: None,
            stopped_reason: None,
            group: "family:web".into(),
            started_by: None,
            cpu: None,
            memory: None,
            overrides: serde_json::json!({"containerOverrides": []}),
            version: 1,
            needs: Needs {
                cpu: 0,
                memory: 128,
            },
            host_ports: Vec::new(),
            network_mode: "bridge".into(),
            security_groups: Vec::new(),
            network: None,
            pull_started_at_ms: None,
            pull_stopped_at_ms: None,
            containers: vec![Container {
                id: "c1".into(),
                name: "app".into(),
                image: "nginx".into(),
                runtime_id: None,
                last_status: ContainerStatus::Pending,
                exit_code: None,
                reason: None,
                cpu: None,
                memory: Some(128),
                memory_reservation: None,
                restart_count: 0,
                port_mappings: Vec::new(),
                health: None,
            }],
        }
    }

    fn task_change(status: TaskStatus, code: &str, at_ms: i64) -> AgentChange {
        AgentChange::Task {
            task_arn: "arn".into(),
            status,
            stop_code: code.into(),
            stopped_reason: format!("{code} reason"),
            at_ms,
            network: None,
            pull: None,
        }
    }

    #[test]
    fn running_then_stopped_records_times_and_code() {
        let mut t = sample_task();
        assert!(t.apply(&task_change(TaskStatus::Running, "", 10), 0));
        assert_eq!(t.started_at_ms, Some(10));
        t.apply(
            &task_change(TaskStatus::Stopped, "EssentialContainerExited", 20),
            0,
        );
        assert_eq!(t.last_status, TaskStatus::Stopped);
        assert_eq!(t.desired_status, TaskStatus::Stopped);
        assert_eq!(t.stopped_at_ms, Some(20));
        assert_eq!(t.execution_stopped_at_ms, Some(20));
        assert_eq!(t.stop_code.as_deref(), Some("EssentialContainerExited"));
        assert_eq!(t.version, 3);
    }

    #[test]
    fn events_record_what_was_reported() {
        let e = TaskEvent::of(
            7,
            "i1",
            &task_change(TaskStatus::Stopped, "EssentialContainerExited", 20),
            25,
        );
        assert_eq!(
            e,
            TaskEvent {
                seq: 7,
                instance_id: "i1".into(),
                kind: EventKind::Task,
                container_name: None,
                status: "STOPPED".into(),
                exit_code: None,
                reason: "EssentialContainerExited reason".into(),
                at_ms: 20,
                received_at_ms: 25,
            }
        );
        let c = AgentChange::Container {
            task_arn: "arn".into(),
            container_name: "app".into(),
            status: ContainerStatus::Stopped,
            exit_code: Some(137),
            reason: "OutOfMemoryError".into(),
            runtime_id: "abc".into(),
            at_ms: 30,
            restart_count: 0,
            health: None,
        };
        let e = TaskEvent::of(8, "i1", &c, 31);
        assert_eq!(
            (e.kind, e.container_name.as_deref(), e.status.as_str()),
            (EventKind::Container, Some("app"), "STOPPED")
        );
        assert_eq!(
            (e.exit_code, e.reason.as_str(), e.at_ms),
            (Some(137), "OutOfMemoryError", 30)
        );
        assert_eq!(
            EventKind::parse(e.kind.as_str()),
            Some(EventKind::Container)
        );
        assert_eq!(EventKind::parse("x"), None);
    }

    #[test]
    fn user_stop_code_wins_over_agent() {
        let mut t = sample_task();
        assert!(t.request_stop(None, 5));
        assert!(!t.request_stop(Some("again"), 6), "second stop is a no-op");
        t.apply(
            &task_change(TaskStatus::Stopped, "EssentialContainerExited", 9),
            0,
        );
        assert_eq!(t.stop_code.as_deref(), Some(USER_STOP_CODE));
        assert_eq!(t.stopped_reason.as_deref(), Some(DEFAULT_USER_STOP_REASON));
        assert_eq!(t.stopping_at_ms, Some(5));
    }

    #[test]
    fn stopped_task_does_not_move_back() {
        let mut t = sample_task();
        t.apply(&task_change(TaskStatus::Stopped, "TaskFailedToStart", 9), 0);
        t.apply(&task_change(TaskStatus::Running, "", 10), 0);
        assert_eq!(t.last_status, TaskStatus::Stopped);
        assert_eq!(t.started_at_ms, None);
    }

    #[test]
    fn container_changes() {
        let mut t = sample_task();
        let change = AgentChange::Container {
            task_arn: "arn".into(),
            container_name: "app".into(),
            status: ContainerStatus::Stopped,
            exit_code: Some(3),
            reason: "exited".into(),
            runtime_id: "abc".into(),
            at_ms: 1,
            restart_count: 2,
            health: None,
        };
        assert!(t.apply(&change, 0));
        let c = &t.containers[0];
        assert_eq!(
            (c.last_status, c.exit_code),
            (ContainerStatus::Stopped, Some(3))
        );
        assert_eq!(c.runtime_id.as_deref(), Some("abc"));
        let unknown = AgentChange::Container {
            task_arn: "arn".into(),
            container_name: "nope".into(),
            status: ContainerStatus::Running,
            exit_code: None,
            reason: String::new(),
            runtime_id: String::new(),
            at_ms: 1,
            restart_count: 0,
            health: None,
        };
        assert!(!t.apply(&unknown, 0));
        assert_eq!(t.containers[0].restart_count, 2);
    }

    fn health_change(status: ContainerStatus, health: Option<HealthReport>) -> AgentChange {
        AgentChange::Container {
            task_arn: "arn".into(),
            container_name: "app".into(),
            status,
            exit_code: None,
            reason: String::new(),
            runtime_id: String::new(),
            at_ms: 1,
            restart_count: 0,
            health,
        }
    }

    fn report(status: HealthStatus, exit_code: i32, output: &str) -> HealthReport {
        HealthReport {
            status,
            checked_at_ms: Some(5_000),
            exit_code: Some(exit_code),
            output: output.into(),
        }
    }

    #[test]
    fn reported_health_is_kept_with_the_time_it_was_applied() {
        let mut t = sample_task();
        assert_eq!(
            container_health_status(&t.containers[0]),
            HealthStatus::Unknown
        );
        t.apply(
            &health_change(
                ContainerStatus::Running,
                Some(report(HealthStatus::Unhealthy, 7, "refused")),
            ),
            9_000,
        );
        let expected = ContainerHealth {
            status: HealthStatus::Unhealthy,
            checked_at_ms: Some(5_000),
            exit_code: Some(7),
            output: "refused".into(),
            received_at_ms: 9_000,
        };
        assert_eq!(t.containers[0].health.as_ref(), Some(&expected));
        // A later change without health keeps the last report (and when it came).
        t.apply(&health_change(ContainerStatus::Stopped, None), 10_000);
        assert_eq!(t.containers[0].last_status, ContainerStatus::Stopped);
        assert_eq!(t.containers[0].health.as_ref(), Some(&expected));
        assert_eq!(
            container_health_status(&t.containers[0]),
            HealthStatus::Unhealthy
        );
    }

    fn def(name: &str, essential: bool, health_check: bool) -> HealthDef {
        HealthDef {
            name: name.into(),
            essential,
            health_check,
        }
    }

    #[test]
    fn task_health_is_decided_by_the_essential_checked_containers() {
        let mut t = sample_task();
        let mut side = t.containers[0].clone();
        side.name = "side".into();
        t.containers.push(side);
        let set = |t: &mut Task, i: usize, s: Option<HealthStatus>| {
            t.containers[i].health = s.map(|status| ContainerHealth {
                status,
                ..ContainerHealth::default()
            });
        };
        use HealthStatus::*;
        let both = [def("app", true, true), def("side", true, true)];
        assert_eq!(
            task_health_status(&t, &both),
            Unknown,
            "nothing reported yet"
        );
        set(&mut t, 0, Some(Healthy));
        assert_eq!(task_health_status(&t, &both), Unknown, "side not reported");
        set(&mut t, 1, Some(Healthy));
        assert_eq!(task_health_status(&t, &both), Healthy);
        set(&mut t, 1, Some(Unknown));
        assert_eq!(task_health_status(&t, &both), Unknown);
        set(&mut t, 0, Some(Unhealthy));
        assert_eq!(task_health_status(&t, &both), Unhealthy, "UNHEALTHY wins");

        // A non-essential container's health does not count, nor one without a check.
        let side_optional = [def("app", true, true), def("side", false, true)];
        set(&mut t, 0, Some(Healthy));
        set(&mut t, 1, Some(Unhealthy));
        assert_eq!(task_health_status(&t, &side_optional), Healthy);
        let unchecked = [def("app", true, false), def("side", false, true)];
        assert_eq!(task_health_status(&t, &unchecked), Unknown);
        assert_eq!(task_health_status(&t, &[]), Unknown);
    }

    #[test]
    fn unknown_health_statuses_are_unknown() {
        assert_eq!(HealthStatus::parse("HEALTHY"), HealthStatus::Healthy);
        assert_eq!(HealthStatus::parse("UNHEALTHY"), HealthStatus::Unhealthy);
        for s in ["UNKNOWN", "", "STARTING", "healthy"] {
            assert_eq!(HealthStatus::parse(s), HealthStatus::Unknown, "{s:?}");
        }
    }

    #[test]
    fn tasks_recorded_before_health_checks_still_load() {
        let mut v = serde_json::to_value(sample_task()).unwrap();
        v["containers"][0].as_object_mut().unwrap().remove("health");
        let t: Task = serde_json::from_value(v).unwrap();
        assert_eq!(t.containers[0].health, None);
    }

    #[test]
    fn tasks_recorded_before_restart_counts_still_load() {
        let mut v = serde_json::to_value(sample_task()).unwrap();
        v["containers"][0]
            .as_object_mut()
            .unwrap()
            .remove("restart_count");
        let t: Task = serde_json::from_value(v).unwrap();
        assert_eq!(t.containers[0].restart_count, 0);
    }

    fn network(ip: &str) -> TaskNetwork {
        TaskNetwork {
            mode: "bridge".into(),
            private_ipv4: ip.into(),
            prefix_length: 24,
            gateway_ipv4: "10.232.0.1".into(),
            mac_address: "02:00:00:00:00:01".into(),
            bindings: vec![NetworkBinding {
                container_name: "app".into(),
                protocol: "tcp".into(),
                container_port: 80,
                host_port: 49153,
                bind_ip: "0.0.0.0".into(),
            }],
        }
    }

    #[test]
    fn the_reported_network_is_kept_when_a_later_report_has_none() {
        let mut t = sample_task();
        let mut running = task_change(TaskStatus::Running, "", 10);
        if let AgentChange::Task { network: n, .. } = &mut running {
            *n = Some(network("10.232.0.5"));
        }
        t.apply(&running, 0);
        assert_eq!(t.network, Some(network("10.232.0.5")));
        // STOPPED without a network, or with an empty one, keeps it.
        let mut stopped = task_change(TaskStatus::Stopped, "EssentialContainerExited", 20);
        if let AgentChange::Task { network: n, .. } = &mut stopped {
            *n = Some(TaskNetwork::default());
        }
        t.apply(&stopped, 0);
        assert_eq!(t.network, Some(network("10.232.0.5")));
        // A late report for a stopped task changes nothing.
        let mut late = task_change(TaskStatus::Running, "", 30);
        if let AgentChange::Task { network: n, .. } = &mut late {
            *n = Some(network("10.232.0.9"));
        }
        t.apply(&late, 0);
        assert_eq!(t.network.unwrap().private_ipv4, "10.232.0.5");
    }

    #[test]
    fn tasks_recorded_before_networking_still_load() {
        let mut v = serde_json::to_value(sample_task()).unwrap();
        let o = v.as_object_mut().unwrap();
        for key in ["host_ports", "network_mode", "security_groups", "network"] {
            o.remove(key);
        }
        v["containers"][0]
            .as_object_mut()
            .unwrap()
            .remove("port_mappings");
        let t: Task = serde_json::from_value(v).unwrap();
        assert!(t.host_ports.is_empty() && t.network.is_none() && t.security_groups.is_empty());
    }
}
