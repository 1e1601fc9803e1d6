//! The task state machine: pure, no I/O.
//!
//! `TaskState::apply` folds an event, stamped with the time the worker saw it, into the state;
//! `TaskState::plan` says what the worker must do next; `TaskState::take_reports` yields the
//! status changes not yet reported. The worker (`crate::engine`) carries out one action at a
//! time, feeds the outcome back as an event, and persists the state together with its reports
//! before anything is sent.
//!
//! Lifecycle rules beyond the basics, as the Amazon ECS agent has them:
//! - dependsOn: a container is created only once every dependency meets its condition; a
//!   dependency that can no longer meet it (or takes longer than the dependency's
//!   startTimeout) stops the task as TaskFailedToStart;
//! - shutdown in reverse dependency order: a container is signalled only after every container
//!   that depends on it has stopped;
//! - restartPolicy: an exit the policy covers restarts the container in place instead of
//!   stopping it, and does not stop the task even when the container is essential;
//! - cleanup waits `cleanup_wait_ms` after the task stopped, counted from the persisted stop
//!   time so an agent restart does not reset it;
//! - the task's network is decided (addresses, host ports) and recorded before anything is
//!   created, set up before the first container is created, and taken down once every
//!   container has stopped and before the task reports STOPPED, so a STOPPED task's ports and
//!   address are free again for the next task the control plane places.

use serde::{Deserialize, Serialize};

use crate::health::{CheckResult, HealthState, HealthStatus};
use crate::model::{
    ContainerSpec, ContainerStatus, Dependency, DependencyCondition, RestartPolicy, StopCode,
    TaskSpec, TaskStatus,
};
use crate::network::TaskNetwork;

/// Where the task's network stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetworkPhase {
    /// Nothing to set up: `none` mode, or a state written before networking.
    #[default]
    NotNeeded,
    /// To be decided before the first container is created.
    Pending,
    /// Decided and recorded; being created (or created again after a crash).
    Planned,
    Up,
    /// Taken down; the plan is kept for the final report.
    Released,
}

/// ECS's reason prefix for a task whose network could not be set up.
pub const NETWORK_FAILURE_PREFIX: &str =
    "ResourceInitializationError: failed to set up the task's network";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskState {
    pub spec: TaskSpec,
    pub desired: TaskStatus,
    pub known: TaskStatus,
    /// The last task status handed to the outbox.
    pub reported: TaskStatus,
    pub stop_code: Option<StopCode>,
    pub stopped_reason: Option<String>,
    pub containers: Vec<ContainerState>,
    /// Containers, tasks and snapshots removed from containerd.
    pub cleaned_up: bool,
    /// When the task became STOPPED (ms since the epoch); cleanup waits from here. None in
    /// states written by older agents, which are cleaned up at once.
    #[serde(default)]
    pub stopped_at_ms: Option<u64>,
    /// The task's cgroup (`<root>/<task id>`), recorded when the task is accepted and so
    /// before the worker creates it; cleanup removes it. None in states of older agents.
    #[serde(default)]
    pub cgroup: Option<String>,
    #[serde(default)]
    pub network_phase: NetworkPhase,
    /// The task's network as decided, recorded before any of it is created.
    #[serde(default)]
    pub network: Option<TaskNetwork>,
    /// When the first of its image pulls began and the last ended (ms since the epoch);
    /// None while no image was pulled (all cached).
    #[serde(default)]
    pub pull: Option<PullTimes>,
    /// The service that started the task, if one did (the task metadata's ServiceName).
    #[serde(default)]
    pub service_name: Option<String>,
}

/// ECS's pullStartedAt and pullStoppedAt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullTimes {
    pub started_at_ms: u64,
    pub stopped_at_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerState {
    pub name: String,
    /// The containerd container id.
    pub runtime_id: String,
    pub known: ContainerStatus,
    pub reported: ContainerStatus,
    pub exit_code: Option<i32>,
    pub reason: Option<String>,
    /// When SIGTERM was sent (ms since the epoch); SIGKILL follows after the stop timeout.
    pub stop_sent_at_ms: Option<u64>,
    pub kill_sent: bool,
    /// When the container first started: START dependencies, startTimeout and the restart
    /// policy's attempt period count from here.
    #[serde(default)]
    pub started_at_ms: Option<u64>,
    #[serde(default)]
    pub restart_count: u32,
    #[serde(default)]
    pub reported_restart_count: u32,
    #[serde(default)]
    pub last_restart_at_ms: Option<u64>,
    /// The exit code of an exit the restart policy will undo. The container stays RUNNING to
    /// the control plane meanwhile, as in ECS.
    #[serde(default)]
    pub restart_pending: Option<i32>,
    /// Some for a container with a healthCheck: UNKNOWN until its checks decide.
    #[serde(default)]
    pub health: Option<HealthState>,
    /// The health status last handed to the outbox.
    #[serde(default)]
    pub reported_health: Option<HealthStatus>,
    /// How the image got into containerd (pulled or cached), for the PULLED report.
    #[serde(default)]
    pub pull_summary: Option<String>,
    /// The image's digest once it is in containerd, for DescribeTasks' imageDigest.
    #[serde(default)]
    pub image_digest: Option<String>,
    /// The unguessable id in the container's task metadata URIs (ECS's v3 endpoint id): the
    /// engine gives one to every container of a new task; empty in tasks recorded before.
    #[serde(default)]
    pub metadata_endpoint_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    ImageResolved {
        container: String,
    },
    Created {
        container: String,
    },
    Started {
        container: String,
    },
    Exited {
        container: String,
        exit_code: i32,
    },
    /// The container could not be prepared, created or started, or its dependencies can no
    /// longer be met; `reason` is ECS-style (`CannotStartContainerError: ...`).
    Failed {
        container: String,
        reason: String,
    },
    /// The container's process was started again after an exit its restart policy covers.
    Restarted {
        container: String,
    },
    RestartFailed {
        container: String,
        reason: String,
    },
    StopRequested {
        code: StopCode,
        reason: String,
    },
    StopSignalSent {
        container: String,
    },
    /// The OOM killer ended the container's process; its exit follows as [`Event::Exited`].
    OutOfMemory {
        container: String,
    },
    /// A container's image is in containerd: `summary` says how (pulled: layers, bytes,
    /// time; or the cached one used), `pulled` when a pull began and ended.
    ImageReady {
        container: String,
        summary: String,
        pulled: Option<PullTimes>,
        digest: Option<String>,
    },
    /// Recovery found no process where the state expected one (the agent was down).
    Vanished {
        container: String,
    },
    KillSent {
        container: String,
    },
    /// The network was decided (None: the mode needs nothing from the agent).
    NetworkPlanned {
        network: Option<TaskNetwork>,
    },
    NetworkUp,
    /// The network could not be decided or set up: the task fails to start.
    NetworkFailed {
        reason: String,
    },
    NetworkReleased,
    /// A health check of a running container ended.
    HealthChecked {
        container: String,
        result: CheckResult,
    },
    CleanedUp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    ResolveImage(String),
    Create(String),
    Start(String),
    /// A new process in the same container (same writable layer).
    Restart(String),
    /// Nothing to do in the runtime: the container cannot start (its dependencies can no
    /// longer be met). The worker feeds it back as [`Event::Failed`].
    Fail {
        container: String,
        reason: String,
    },
    /// SIGTERM now, SIGKILL after `timeout_secs`.
    Stop {
        container: String,
        timeout_secs: u32,
    },
    Kill(String),
    /// Decide the network (addresses, ports) and record it.
    PlanNetwork,
    /// Create what the recorded network describes.
    SetupNetwork,
    /// Remove what the recorded network describes.
    TeardownNetwork,
    Cleanup,
}

