//! Services as the control plane records them (issue #17): the service, its deployments and its
//! events, and the pure rules for creating and updating one. Stored as one JSON body per
//! service, so fields can grow without a migration.

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub mod connect;
pub mod history;

use crate::domain::placement::{ConstraintSpec, StrategySpec};
use history::{Revision, ServiceDeployment};

/// At most this many events are kept per service, newest first (as ECS shows them).
pub const MAX_EVENTS: usize = 100;
/// ECS's limits on a service name.
pub const MAX_NAME_LEN: usize = 255;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ServiceStatus {
    Active,
    /// Deleted: its tasks are being stopped.
    Draining,
    /// Deleted and without tasks; still describable.
    Inactive,
}

impl ServiceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceStatus::Active => "ACTIVE",
            ServiceStatus::Draining => "DRAINING",
            ServiceStatus::Inactive => "INACTIVE",
        }
    }
}

/// A deployment's rolloutState as ECS names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RolloutState {
    InProgress,
    Completed,
    Failed,
}

impl RolloutState {
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutState::InProgress => "IN_PROGRESS",
            RolloutState::Completed => "COMPLETED",
            RolloutState::Failed => "FAILED",
        }
    }
}

/// deploymentConfiguration as stored (ECS's member names on the API).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentSettings {
    pub minimum_healthy_percent: u32,
    pub maximum_percent: u32,
    pub circuit_breaker_enable: bool,
    pub circuit_breaker_rollback: bool,
}

impl Default for DeploymentSettings {
    /// ECS's defaults for a REPLICA service: 100 % healthy, 200 % at most, no circuit breaker.
    fn default() -> Self {
        Self {
            minimum_healthy_percent: 100,
            maximum_percent: 200,
            circuit_breaker_enable: false,
            circuit_breaker_rollback: false,
        }
    }
}

