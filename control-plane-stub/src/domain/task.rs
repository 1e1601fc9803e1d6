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
    /// Task scale-in protection (UpdateTaskProtection): protected until this time (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protected_until_ms: Option<i64>,
    /// Where it was placed, as ECS shows it: the instance's ecs.availability-zone and
    /// ecs.cpu-architecture attributes then.
    #[serde(default)]
    pub availability_zone: Option<String>,
    #[serde(default)]
    pub cpu_architecture: Option<String>,
    /// EC2 or EXTERNAL (ECS Anywhere's), as RunTask or its service asked.
    #[serde(default = "default_launch_type")]
    pub launch_type: String,
    /// enableExecuteCommand, as RunTask or the service gave it when the task was started.
    #[serde(default)]
    pub enable_execute_command: bool,
}

fn default_launch_type() -> String {
    "EC2".to_string()
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
    /// The digest of its image on its instance, once the agent has the image (imageDigest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
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
        /// Empty until the agent knows it.
        image_digest: String,
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
/// The stop code of tasks a service's scheduler stops.
pub const SCHEDULER_STOP_CODE: &str = "ServiceSchedulerInitiated";

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

/// Why a task of a deregistered instance is STOPPED.
pub const ORPHANED_REASON: &str =
    "Container instance deregistered: the task is no longer monitored by ECS";

/// UpdateTaskProtection's default and largest expiresInMinutes (ECS's: 2 hours, 48 hours).
pub const PROTECTION_DEFAULT_MINUTES: i64 = 120;
pub const PROTECTION_MAX_MINUTES: i64 = 2880;

impl Task {
    /// Whether a service's scale-in must leave it running now.
    pub fn is_protected(&self, now_ms: i64) -> bool {
        self.protected_until_ms.is_some_and(|until| until > now_ms)
    }

    /// A user's StopTask. Returns whether the agent must be told (false when the task is already
    /// stopped or already being stopped). The first stop code recorded wins.
    pub fn request_stop(&mut self, reason: Option<&str>, now_ms: i64) -> bool {
        self.request_stop_as(USER_STOP_CODE, reason, now_ms)
    }

    /// Its instance was deregistered with force: ECS no longer accounts for it (the agent no
    /// longer reports it), so it is recorded STOPPED now and a service replaces it elsewhere.
    /// Its containers may still run on the host, orphaned, as in ECS. Returns false when it had
    /// stopped already.
    pub fn orphan(&mut self, now_ms: i64) -> bool {
        if self.last_status == TaskStatus::Stopped {
            return false;
        }
        self.desired_status = TaskStatus::Stopped;
        self.last_status = TaskStatus::Stopped;
        self.stopping_at_ms.get_or_insert(now_ms);
        self.stopped_at_ms = Some(now_ms);
        if self.stopped_reason.is_none() {
            self.stopped_reason = Some(ORPHANED_REASON.to_string());
        }
        for c in &mut self.containers {
            if c.last_status != ContainerStatus::Stopped {
                c.last_status = ContainerStatus::Stopped;
                c.reason.get_or_insert_with(|| ORPHANED_REASON.to_string());
            }
        }
        self.version += 1;
        true
    }

    /// A stop with the stop code of whoever asks: the user's StopTask or a service's scheduler.
    pub fn request_stop_as(&mut self, code: &str, reason: Option<&str>, now_ms: i64) -> bool {
        if self.last_status == TaskStatus::Stopped || self.desired_status == TaskStatus::Stopped {
            return false;
        }
        self.desired_status = TaskStatus::Stopped;
        self.stopping_at_ms = Some(now_ms);
        if self.stop_code.is_none() {
            self.stop_code = Some(code.to_string());
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
                image_digest,
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
                if !image_digest.is_empty() {
                    c.image_digest = Some(image_digest.clone());
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
pub(crate) mod tests;