/// A status change to report to the control plane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    Container {
        name: String,
        runtime_id: String,
        status: ContainerStatus,
        exit_code: Option<i32>,
        reason: Option<String>,
        restart_count: u32,
        /// For containers with a healthCheck: the status and the last check.
        health: Option<HealthState>,
        /// The digest of the image the container runs (its manifest, or index, in containerd).
        image_digest: Option<String>,
    },
    Task {
        status: TaskStatus,
        stop_code: Option<StopCode>,
        stopped_reason: Option<String>,
        /// With RUNNING and STOPPED, when the task has a network.
        network: Option<TaskNetwork>,
        /// With RUNNING and STOPPED, when an image was pulled.
        pull: Option<PullTimes>,
    },
}

/// Where a dependency stands for the container waiting on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DependencyState {
    Met,
    Waiting,
    /// It can no longer be met; the reason names both containers and the condition.
    Impossible(String),
}

/// ECS's restart tracker rule: restart unless the policy is off, the exit code is ignored, or
/// the container ran less than the attempt period since its last restart (or its start).
pub fn should_restart(
    policy: Option<&RestartPolicy>,
    exit_code: i32,
    started_at_ms: Option<u64>,
    last_restart_at_ms: Option<u64>,
    now_ms: u64,
) -> bool {
    let Some(p) = policy.filter(|p| p.enabled) else {
        return false;
    };
    if p.ignored_exit_codes.contains(&exit_code) {
        return false;
    }
    let Some(since) = last_restart_at_ms.or(started_at_ms) else {
        return false;
    };
    now_ms.saturating_sub(since) >= u64::from(p.restart_attempt_period_secs) * 1000
}

pub fn condition_name(c: DependencyCondition) -> &'static str {
    match c {
        DependencyCondition::Start => "START",
        DependencyCondition::Complete => "COMPLETE",
        DependencyCondition::Success => "SUCCESS",
        DependencyCondition::Healthy => "HEALTHY",
    }
}

impl TaskState {
    /// A task as received from the control plane. `runtime_id` names each container in
    /// containerd; see [`runtime_id`].
    pub fn new(spec: TaskSpec, desired: TaskStatus, now_ms: u64) -> Self {
        let containers = spec
            .containers
            .iter()
            .enumerate()
            .map(|(i, c)| ContainerState {
                name: c.name.clone(),
                runtime_id: runtime_id(spec.id(), i, &c.name),
                known: ContainerStatus::None,
                reported: ContainerStatus::None,
                exit_code: None,
                reason: None,
                stop_sent_at_ms: None,
                kill_sent: false,
                started_at_ms: None,
                restart_count: 0,
                reported_restart_count: 0,
                last_restart_at_ms: None,
                restart_pending: None,
                health: c
                    .extra
                    .health_check
                    .as_ref()
                    .map(|_| HealthState::default()),
                reported_health: None,
                pull_summary: None,
                image_digest: None,
                metadata_endpoint_id: String::new(),
            })
            .collect();
        let mut state = TaskState {
            spec,
            desired: TaskStatus::Running,
            known: TaskStatus::Pending,
            reported: TaskStatus::Pending,
            stop_code: None,
            stopped_reason: None,
            containers,
            cleaned_up: false,
            stopped_at_ms: None,
            cgroup: None,
            network_phase: NetworkPhase::Pending,
            network: None,
            pull: None,
            service_name: None,
        };
        if desired == TaskStatus::Stopped {
            state.apply(
                Event::StopRequested {
                    code: StopCode::UserInitiated,
                    reason: "Task stopped before it started".into(),
                },
                now_ms,
            );
        }
        state
    }

    /// A task the control plane placed here but this agent never received (see
    /// `manifest.rs`): recorded as finished, so a late payload for it is never run, with the
    /// one report that tells the control plane it stopped.
    pub fn never_received(arn: &str, reason: &str, now_ms: u64) -> (Self, Vec<Report>) {
        let spec = TaskSpec {
            arn: arn.to_owned(),
            family: String::new(),
            revision: 0,
            network_mode: crate::model::NetworkMode::None,
            cpu: 0,
            memory_mib: 0,
            containers: Vec::new(),
            volumes: Vec::new(),
            ingress: None,
        };
        let state = TaskState {
            spec,
            desired: TaskStatus::Stopped,
            known: TaskStatus::Stopped,
            reported: TaskStatus::Stopped,
            stop_code: Some(StopCode::TaskFailedToStart),
            stopped_reason: Some(reason.to_owned()),
            containers: Vec::new(),
            cleaned_up: true,
            stopped_at_ms: Some(now_ms),
            cgroup: None,
            network_phase: NetworkPhase::NotNeeded,
            network: None,
            pull: None,
            service_name: None,
        };
        let report = Report::Task {
            status: TaskStatus::Stopped,
            stop_code: state.stop_code,
            stopped_reason: state.stopped_reason.clone(),
            network: None,
            pull: None,
        };
        (state, vec![report])
    }

    pub fn is_finished(&self) -> bool {
        self.known == TaskStatus::Stopped && self.cleaned_up && self.reported == TaskStatus::Stopped
    }

    /// The task definition's container names, in order.
    pub fn container_names(&self) -> Vec<&str> {
        self.spec
            .containers
            .iter()
            .map(|c| c.name.as_str())
            .collect()
    }

    /// Why `name` names no container of this task, with the names it has (for a user's
    /// request: logs, exec).
    pub fn no_such_container(&self, name: &str) -> String {
        format!(
            "task {} has no container {name:?} (it has {})",
            self.spec.arn,
            self.container_names().join(", ")
        )
    }

    pub fn container(&self, name: &str) -> Option<&ContainerState> {
        self.containers.iter().find(|c| c.name == name)
    }

    fn container_mut(&mut self, name: &str) -> Option<&mut ContainerState> {
        self.containers.iter_mut().find(|c| c.name == name)
    }

    fn spec_of(&self, name: &str) -> Option<&ContainerSpec> {
        self.spec.containers.iter().find(|c| c.name == name)
    }

    fn is_essential(&self, name: &str) -> bool {
        self.spec_of(name).is_some_and(|c| c.essential)
    }

    fn stop_timeout_secs(&self, name: &str) -> u32 {
        self.spec_of(name)
            .map_or(crate::model::DEFAULT_STOP_TIMEOUT_SECS, |c| {
                c.stop_timeout_secs
            })
    }