impl DeploymentSettings {
    /// ECS's defaults for a DAEMON service: each task replaced in place (0 % healthy, 100 %).
    pub fn daemon_default() -> Self {
        Self {
            minimum_healthy_percent: 0,
            maximum_percent: 100,
            ..Self::default()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    /// `ecs-svc/` and 19 digits.
    pub id: String,
    /// family:revision.
    pub task_definition: String,
    pub rollout_state: RolloutState,
    pub rollout_state_reason: String,
    /// Tasks of this deployment that stopped before they became healthy.
    pub failed_tasks: u32,
    /// The security group ids its tasks get (awsvpc), resolved when it was created.
    pub security_groups: Vec<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// The service revision it runs (see `service_deployment.rs`).
    #[serde(default)]
    pub revision: String,
    /// The service deployment it rolls out: its own, or for a rollback the failed one's.
    #[serde(default)]
    pub service_deployment: String,
}

impl Deployment {
    /// A new deployment (a fresh `ecs-svc/` id) running `revision`, rolling out the service
    /// deployment `service_deployment` (empty: one `history::begin` makes for it).
    pub fn of_revision(revision: &Revision, service_deployment: String, now_ms: i64) -> Self {
        let id = new_deployment_id();
        Deployment {
            rollout_state_reason: format!("ECS deployment {id} in progress."),
            id,
            task_definition: revision.task_definition.clone(),
            rollout_state: RolloutState::InProgress,
            failed_tasks: 0,
            security_groups: revision.security_groups.clone(),
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
            revision: revision.id.clone(),
            service_deployment,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceEvent {
    pub id: String,
    pub created_at_ms: i64,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Service {
    pub cluster: String,
    pub name: String,
    pub status: ServiceStatus,
    pub desired_count: u32,
    /// The primary deployment's task definition, family:revision.
    pub task_definition: String,
    pub launch_type: String,
    pub deployment: DeploymentSettings,
    pub health_check_grace_period_seconds: Option<u32>,
    /// networkConfiguration as the user gave it, echoed back.
    pub network_configuration: Option<Value>,
    /// TASK_DEFINITION, SERVICE or NONE: where its tasks' tags come from. (Its own tags are
    /// kept with every resource's, in the store's tags.)
    pub propagate_tags: Option<String>,
    pub enable_ecs_managed_tags: bool,
    /// enableExecuteCommand, given to every task it starts.
    #[serde(default)]
    pub enable_execute_command: bool,
    pub client_token: Option<String>,
    pub created_at_ms: i64,
    /// Newest first; the first is PRIMARY.
    pub deployments: Vec<Deployment>,
    /// Newest first, at most [`MAX_EVENTS`].
    pub events: Vec<ServiceEvent>,
    /// Whether "has reached a steady state" was said since the service last changed.
    #[serde(default)]
    pub steady: bool,
    /// Newest first: what its deployments ran.
    #[serde(default)]
    pub revisions: Vec<Revision>,
    /// Newest first, at most `service_deployment::MAX_HISTORY`.
    #[serde(default)]
    pub service_deployments: Vec<ServiceDeployment>,
    /// The back-off of a service whose tasks keep failing to start.
    #[serde(default)]
    pub throttle: Throttle,
    /// placementStrategy and placementConstraints as given (validated); empty: ECS's defaults.
    #[serde(default)]
    pub placement_strategy: Vec<StrategySpec>,
    #[serde(default)]
    pub placement_constraints: Vec<ConstraintSpec>,
    /// REPLICA (desiredCount tasks) or DAEMON (one per eligible instance).
    #[serde(default)]
    pub scheduling_strategy: SchedulingStrategy,
    /// serviceConnectConfiguration as given, its namespace resolved (`connect::check`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_connect: Option<Value>,
}

/// ECS's schedulingStrategy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SchedulingStrategy {
    #[default]
    Replica,
    Daemon,
}

impl SchedulingStrategy {
    pub fn as_str(self) -> &'static str {
        match self {
            SchedulingStrategy::Replica => "REPLICA",
            SchedulingStrategy::Daemon => "DAEMON",
        }
    }

    pub fn parse(s: &str) -> Option<SchedulingStrategy> {
        match s {
            "REPLICA" => Some(SchedulingStrategy::Replica),
            "DAEMON" => Some(SchedulingStrategy::Daemon),
            _ => None,
        }
    }
}

/// A service's start back-off (ECS's service throttle): the tasks of its primary deployment that
/// failed to start one after another, and until when no new task is started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Throttle {
    /// The primary deployment these count for; another primary starts afresh.
    pub deployment: String,
    /// Its failed tasks when last looked at: what is new is counted once.
    pub failures_seen: u32,
    pub consecutive_failures: u32,
    pub until_ms: i64,
}

impl Service {
    /// The task group of the service's tasks, as ECS sets it.
    pub fn group(&self) -> String {
        group_of(&self.name)
    }

    /// Records an event, keeping the newest [`MAX_EVENTS`].
    pub fn record(&mut self, message: String, now_ms: i64) {
        self.events.insert(
            0,
            ServiceEvent {
                id: uuid::Uuid::new_v4().to_string(),
                created_at_ms: now_ms,
                message,
            },
        );
        self.events.truncate(MAX_EVENTS);
    }

    /// Records an event unless the same message was recorded less than `window_ms` ago: a
    /// condition that holds pass after pass (a task that cannot be placed) is said once a while,
    /// not once a second.
    pub fn record_unless_recent(&mut self, message: String, now_ms: i64, window_ms: i64) {
        let recent = self
            .events
            .iter()
            .take_while(|e| now_ms - e.created_at_ms < window_ms)
            .any(|e| e.message == message);
        if !recent {
            self.record(message, now_ms);
        }
    }

    /// `(service NAME)`, how ECS's events name a service.
    pub fn tag(&self) -> String {
        format!("(service {})", self.name)
    }
}

/// ECS's event when a task of the service cannot be placed, from placement's reason (RESOURCE:CPU,
/// RESOURCE:MEMORY, RESOURCE:PORTS, ATTRIBUTE, AGENT), the instance that came closest and
/// Berth's detail.
pub fn unable_to_place(tag: &str, reason: &str, closest: Option<&str>, detail: &str) -> String {
    let head = format!(
        "{tag} was unable to place a task because no container instance met all of its requirements."
    );
    let instance = closest.map(|id| format!("The closest matching (container-instance {id})"));
    let why = match (reason, instance) {
        ("RESOURCE:CPU", Some(i)) => format!("{i} has insufficient CPU units available."),
        ("RESOURCE:MEMORY", Some(i)) => format!("{i} has insufficient memory available."),
        ("RESOURCE:PORTS", Some(i)) => {
            format!("{i} is already using a port required by your task.")
        }
        ("ATTRIBUTE", Some(i)) => {
            format!("{i} is missing an attribute required by your task.")
        }
        ("AGENT", _) | (_, None) => {
            "Reason: No Container Instances were found in your cluster.".to_string()
        }
        (other, Some(i)) => format!("{i} does not meet {other}."),
    };
    format!("{head} {why} For more information, see the Troubleshooting section. ({detail})")
}

pub fn group_of(service_name: &str) -> String {
    format!("service:{service_name}")
}

/// A new deployment id: `ecs-svc/` and 19 random digits, as ECS's.
pub fn new_deployment_id() -> String {
    let digits: String = (0..19)
        .map(|i| {
            let d = if i == 0 {
                fastrand::u8(1..10)
            } else {
                fastrand::u8(0..10)
            };
            char::from(b'0' + d)
        })
        .collect();
    format!("ecs-svc/{digits}")
}

/// ECS's rule for a service name: up to 255 letters, digits, hyphens and underscores.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > MAX_NAME_LEN
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(format!(
            "serviceName: {name:?} must be 1-{MAX_NAME_LEN} letters, digits, hyphens or underscores"
        ));
    }
    Ok(())
}

/// ECS's launch types Berth runs: EC2 and EXTERNAL are the same here; FARGATE is AWS's.
pub fn check_launch_type(launch_type: &str) -> Result<(), String> {
    match launch_type {
        "EC2" | "EXTERNAL" => Ok(()),
        "FARGATE" => Err(
            "launchType: FARGATE runs on AWS's own infrastructure; Berth runs tasks on its \
             container instances (use EXTERNAL or EC2)"
                .into(),
        ),
        other => Err(format!(
            "launchType: {other:?} is not one of EC2, EXTERNAL, FARGATE"
        )),
    }
}

/// A service of one task of `web:1` with nothing run yet, for the crate's tests.
#[cfg(test)]
pub fn test_service(name: &str) -> Service {
    Service {
        cluster: "default".into(),
        name: name.into(),
        status: ServiceStatus::Active,
        desired_count: 1,
        task_definition: "web:1".into(),
        launch_type: "EXTERNAL".into(),
        deployment: DeploymentSettings::default(),
        health_check_grace_period_seconds: None,
        network_configuration: None,
        propagate_tags: None,
        enable_ecs_managed_tags: false,
        enable_execute_command: false,
        client_token: None,
        created_at_ms: 1,
        deployments: Vec::new(),
        events: Vec::new(),
        steady: false,
        revisions: Vec::new(),
        service_deployments: Vec::new(),
        throttle: Throttle::default(),
        placement_strategy: Vec::new(),
        placement_constraints: Vec::new(),
        scheduling_strategy: SchedulingStrategy::Replica,
        service_connect: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_ids_look_like_ecs() {
        let id = new_deployment_id();
        let digits = id.strip_prefix("ecs-svc/").unwrap();
        assert_eq!(digits.len(), 19);
        assert!(digits.chars().all(|c| c.is_ascii_digit()) && !digits.starts_with('0'));
    }

    #[test]
    fn names_and_launch_types() {
        assert!(check_name("web_1-a").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("a b").unwrap_err().contains("serviceName"));
        assert!(check_name(&"x".repeat(256)).is_err());
        assert!(check_launch_type("EXTERNAL").is_ok() && check_launch_type("EC2").is_ok());
        assert!(check_launch_type("FARGATE")
            .unwrap_err()
            .contains("EXTERNAL"));
        assert!(check_launch_type("MOON").is_err());
    }

    #[test]
    fn placement_failures_are_worded_as_ecs() {
        let m = unable_to_place("(service web)", "RESOURCE:CPU", Some("abc"), "needs 512");
        assert_eq!(
            m,
            "(service web) was unable to place a task because no container instance met all of \
             its requirements. The closest matching (container-instance abc) has insufficient \
             CPU units available. For more information, see the Troubleshooting section. \
             (needs 512)"
        );
        assert!(
            unable_to_place("(service web)", "RESOURCE:MEMORY", Some("abc"), "")
                .contains("has insufficient memory available.")
        );
        assert!(unable_to_place("(service web)", "AGENT", None, "")
            .contains("Reason: No Container Instances were found in your cluster."));
        let mut s = test_service("web");
        s.record_unless_recent("same".into(), 1_000, 60_000);
        s.record_unless_recent("same".into(), 30_000, 60_000);
        assert_eq!(s.events.len(), 1);
        s.record_unless_recent("same".into(), 61_001, 60_000);
        assert_eq!(s.events.len(), 2);
    }

    #[test]
    fn events_are_newest_first_and_bounded() {
        let mut s = test_service("web");
        for i in 0..(MAX_EVENTS + 5) {
            s.record(format!("event {i}"), i as i64);
        }
        assert_eq!(s.events.len(), MAX_EVENTS);
        assert_eq!(s.events[0].message, format!("event {}", MAX_EVENTS + 4));
        assert_eq!(s.group(), "service:web");
        assert_eq!(s.tag(), "(service web)");
    }
}