    /// Folds one event, seen by the worker at `now_ms`, into the state. Events about unknown
    /// containers are ignored: they can only come from a stale runtime event, and must not
    /// disturb a task.
    pub fn apply(&mut self, event: Event, now_ms: u64) {
        match event {
            Event::ImageResolved { container } => self.advance(&container, ContainerStatus::Pulled),
            Event::ImageReady {
                container,
                summary,
                pulled,
                digest,
            } => {
                if let Some(c) = self.container_mut(&container) {
                    c.pull_summary = Some(summary);
                    c.image_digest = digest;
                }
                if let Some(p) = pulled {
                    let pull = self.pull.get_or_insert(p);
                    pull.started_at_ms = pull.started_at_ms.min(p.started_at_ms);
                    pull.stopped_at_ms = pull.stopped_at_ms.max(p.stopped_at_ms);
                }
            }
            Event::Created { container } => self.advance(&container, ContainerStatus::Created),
            Event::Started { container } => {
                self.advance(&container, ContainerStatus::Running);
                if let Some(c) = self.container_mut(&container) {
                    if c.known == ContainerStatus::Running {
                        c.started_at_ms.get_or_insert(now_ms);
                    }
                }
            }
            Event::Exited {
                container,
                exit_code,
            } => self.exited(&container, exit_code, now_ms),
            Event::Failed { container, reason } => {
                if let Some(c) = self.container_mut(&container) {
                    c.known = ContainerStatus::Stopped;
                    c.restart_pending = None;
                    c.reason = Some(reason.clone());
                }
                self.request_stop(StopCode::TaskFailedToStart, reason);
            }
            Event::Restarted { container } => {
                if let Some(c) = self.container_mut(&container) {
                    if c.restart_pending.take().is_some() {
                        c.restart_count += 1;
                        c.last_restart_at_ms = Some(now_ms);
                    }
                }
            }
            Event::RestartFailed { container, reason } => {
                let Some(c) = self.container_mut(&container) else {
                    return;
                };
                let Some(code) = c.restart_pending.take() else {
                    return;
                };
                c.known = ContainerStatus::Stopped;
                c.exit_code = Some(code);
                c.reason = Some(reason.clone());
                if self.desired == TaskStatus::Running && self.is_essential(&container) {
                    self.request_stop(
                        StopCode::EssentialContainerExited,
                        format!("Essential container in task exited: {container} could not be restarted: {reason}"),
                    );
                }
            }
            Event::StopRequested { code, reason } => self.request_stop(code, reason),
            Event::StopSignalSent { container } => {
                if let Some(c) = self.container_mut(&container) {
                    c.stop_sent_at_ms = Some(now_ms);
                }
            }
            Event::KillSent { container } => {
                if let Some(c) = self.container_mut(&container) {
                    c.kill_sent = true;
                }
            }
            Event::OutOfMemory { container } => {
                if let Some(c) = self.container_mut(&container) {
                    if c.known != ContainerStatus::Stopped {
                        c.reason = Some(crate::cgroups::OOM_REASON.into());
                    }
                }
            }
            Event::Vanished { container } => {
                let Some(c) = self.container_mut(&container) else {
                    return;
                };
                match c.known {
                    // Created but never started: create it again.
                    ContainerStatus::Created => c.known = ContainerStatus::Pulled,
                    // A pending restart creates a new process anyway.
                    ContainerStatus::Running if c.restart_pending.is_some() => {}
                    ContainerStatus::Running => {
                        c.known = ContainerStatus::Stopped;
                        c.reason = Some(
                            "the container's process was gone when the agent checked it".into(),
                        );
                        if self.desired == TaskStatus::Running && self.is_essential(&container) {
                            self.request_stop(
                                StopCode::EssentialContainerExited,
                                format!("Essential container in task exited: {container} vanished"),
                            );
                        }
                    }
                    _ => {}
                }
            }
            Event::NetworkPlanned { network } => {
                if self.network_phase == NetworkPhase::Pending {
                    self.network_phase = if network.is_some() {
                        NetworkPhase::Planned
                    } else {
                        NetworkPhase::NotNeeded
                    };
                    self.network = network;
                }
            }
            Event::NetworkUp => {
                if self.network_phase == NetworkPhase::Planned {
                    self.network_phase = NetworkPhase::Up;
                }
            }
            Event::NetworkFailed { reason } => {
                let reason = format!("{NETWORK_FAILURE_PREFIX}: {reason}");
                for c in &mut self.containers {
                    if c.known < ContainerStatus::Created {
                        c.reason = Some(reason.clone());
                    }
                }
                // What was decided but not created (or half created) is taken down by the
                // teardown that follows; an undecided network has nothing to take down.
                if self.network_phase == NetworkPhase::Pending {
                    self.network_phase = NetworkPhase::NotNeeded;
                }
                self.request_stop(StopCode::TaskFailedToStart, reason);
            }
            Event::NetworkReleased => {
                if matches!(self.network_phase, NetworkPhase::Planned | NetworkPhase::Up) {
                    self.network_phase = NetworkPhase::Released;
                }
            }
            Event::HealthChecked { container, result } => {
                let check = self
                    .spec_of(&container)
                    .and_then(|s| s.extra.health_check.clone());
                let Some(c) = self.container_mut(&container) else {
                    return;
                };
                // A check that ends after its container stopped says nothing.
                if let (Some(check), Some(h), ContainerStatus::Running) =
                    (check, c.health.as_mut(), c.known)
                {
                    let started = c.started_at_ms.unwrap_or(now_ms);
                    h.record(&check, started, result);
                }
            }
            Event::CleanedUp => self.cleaned_up = true,
        }
        self.refresh_task_status(now_ms);
    }

    fn exited(&mut self, name: &str, exit_code: i32, now_ms: u64) {
        let desired = self.desired;
        let policy = self
            .spec_of(name)
            .and_then(|s| s.extra.restart_policy.clone());
        let Some(c) = self.container_mut(name) else {
            return;
        };
        // A second report of the same exit (a recheck) changes nothing.
        if c.known == ContainerStatus::Stopped || c.restart_pending.is_some() {
            return;
        }
        if desired == TaskStatus::Running
            && should_restart(
                policy.as_ref(),
                exit_code,
                c.started_at_ms,
                c.last_restart_at_ms,
                now_ms,
            )
        {
            c.restart_pending = Some(exit_code);
            return;
        }
        c.known = ContainerStatus::Stopped;
        c.exit_code = Some(exit_code);
        if desired == TaskStatus::Running && self.is_essential(name) {
            self.request_stop(
                StopCode::EssentialContainerExited,
                format!("Essential container in task exited: {name} exited with code {exit_code}"),
            );
        }
    }

    fn advance(&mut self, name: &str, to: ContainerStatus) {
        if let Some(c) = self.container_mut(name) {
            // Never move backwards: a late "started" must not revive a stopped container.
            if c.known < to {
                c.known = to;
            }
        }
    }

    /// The first stop wins: its code and reason are what the user sees.
    fn request_stop(&mut self, code: StopCode, reason: String) {
        if self.desired == TaskStatus::Stopped {
            return;
        }
        self.desired = TaskStatus::Stopped;
        self.stop_code = Some(code);
        self.stopped_reason = Some(reason);
        for c in &mut self.containers {
            // Containers that never started have nothing to stop; an exit awaiting its
            // restart becomes final.
            if c.known < ContainerStatus::Running {
                c.known = ContainerStatus::Stopped;
            } else if let Some(code) = c.restart_pending.take() {
                c.known = ContainerStatus::Stopped;
                c.exit_code = Some(code);
            }
        }
    }

    /// Whether the task holds network resources that must be released before it is STOPPED.
    pub fn holds_network(&self) -> bool {
        matches!(self.network_phase, NetworkPhase::Planned | NetworkPhase::Up)
    }

    fn refresh_task_status(&mut self, now_ms: u64) {
        if self
            .containers
            .iter()
            .all(|c| c.known == ContainerStatus::Stopped)
            && !self.holds_network()
        {
            self.known = TaskStatus::Stopped;
            self.stopped_at_ms.get_or_insert(now_ms);
        } else if self.desired == TaskStatus::Running
            && self.known == TaskStatus::Pending
            && self
                .containers
                .iter()
                .all(|c| c.known >= ContainerStatus::Running)
        {
            self.known = TaskStatus::Running;
        }
    }

    /// Where `dep` of container `dependent` stands at `now_ms`. ECS's rules: START needs the
    /// dependency started; COMPLETE needs it exited; SUCCESS exited with 0. The dependency's
    /// own startTimeout bounds how long COMPLETE and SUCCESS are waited for, from its start.
    pub fn dependency_state(
        &self,
        dependent: &str,
        dep: &Dependency,
        now_ms: u64,
    ) -> DependencyState {
        let name = &dep.container_name;
        let cond = condition_name(dep.condition);
        let impossible = |why: String| {
            DependencyState::Impossible(format!(
                "Dependency condition not satisfied: container {dependent} depends on {name} \
                 reaching {cond}, but {name} {why}"
            ))
        };
        let Some(d) = self.container(name) else {
            return impossible("is not a container of the task".into());
        };
        let stopped = d.known == ContainerStatus::Stopped;
        let exited = if stopped { d.exit_code } else { None };
        match dep.condition {
            DependencyCondition::Start if d.started_at_ms.is_some() => return DependencyState::Met,
            DependencyCondition::Complete if exited.is_some() => return DependencyState::Met,
            DependencyCondition::Success if exited == Some(0) => return DependencyState::Met,
            DependencyCondition::Success if exited.is_some() => {
                return impossible(format!("exited with code {}", exited.unwrap_or_default()))
            }
            DependencyCondition::Healthy => match &d.health {
                None => return impossible("has no healthCheck".into()),
                Some(h) if h.status == HealthStatus::Healthy => return DependencyState::Met,
                Some(_) if stopped => return impossible("stopped before it was healthy".into()),
                Some(_) => {}
            },
            _ => {}
        }
        if stopped {
            return impossible("stopped without running".into());
        }
        match self.dependency_deadline_ms(dep) {
            Some(deadline) if now_ms >= deadline => impossible(format!(
                "did not reach it within its startTimeout of {}s",
                self.spec_of(name)
                    .and_then(|s| s.extra.start_timeout_secs)
                    .unwrap_or_default()
            )),
            _ => DependencyState::Waiting,
        }
    }

    /// When waiting for `dep` ends: its startTimeout after it started (COMPLETE and SUCCESS
    /// only; a START dependency either starts or fails).
    fn dependency_deadline_ms(&self, dep: &Dependency) -> Option<u64> {
        if dep.condition == DependencyCondition::Start {
            return None;
        }
        let timeout = self
            .spec_of(&dep.container_name)?
            .extra
            .start_timeout_secs
            .filter(|t| *t > 0)?;
        let started = self.container(&dep.container_name)?.started_at_ms?;
        Some(started + u64::from(timeout) * 1000)
    }

    fn dependencies_of(&self, name: &str) -> &[Dependency] {
        self.spec_of(name).map_or(&[], |s| &s.extra.depends_on)
    }

    /// Met only when every dependency is; the first impossible one wins.
    fn dependencies_state(&self, name: &str, now_ms: u64) -> DependencyState {
        let mut all_met = true;
        for dep in self.dependencies_of(name) {
            match self.dependency_state(name, dep, now_ms) {
                DependencyState::Met => {}
                DependencyState::Waiting => all_met = false,
                impossible @ DependencyState::Impossible(_) => return impossible,
            }
        }
        if all_met {
            DependencyState::Met
        } else {
            DependencyState::Waiting
        }
    }

    /// Reverse dependency order: a container stops only after everything depending on it did.
    fn dependents_stopped(&self, name: &str) -> bool {
        self.containers.iter().all(|c| {
            c.known == ContainerStatus::Stopped
                || !self
                    .dependencies_of(&c.name)
                    .iter()
                    .any(|d| d.container_name == name)
        })
    }

    fn cleanup_at_ms(&self, cleanup_wait_ms: u64) -> u64 {
        self.stopped_at_ms.map_or(0, |s| s + cleanup_wait_ms)
    }

    /// What to do next, in order. The worker runs the first action, applies its outcome and
    /// plans again, so a plan never needs to remember what is in flight.
    pub fn plan(&self, now_ms: u64, cleanup_wait_ms: u64) -> Vec<Action> {
        if self.known == TaskStatus::Stopped {
            return if self.cleaned_up || now_ms < self.cleanup_at_ms(cleanup_wait_ms) {
                vec![]
            } else {
                vec![Action::Cleanup]
            };
        }
        let running = self.desired == TaskStatus::Running;
        match self.network_phase {
            NetworkPhase::Pending if running => return vec![Action::PlanNetwork],
            NetworkPhase::Planned if running => return vec![Action::SetupNetwork],
            NetworkPhase::Planned | NetworkPhase::Up
                if self
                    .containers
                    .iter()
                    .all(|c| c.known == ContainerStatus::Stopped) =>
            {
                return vec![Action::TeardownNetwork]
            }
            _ => {}
        }
        let mut actions = Vec::new();
        for c in &self.containers {
            let name = c.name.clone();
            match (self.desired, c.known) {
                (TaskStatus::Running, ContainerStatus::None) => {
                    actions.push(Action::ResolveImage(name))
                }
                (TaskStatus::Running, ContainerStatus::Pulled) => {
                    match self.dependencies_state(&name, now_ms) {
                        DependencyState::Met => actions.push(Action::Create(name)),
                        DependencyState::Waiting => {}
                        DependencyState::Impossible(reason) => actions.push(Action::Fail {
                            container: name,
                            reason,
                        }),
                    }
                }
                (TaskStatus::Running, ContainerStatus::Created) => {
                    actions.push(Action::Start(name))
                }
                (TaskStatus::Running, ContainerStatus::Running) if c.restart_pending.is_some() => {
                    actions.push(Action::Restart(name))
                }
                (TaskStatus::Stopped, ContainerStatus::Running)
                    if self.dependents_stopped(&name) =>
                {
                    match c.stop_sent_at_ms {
                        None => actions.push(Action::Stop {
                            timeout_secs: self.stop_timeout_secs(&name),
                            container: name,
                        }),
                        Some(sent) if !c.kill_sent && now_ms >= self.kill_at(c, sent) => {
                            actions.push(Action::Kill(name))
                        }
                        Some(_) => {}
                    }
                }
                _ => {}
            }
        }
        actions
    }

    fn kill_at(&self, c: &ContainerState, stop_sent_at_ms: u64) -> u64 {
        stop_sent_at_ms + u64::from(self.stop_timeout_secs(&c.name)) * 1000
    }

    /// When the worker must wake up without an event: to SIGKILL a container that ignored
    /// SIGTERM, to give up on a dependency's startTimeout, or to clean up a stopped task.
    pub fn next_deadline_ms(&self, cleanup_wait_ms: u64) -> Option<u64> {
        if self.known == TaskStatus::Stopped {
            return (!self.cleaned_up).then(|| self.cleanup_at_ms(cleanup_wait_ms));
        }
        let kills = self
            .containers
            .iter()
            .filter(|c| c.known == ContainerStatus::Running && !c.kill_sent)
            .filter_map(|c| c.stop_sent_at_ms.map(|sent| self.kill_at(c, sent)));
        let waits = self
            .containers
            .iter()
            .filter(|c| self.desired == TaskStatus::Running && c.known == ContainerStatus::Pulled)
            .flat_map(|c| self.dependencies_of(&c.name))
            .filter_map(|d| self.dependency_deadline_ms(d));
        kills.chain(waits).min()
    }

    /// The changes not yet reported, containers before the task so that a STOPPED task never
    /// arrives before the exit codes of its containers.
    pub fn take_reports(&mut self) -> Vec<Report> {
        let mut reports = Vec::new();
        for c in &mut self.containers {
            let health = c.health.as_ref().map(|h| h.status);
            // Health is reported from RUNNING on, and at once when its status changes.
            let health_changed = c.known >= ContainerStatus::Running && health != c.reported_health;
            if c.known != c.reported
                || c.restart_count != c.reported_restart_count
                || health_changed
            {
                c.reported = c.known;
                c.reported_restart_count = c.restart_count;
                if c.known >= ContainerStatus::Running {
                    c.reported_health = health;
                }
                reports.push(Report::Container {
                    name: c.name.clone(),
                    runtime_id: c.runtime_id.clone(),
                    status: c.known,
                    exit_code: c.exit_code,
                    // PULLED carries how the image got there: the task's events show it.
                    reason: if c.known == ContainerStatus::Pulled {
                        c.pull_summary.clone()
                    } else {
                        c.reason.clone()
                    },
                    restart_count: c.restart_count,
                    image_digest: c.image_digest.clone(),
                    health: c
                        .health
                        .clone()
                        .filter(|_| c.known >= ContainerStatus::Running),
                });
            }
        }
        if self.known != self.reported {
            self.reported = self.known;
            let stopped = self.known == TaskStatus::Stopped;
            reports.push(Report::Task {
                status: self.known,
                stop_code: self.stop_code.filter(|_| stopped),
                stopped_reason: self.stopped_reason.clone().filter(|_| stopped),
                network: self
                    .network
                    .clone()
                    .filter(|_| self.known != TaskStatus::Pending),
                pull: self.pull.filter(|_| self.known != TaskStatus::Pending),
            });
        }
        reports
    }
}

/// The containerd id of a task's container: readable when it fits containerd's 76-character
/// limit, otherwise the index keeps it unique.
pub fn runtime_id(task_id: &str, index: usize, name: &str) -> String {
    let id = format!("{task_id}-{name}");
    if id.len() <= 76 {
        id
    } else {
        let keep = 76 - task_id.len() - 1 - 4;
        format!("{task_id}-{index:03}{}", &name[..keep.min(name.len())])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ContainerSpec, NetworkMode};
    use crate::model::{Dependency, DependencyCondition as Cond, RestartPolicy};

    fn container(name: &str, essential: bool) -> ContainerSpec {
        ContainerSpec {
            name: name.into(),
            image: "busybox".into(),
            essential,
            entry_point: None,
            command: None,
            environment: vec![],
            working_directory: None,
            user: None,
            cpu: 0,
            memory_mib: 64,
            memory_reservation_mib: 0,
            stop_timeout_secs: 2,
            extra: Default::default(),
        }
    }

    fn spec(containers: Vec<ContainerSpec>, network_mode: NetworkMode) -> TaskSpec {
        TaskSpec {
            arn: "arn:aws:ecs:us-east-1:0:task/default/abc".into(),
            family: "f".into(),
            revision: 1,
            network_mode,
            cpu: 0,
            memory_mib: 0,
            containers,
            volumes: vec![],
            ingress: None,
        }
    }

    /// A `none` task whose (empty) network has been planned.
    fn task(containers: Vec<ContainerSpec>) -> TaskState {
        let mut t = TaskState::new(spec(containers, NetworkMode::None), TaskStatus::Running, 0);
        assert_eq!(t.plan(0, 0), vec![Action::PlanNetwork]);
        t.apply(Event::NetworkPlanned { network: None }, 0);
        t
    }

    fn bridge_network() -> TaskNetwork {
        TaskNetwork {
            mode: NetworkMode::Bridge,
            task_id: "abc".into(),
            netns: Some("bth-abc".into()),
            host_veth: Some("bth_0123456789a".into()),
            address: Some(std::net::Ipv4Addr::new(10, 231, 0, 2)),
            prefix_len: 16,
            gateway: Some(std::net::Ipv4Addr::new(10, 231, 0, 1)),
            mac: Some("02:00:00:00:00:01".into()),
            bindings: vec![],
            ingress: None,
        }
    }

    fn checked(name: &str, essential: bool, retries: u32) -> ContainerSpec {
        let mut c = container(name, essential);
        c.extra.health_check = Some(crate::model::HealthCheck {
            args: vec!["true".into()],
            interval_secs: 5,
            timeout_secs: 2,
            retries,
            start_period_secs: 0,
        });
        c
    }

    fn check_result(ok: bool, at_ms: u64) -> CheckResult {
        CheckResult {
            exit_code: Some(if ok { 0 } else { 1 }),
            output: String::new(),
            ended_at_ms: at_ms,
        }
    }

    fn health_in(reports: &[Report]) -> Vec<HealthStatus> {
        reports
            .iter()
            .filter_map(|r| match r {
                Report::Container {
                    health: Some(h), ..
                } => Some(h.status),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn health_is_reported_from_running_on_and_only_when_it_changes() {
        let mut t = task(vec![checked("a", true, 2)]);
        run_to_running(&mut t);
        assert_eq!(health_in(&t.take_reports()), vec![HealthStatus::Unknown]);
        let check = |t: &mut TaskState, ok, at| {
            t.apply(
                Event::HealthChecked {
                    container: "a".into(),
                    result: check_result(ok, at),
                },
                at,
            )
        };
        check(&mut t, true, 1_000);
        assert_eq!(health_in(&t.take_reports()), vec![HealthStatus::Healthy]);
        check(&mut t, true, 2_000);
        check(&mut t, false, 3_000);
        assert!(t.take_reports().is_empty(), "no change, no report");
        check(&mut t, false, 4_000);
        assert_eq!(health_in(&t.take_reports()), vec![HealthStatus::Unhealthy]);
        assert_eq!(
            t.known,
            TaskStatus::Running,
            "a standalone task keeps running"
        );
    }

    #[test]
    fn a_healthy_dependency_gates_the_create_and_a_stopped_one_fails_it() {
        let mut app = container("app", false);
        app.extra.depends_on = vec![Dependency {
            container_name: "db".into(),
            condition: Cond::Healthy,
        }];
        let mut t = task(vec![checked("db", true, 1), app.clone()]);
        pull_all(&mut t);
        step(&mut t, "db", 0);
        assert!(!t.plan(0, 0).contains(&Action::Create("app".into())));
        t.apply(
            Event::HealthChecked {
                container: "db".into(),
                result: check_result(true, 1_000),
            },
            1_000,
        );
        assert!(t.plan(1_000, 0).contains(&Action::Create("app".into())));

        // A dependency without a check can never be healthy.
        let mut t = task(vec![container("db", true), app]);
        pull_all(&mut t);
        step(&mut t, "db", 0);
        assert!(matches!(
            t.dependency_state("app", &t.spec.containers[1].extra.depends_on[0], 0),
            DependencyState::Impossible(r) if r.contains("has no healthCheck")
        ));
    }

    #[test]
    fn the_network_is_planned_and_up_before_any_create_and_released_before_stopped() {
        let mut t = TaskState::new(
            spec(vec![container("a", true)], NetworkMode::Bridge),
            TaskStatus::Running,
            0,
        );
        assert_eq!(t.plan(0, 0), vec![Action::PlanNetwork]);
        t.apply(
            Event::NetworkPlanned {
                network: Some(bridge_network()),
            },
            1,
        );
        assert_eq!(t.network_phase, NetworkPhase::Planned);
        assert_eq!(t.plan(1, 0), vec![Action::SetupNetwork]);
        t.apply(Event::NetworkUp, 2);
        run_to_running(&mut t);
        assert_eq!(t.known, TaskStatus::Running);
        let reports = t.take_reports();
        assert!(reports.iter().any(|r| matches!(r,
            Report::Task { status: TaskStatus::Running, network: Some(n), .. } if n.address == bridge_network().address)));
        t.apply(
            Event::Exited {
                container: "a".into(),
                exit_code: 0,
            },
            10,
        );
        // Every container stopped, but the network is still held: not STOPPED yet.
        assert_eq!(t.known, TaskStatus::Running);
        assert_eq!(t.plan(10, 0), vec![Action::TeardownNetwork]);
        t.apply(Event::NetworkReleased, 11);
        assert_eq!(t.known, TaskStatus::Stopped);
        assert_eq!(t.network_phase, NetworkPhase::Released);
        let reports = t.take_reports();
        assert!(reports.iter().any(|r| matches!(
            r,
            Report::Task {
                status: TaskStatus::Stopped,
                network: Some(_),
                ..
            }
        )));
        assert_eq!(t.plan(11, 0), vec![Action::Cleanup]);
    }

    #[test]
    fn a_network_that_cannot_be_decided_fails_the_task_with_ecs_reason() {
        let mut t = TaskState::new(
            spec(vec![container("a", true)], NetworkMode::Bridge),
            TaskStatus::Running,
            0,
        );
        t.apply(
            Event::NetworkFailed {
                reason: "host port 80/tcp is already in use".into(),
            },
            1,
        );
        assert_eq!(t.known, TaskStatus::Stopped);
        assert_eq!(t.stop_code, Some(StopCode::TaskFailedToStart));
        let reason = t.stopped_reason.clone().unwrap();
        assert!(reason.starts_with(NETWORK_FAILURE_PREFIX), "{reason}");
        assert!(reason.ends_with("80/tcp is already in use"), "{reason}");
        assert_eq!(t.containers[0].reason.as_deref(), Some(reason.as_str()));
        assert_eq!(t.plan(1, 0), vec![Action::Cleanup]);
    }

    #[test]
    fn a_failed_setup_is_taken_down_before_the_task_stops() {
        let mut t = TaskState::new(
            spec(vec![container("a", true)], NetworkMode::Awsvpc),
            TaskStatus::Running,
            0,
        );
        t.apply(
            Event::NetworkPlanned {
                network: Some(bridge_network()),
            },
            1,
        );
        t.apply(
            Event::NetworkFailed {
                reason: "netlink: no such device".into(),
            },
            2,
        );
        assert_eq!(t.known, TaskStatus::Pending);
        assert_eq!(t.plan(2, 0), vec![Action::TeardownNetwork]);
        t.apply(Event::NetworkReleased, 3);
        assert_eq!(t.known, TaskStatus::Stopped);
    }

    #[test]
    fn a_stop_before_the_network_was_decided_needs_no_teardown() {
        let t = TaskState::new(
            spec(vec![container("a", true)], NetworkMode::Bridge),
            TaskStatus::Stopped,
            0,
        );
        assert_eq!(t.known, TaskStatus::Stopped);
        assert_eq!(t.plan(0, 0), vec![Action::Cleanup]);
    }

    fn run_to_running(t: &mut TaskState) {
        for name in t
            .containers
            .iter()
            .map(|c| c.name.clone())
            .collect::<Vec<_>>()
        {
            t.apply(
                Event::ImageResolved {
                    container: name.clone(),
                },
                0,
            );
            t.apply(
                Event::Created {
                    container: name.clone(),
                },
                0,
            );
            t.apply(Event::Started { container: name }, 0);
        }
    }

    #[test]
    fn plans_the_lifecycle_in_order() {
        let mut t = task(vec![container("a", true)]);
        assert_eq!(t.plan(0, 0), vec![Action::ResolveImage("a".into())]);
        t.apply(
            Event::ImageResolved {
                container: "a".into(),
            },
            0,
        );
        assert_eq!(t.plan(0, 0), vec![Action::Create("a".into())]);
        t.apply(
            Event::Created {
                container: "a".into(),
            },
            0,
        );
        assert_eq!(t.plan(0, 0), vec![Action::Start("a".into())]);
        t.apply(
            Event::Started {
                container: "a".into(),
            },
            0,
        );
        assert_eq!(t.known, TaskStatus::Running);
        assert!(t.plan(0, 0).is_empty());
    }

    #[test]
    fn essential_exit_stops_the_task_and_names_the_container() {
        let mut t = task(vec![container("main", true), container("sleeper", false)]);
        run_to_running(&mut t);
        t.apply(
            Event::Exited {
                container: "main".into(),
                exit_code: 3,
            },
            0,
        );
        assert_eq!(t.desired, TaskStatus::Stopped);
        assert_eq!(t.stop_code, Some(StopCode::EssentialContainerExited));
        assert!(t.stopped_reason.as_deref().unwrap().contains("main"));
        assert_eq!(
            t.plan(1000, 0),
            vec![Action::Stop {
                container: "sleeper".into(),
                timeout_secs: 2
            }]
        );
        t.apply(
            Event::StopSignalSent {
                container: "sleeper".into(),
            },
            1000,
        );
        assert!(t.plan(2999, 0).is_empty());
        assert_eq!(t.next_deadline_ms(0), Some(3000));
        assert_eq!(t.plan(3000, 0), vec![Action::Kill("sleeper".into())]);
        t.apply(
            Event::KillSent {
                container: "sleeper".into(),
            },
            0,
        );
        t.apply(
            Event::Exited {
                container: "sleeper".into(),
                exit_code: 137,
            },
            0,
        );
        assert_eq!(t.known, TaskStatus::Stopped);
        assert_eq!(t.plan(4000, 0), vec![Action::Cleanup]);
        t.apply(Event::CleanedUp, 0);
        assert!(t.plan(4000, 0).is_empty());
    }

    #[test]
    fn non_essential_exit_keeps_the_task_running() {
        let mut t = task(vec![container("main", true), container("side", false)]);
        run_to_running(&mut t);
        t.apply(
            Event::Exited {
                container: "side".into(),
                exit_code: 0,
            },
            0,
        );
        assert_eq!(t.desired, TaskStatus::Running);
        assert_eq!(t.known, TaskStatus::Running);
    }

    #[test]
    fn the_first_stop_reason_wins() {
        let mut t = task(vec![container("main", true)]);
        run_to_running(&mut t);
        t.apply(
            Event::StopRequested {
                code: StopCode::UserInitiated,
                reason: "by hand".into(),
            },
            0,
        );
        t.apply(
            Event::Exited {
                container: "main".into(),
                exit_code: 143,
            },
            0,
        );
        assert_eq!(t.stop_code, Some(StopCode::UserInitiated));
        assert_eq!(t.stopped_reason.as_deref(), Some("by hand"));
    }

    #[test]
    fn a_failure_to_start_stops_the_task_and_skips_unstarted_containers() {
        let mut t = task(vec![container("a", true), container("b", true)]);
        t.apply(
            Event::Failed {
                container: "a".into(),
                reason: "CannotPullContainerError: no such image".into(),
            },
            0,
        );
        assert_eq!(t.known, TaskStatus::Stopped);
        assert_eq!(t.stop_code, Some(StopCode::TaskFailedToStart));
        assert_eq!(t.plan(0, 0), vec![Action::Cleanup]);
        let reports = t.take_reports();
        assert_eq!(reports.len(), 3, "{reports:?}");
        assert!(matches!(
            reports.last(),
            Some(Report::Task {
                status: TaskStatus::Stopped,
                stop_code: Some(StopCode::TaskFailedToStart),
                ..
            })
        ));
    }

    #[test]
    fn reports_each_change_once_containers_first() {
        let mut t = task(vec![container("a", true)]);
        assert!(t.take_reports().is_empty());
        run_to_running(&mut t);
        let reports = t.take_reports();
        assert!(matches!(
            reports[0],
            Report::Container {
                status: ContainerStatus::Running,
                ..
            }
        ));
        assert!(matches!(
            reports[1],
            Report::Task {
                status: TaskStatus::Running,
                stop_code: None,
                ..
            }
        ));
        assert!(t.take_reports().is_empty());
    }

    #[test]
    fn late_events_do_not_move_a_container_backwards() {
        let mut t = task(vec![container("a", true)]);
        run_to_running(&mut t);
        t.apply(
            Event::Exited {
                container: "a".into(),
                exit_code: 0,
            },
            0,
        );
        t.apply(
            Event::Started {
                container: "a".into(),
            },
            0,
        );
        t.apply(
            Event::Exited {
                container: "a".into(),
                exit_code: 9,
            },
            0,
        );
        assert_eq!(t.container("a").unwrap().known, ContainerStatus::Stopped);
        assert_eq!(t.container("a").unwrap().exit_code, Some(0));
    }

    #[test]
    fn a_task_received_as_stopped_never_starts() {
        let mut t = task(vec![container("a", true)]);
        t = TaskState::new(t.spec.clone(), TaskStatus::Stopped, 0);
        assert_eq!(t.known, TaskStatus::Stopped);
        assert_eq!(t.plan(0, 0), vec![Action::Cleanup]);
    }

    #[test]
    fn runtime_ids_fit_containerd() {
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(runtime_id(id, 0, "web"), format!("{id}-web"));
        let long = runtime_id(id, 7, &"x".repeat(200));
        assert!(long.len() <= 76, "{}", long.len());
        assert!(long.starts_with(&format!("{id}-007")));
    }

    fn depends(mut c: ContainerSpec, on: &str, condition: Cond) -> ContainerSpec {
        c.extra.depends_on.push(Dependency {
            container_name: on.into(),
            condition,
        });
        c
    }

    fn step(t: &mut TaskState, name: &str, now: u64) {
        let name = name.to_string();
        for e in [
            Event::ImageResolved {
                container: name.clone(),
            },
            Event::Created {
                container: name.clone(),
            },
            Event::Started { container: name },
        ] {
            t.apply(e, now);
        }
    }

    fn pull_all(t: &mut TaskState) {
        for name in t
            .spec
            .containers
            .iter()
            .map(|c| c.name.clone())
            .collect::<Vec<_>>()
        {
            t.apply(Event::ImageResolved { container: name }, 0);
        }
    }

    #[test]
    fn start_dependency_is_created_only_after_its_dependency_started() {
        let mut t = task(vec![
            depends(container("app", true), "db", Cond::Start),
            container("db", true),
        ]);
        pull_all(&mut t);
        assert_eq!(t.plan(0, 0), vec![Action::Create("db".into())]);
        t.apply(
            Event::Created {
                container: "db".into(),
            },
            0,
        );
        assert_eq!(t.plan(0, 0), vec![Action::Start("db".into())]);
        t.apply(
            Event::Started {
                container: "db".into(),
            },
            5,
        );
        assert_eq!(t.plan(5, 0), vec![Action::Create("app".into())]);
    }

    #[test]
    fn complete_and_success_wait_for_the_exit() {
        let mut t = task(vec![
            container("init", false),
            depends(container("any", false), "init", Cond::Complete),
            depends(container("app", true), "init", Cond::Success),
        ]);
        step(&mut t, "init", 0);
        pull_all(&mut t);
        assert!(t.plan(1, 0).is_empty(), "{:?}", t.plan(1, 0));
        assert_eq!(
            t.next_deadline_ms(0),
            None,
            "no startTimeout: wait as long as it runs"
        );
        t.apply(
            Event::Exited {
                container: "init".into(),
                exit_code: 0,
            },
            2,
        );
        assert_eq!(
            t.plan(2, 0),
            vec![Action::Create("any".into()), Action::Create("app".into())]
        );
        assert_eq!(t.desired, TaskStatus::Running);
    }

    #[test]
    fn a_failed_success_dependency_stops_the_task_and_names_both() {
        let mut t = task(vec![
            container("init", false),
            depends(container("app", true), "init", Cond::Success),
        ]);
        step(&mut t, "init", 0);
        pull_all(&mut t);
        t.apply(
            Event::Exited {
                container: "init".into(),
                exit_code: 3,
            },
            1,
        );
        let [Action::Fail { container, reason }] = &t.plan(1, 0)[..] else {
            panic!("{:?}", t.plan(1, 0));
        };
        assert_eq!(container, "app");
        for needle in ["app", "init", "SUCCESS", "code 3"] {
            assert!(reason.contains(needle), "{needle} not in {reason}");
        }
        t.apply(
            Event::Failed {
                container: container.clone(),
                reason: reason.clone(),
            },
            1,
        );
        assert_eq!(t.stop_code, Some(StopCode::TaskFailedToStart));
        assert_eq!(t.known, TaskStatus::Stopped);
        assert_eq!(t.container("app").unwrap().started_at_ms, None);
    }

    #[test]
    fn the_dependencys_start_timeout_bounds_the_wait() {
        let mut init = container("init", false);
        init.extra.start_timeout_secs = Some(5);
        let mut t = task(vec![
            init,
            depends(container("app", true), "init", Cond::Complete),
        ]);
        step(&mut t, "init", 1000);
        pull_all(&mut t);
        assert!(t.plan(5999, 0).is_empty());
        assert_eq!(t.next_deadline_ms(0), Some(6000));
        let plan = t.plan(6000, 0);
        assert!(
            matches!(&plan[..], [Action::Fail { reason, .. }] if reason.contains("startTimeout of 5s")),
            "{plan:?}"
        );
    }

    #[test]
    fn a_dependency_that_never_ran_cannot_be_met() {
        let t = {
            let mut t = task(vec![
                container("db", false),
                depends(container("app", true), "db", Cond::Start),
            ]);
            t.containers[0].known = ContainerStatus::Stopped;
            t
        };
        let dep = &t.spec.containers[1].extra.depends_on[0];
        assert!(matches!(
            t.dependency_state("app", dep, 0),
            DependencyState::Impossible(r) if r.contains("without running")
        ));
    }

    #[test]
    fn shutdown_follows_reverse_dependency_order() {
        let mut t = task(vec![
            container("db", true),
            depends(container("app", true), "db", Cond::Start),
        ]);
        step(&mut t, "db", 0);
        step(&mut t, "app", 0);
        t.apply(
            Event::StopRequested {
                code: StopCode::UserInitiated,
                reason: "bye".into(),
            },
            10,
        );
        assert_eq!(
            t.plan(10, 0),
            vec![Action::Stop {
                container: "app".into(),
                timeout_secs: 2
            }]
        );
        t.apply(
            Event::StopSignalSent {
                container: "app".into(),
            },
            10,
        );
        // db waits even past app's stop timeout, until app is really gone.
        assert_eq!(t.plan(2010, 0), vec![Action::Kill("app".into())]);
        t.apply(
            Event::Exited {
                container: "app".into(),
                exit_code: 143,
            },
            20,
        );
        assert_eq!(
            t.plan(20, 0),
            vec![Action::Stop {
                container: "db".into(),
                timeout_secs: 2
            }]
        );
    }

    #[test]
    fn restart_decisions_follow_the_attempt_period() {
        let p = RestartPolicy {
            enabled: true,
            ignored_exit_codes: vec![0],
            restart_attempt_period_secs: 60,
        };
        assert!(!should_restart(None, 1, Some(0), None, 999_999));
        assert!(!should_restart(
            Some(&RestartPolicy {
                enabled: false,
                ..p.clone()
            }),
            1,
            Some(0),
            None,
            999_999
        ));
        assert!(
            !should_restart(Some(&p), 0, Some(0), None, 999_999),
            "ignored code"
        );
        assert!(
            !should_restart(Some(&p), 1, Some(0), None, 59_999),
            "ran too briefly"
        );
        assert!(should_restart(Some(&p), 1, Some(0), None, 60_000));
        assert!(
            !should_restart(Some(&p), 1, Some(0), Some(100_000), 159_999),
            "since the last restart"
        );
        assert!(should_restart(Some(&p), 1, Some(0), Some(100_000), 160_000));
        assert!(
            !should_restart(Some(&p), 1, None, None, 160_000),
            "never started"
        );
    }

    #[test]
    fn an_essential_container_is_restarted_in_place_and_counted() {
        let mut app = container("app", true);
        app.extra.restart_policy = Some(RestartPolicy {
            enabled: true,
            ignored_exit_codes: vec![],
            restart_attempt_period_secs: 60,
        });
        let mut t = task(vec![app]);
        step(&mut t, "app", 0);
        t.take_reports();
        t.apply(
            Event::Exited {
                container: "app".into(),
                exit_code: 1,
            },
            60_000,
        );
        assert_eq!(
            t.desired,
            TaskStatus::Running,
            "a pending restart keeps the task"
        );
        assert_eq!(t.known, TaskStatus::Running);
        assert_eq!(t.plan(60_000, 0), vec![Action::Restart("app".into())]);
        // A recheck reporting the same exit again changes nothing.
        t.apply(
            Event::Exited {
                container: "app".into(),
                exit_code: 1,
            },
            60_001,
        );
        t.apply(
            Event::Restarted {
                container: "app".into(),
            },
            60_002,
        );
        assert!(t.plan(60_002, 0).is_empty());
        let reports = t.take_reports();
        assert!(
            matches!(
                &reports[..],
                [Report::Container {
                    restart_count: 1,
                    status: ContainerStatus::Running,
                    ..
                }]
            ),
            "{reports:?}"
        );
        // Too soon after the last restart: the exit is final and stops the task.
        t.apply(
            Event::Exited {
                container: "app".into(),
                exit_code: 1,
            },
            100_000,
        );
        assert_eq!(t.stop_code, Some(StopCode::EssentialContainerExited));
        assert_eq!(t.known, TaskStatus::Stopped);
        assert_eq!(t.container("app").unwrap().restart_count, 1);
    }

    #[test]
    fn a_stop_request_makes_a_pending_restart_final() {
        let mut app = container("app", true);
        app.extra.restart_policy = Some(RestartPolicy {
            enabled: true,
            ignored_exit_codes: vec![],
            restart_attempt_period_secs: 60,
        });
        let mut t = task(vec![app]);
        step(&mut t, "app", 0);
        t.apply(
            Event::Exited {
                container: "app".into(),
                exit_code: 7,
            },
            70_000,
        );
        t.apply(
            Event::StopRequested {
                code: StopCode::UserInitiated,
                reason: "bye".into(),
            },
            70_001,
        );
        assert_eq!(t.known, TaskStatus::Stopped);
        assert_eq!(t.container("app").unwrap().exit_code, Some(7));
        assert!(!t.plan(70_001, 0).contains(&Action::Restart("app".into())));
    }

    #[test]
    fn cleanup_waits_from_the_stop_time() {
        let mut t = task(vec![container("a", true)]);
        step(&mut t, "a", 0);
        t.apply(
            Event::Exited {
                container: "a".into(),
                exit_code: 0,
            },
            5_000,
        );
        assert_eq!(t.stopped_at_ms, Some(5_000));
        assert!(t.plan(7_999, 3_000).is_empty());
        assert_eq!(t.next_deadline_ms(3_000), Some(8_000));
        assert_eq!(t.plan(8_000, 3_000), vec![Action::Cleanup]);
        // The stop time survives a round trip through the store's JSON.
        let back: TaskState = serde_json::from_str(&serde_json::to_string(&t).unwrap()).unwrap();
        assert_eq!(back.plan(7_999, 3_000), vec![]);
        t.apply(Event::CleanedUp, 8_000);
        assert_eq!(t.next_deadline_ms(3_000), None);
    }

    #[test]
    fn states_written_by_older_agents_still_load() {
        let t = task(vec![container("a", true)]);
        let mut v = serde_json::to_value(&t).unwrap();
        v.as_object_mut().unwrap().remove("stopped_at_ms");
        for c in v["containers"].as_array_mut().unwrap() {
            let c = c.as_object_mut().unwrap();
            for k in [
                "started_at_ms",
                "restart_count",
                "reported_restart_count",
                "last_restart_at_ms",
                "restart_pending",
            ] {
                c.remove(k);
            }
        }
        let back: TaskState = serde_json::from_value(v).unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn an_oom_kill_gives_the_container_ecs_reason() {
        let mut t = task(vec![container("a", true)]);
        run_to_running(&mut t);
        t.apply(
            Event::OutOfMemory {
                container: "a".into(),
            },
            1,
        );
        t.apply(
            Event::Exited {
                container: "a".into(),
                exit_code: 137,
            },
            1,
        );
        let a = t.container("a").unwrap();
        assert_eq!(a.exit_code, Some(137));
        assert_eq!(
            a.reason.as_deref(),
            Some("OutOfMemoryError: Container killed due to memory usage")
        );
        assert_eq!(t.stop_code, Some(StopCode::EssentialContainerExited));
        // Too late for a stopped container.
        t.apply(
            Event::OutOfMemory {
                container: "a".into(),
            },
            2,
        );
        assert_eq!(t.container("a").unwrap().exit_code, Some(137));
    }
}
