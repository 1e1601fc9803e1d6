//! The task state machine: pure, no I/O.
//!
//! `TaskState::apply` folds an event into the state; `TaskState::plan` says what the worker must
//! do next; `TaskState::take_reports` yields the status changes not yet reported. The worker
//! (`crate::engine`) carries out one action at a time, feeds the outcome back as an event, and
//! persists the state together with its reports before anything is sent.

use serde::{Deserialize, Serialize};

use crate::model::{ContainerStatus, StopCode, TaskSpec, TaskStatus};

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
    /// The container could not be prepared, created or started; `reason` is ECS-style
    /// (`CannotStartContainerError: ...`).
    Failed {
        container: String,
        reason: String,
    },
    StopRequested {
        code: StopCode,
        reason: String,
    },
    StopSignalSent {
        container: String,
        at_ms: u64,
    },
    /// Recovery found no process where the state expected one (the agent was down).
    Vanished {
        container: String,
    },
    KillSent {
        container: String,
    },
    CleanedUp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    ResolveImage(String),
    Create(String),
    Start(String),
    /// SIGTERM now, SIGKILL after `timeout_secs`.
    Stop {
        container: String,
        timeout_secs: u32,
    },
    Kill(String),
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
    },
    Task {
        status: TaskStatus,
        stop_code: Option<StopCode>,
        stopped_reason: Option<String>,
    },
}

impl TaskState {
    /// A task as received from the control plane. `runtime_id` names each container in
    /// containerd; see [`runtime_id`].
    pub fn new(spec: TaskSpec, desired: TaskStatus) -> Self {
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
        };
        if desired == TaskStatus::Stopped {
            state.apply(Event::StopRequested {
                code: StopCode::UserInitiated,
                reason: "Task stopped before it started".into(),
            });
        }
        state
    }

    pub fn is_finished(&self) -> bool {
        self.known == TaskStatus::Stopped && self.cleaned_up && self.reported == TaskStatus::Stopped
    }

    pub fn container(&self, name: &str) -> Option<&ContainerState> {
        self.containers.iter().find(|c| c.name == name)
    }

    fn container_mut(&mut self, name: &str) -> Option<&mut ContainerState> {
        self.containers.iter_mut().find(|c| c.name == name)
    }

    fn is_essential(&self, name: &str) -> bool {
        self.spec
            .containers
            .iter()
            .any(|c| c.name == name && c.essential)
    }

    fn stop_timeout_secs(&self, name: &str) -> u32 {
        self.spec
            .containers
            .iter()
            .find(|c| c.name == name)
            .map_or(crate::model::DEFAULT_STOP_TIMEOUT_SECS, |c| {
                c.stop_timeout_secs
            })
    }

    /// Folds one event into the state. Events about unknown containers are ignored: they can
    /// only come from a stale runtime event, and must not disturb a task.
    pub fn apply(&mut self, event: Event) {
        match event {
            Event::ImageResolved { container } => self.advance(&container, ContainerStatus::Pulled),
            Event::Created { container } => self.advance(&container, ContainerStatus::Created),
            Event::Started { container } => self.advance(&container, ContainerStatus::Running),
            Event::Exited {
                container,
                exit_code,
            } => {
                let Some(c) = self.container_mut(&container) else {
                    return;
                };
                if c.known == ContainerStatus::Stopped {
                    return;
                }
                c.known = ContainerStatus::Stopped;
                c.exit_code = Some(exit_code);
                if self.desired == TaskStatus::Running && self.is_essential(&container) {
                    self.request_stop(
                        StopCode::EssentialContainerExited,
                        format!(
                            "Essential container in task exited: {container} exited with code {exit_code}"
                        ),
                    );
                }
            }
            Event::Failed { container, reason } => {
                if let Some(c) = self.container_mut(&container) {
                    c.known = ContainerStatus::Stopped;
                    c.reason = Some(reason.clone());
                }
                self.request_stop(StopCode::TaskFailedToStart, reason);
            }
            Event::StopRequested { code, reason } => self.request_stop(code, reason),
            Event::StopSignalSent { container, at_ms } => {
                if let Some(c) = self.container_mut(&container) {
                    c.stop_sent_at_ms = Some(at_ms);
                }
            }
            Event::KillSent { container } => {
                if let Some(c) = self.container_mut(&container) {
                    c.kill_sent = true;
                }
            }
            Event::Vanished { container } => {
                let Some(c) = self.container_mut(&container) else {
                    return;
                };
                match c.known {
                    // Created but never started: create it again.
                    ContainerStatus::Created => c.known = ContainerStatus::Pulled,
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
            Event::CleanedUp => self.cleaned_up = true,
        }
        self.refresh_task_status();
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
        // Containers that never started have nothing to stop.
        for c in &mut self.containers {
            if c.known < ContainerStatus::Running {
                c.known = ContainerStatus::Stopped;
            }
        }
    }

    fn refresh_task_status(&mut self) {
        if self
            .containers
            .iter()
            .all(|c| c.known == ContainerStatus::Stopped)
        {
            self.known = TaskStatus::Stopped;
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

    /// What to do next, in order. The worker runs the first action, applies its outcome and
    /// plans again, so a plan never needs to remember what is in flight.
    pub fn plan(&self, now_ms: u64) -> Vec<Action> {
        if self.known == TaskStatus::Stopped {
            return if self.cleaned_up {
                vec![]
            } else {
                vec![Action::Cleanup]
            };
        }
        let mut actions = Vec::new();
        for c in &self.containers {
            match (self.desired, c.known) {
                (TaskStatus::Running, ContainerStatus::None) => {
                    actions.push(Action::ResolveImage(c.name.clone()))
                }
                (TaskStatus::Running, ContainerStatus::Pulled) => {
                    actions.push(Action::Create(c.name.clone()))
                }
                (TaskStatus::Running, ContainerStatus::Created) => {
                    actions.push(Action::Start(c.name.clone()))
                }
                (TaskStatus::Stopped, ContainerStatus::Running) => match c.stop_sent_at_ms {
                    None => actions.push(Action::Stop {
                        container: c.name.clone(),
                        timeout_secs: self.stop_timeout_secs(&c.name),
                    }),
                    Some(sent) if !c.kill_sent && now_ms >= self.kill_at(c, sent) => {
                        actions.push(Action::Kill(c.name.clone()))
                    }
                    Some(_) => {}
                },
                _ => {}
            }
        }
        actions
    }

    fn kill_at(&self, c: &ContainerState, stop_sent_at_ms: u64) -> u64 {
        stop_sent_at_ms + u64::from(self.stop_timeout_secs(&c.name)) * 1000
    }

    /// When the worker must wake up to SIGKILL a container that ignored SIGTERM.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.containers
            .iter()
            .filter(|c| c.known == ContainerStatus::Running && !c.kill_sent)
            .filter_map(|c| c.stop_sent_at_ms.map(|sent| self.kill_at(c, sent)))
            .min()
    }

    /// The changes not yet reported, containers before the task so that a STOPPED task never
    /// arrives before the exit codes of its containers.
    pub fn take_reports(&mut self) -> Vec<Report> {
        let mut reports = Vec::new();
        for c in &mut self.containers {
            if c.known != c.reported {
                c.reported = c.known;
                reports.push(Report::Container {
                    name: c.name.clone(),
                    runtime_id: c.runtime_id.clone(),
                    status: c.known,
                    exit_code: c.exit_code,
                    reason: c.reason.clone(),
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

    fn task(containers: Vec<ContainerSpec>) -> TaskState {
        TaskState::new(
            TaskSpec {
                arn: "arn:aws:ecs:us-east-1:0:task/default/abc".into(),
                family: "f".into(),
                revision: 1,
                network_mode: NetworkMode::None,
                cpu: 0,
                memory_mib: 0,
                containers,
                volumes: vec![],
            },
            TaskStatus::Running,
        )
    }

    fn run_to_running(t: &mut TaskState) {
        for name in t
            .containers
            .iter()
            .map(|c| c.name.clone())
            .collect::<Vec<_>>()
        {
            t.apply(Event::ImageResolved {
                container: name.clone(),
            });
            t.apply(Event::Created {
                container: name.clone(),
            });
            t.apply(Event::Started { container: name });
        }
    }

    #[test]
    fn plans_the_lifecycle_in_order() {
        let mut t = task(vec![container("a", true)]);
        assert_eq!(t.plan(0), vec![Action::ResolveImage("a".into())]);
        t.apply(Event::ImageResolved {
            container: "a".into(),
        });
        assert_eq!(t.plan(0), vec![Action::Create("a".into())]);
        t.apply(Event::Created {
            container: "a".into(),
        });
        assert_eq!(t.plan(0), vec![Action::Start("a".into())]);
        t.apply(Event::Started {
            container: "a".into(),
        });
        assert_eq!(t.known, TaskStatus::Running);
        assert!(t.plan(0).is_empty());
    }

    #[test]
    fn essential_exit_stops_the_task_and_names_the_container() {
        let mut t = task(vec![container("main", true), container("sleeper", false)]);
        run_to_running(&mut t);
        t.apply(Event::Exited {
            container: "main".into(),
            exit_code: 3,
        });
        assert_eq!(t.desired, TaskStatus::Stopped);
        assert_eq!(t.stop_code, Some(StopCode::EssentialContainerExited));
        assert!(t.stopped_reason.as_deref().unwrap().contains("main"));
        assert_eq!(
            t.plan(1000),
            vec![Action::Stop {
                container: "sleeper".into(),
                timeout_secs: 2
            }]
        );
        t.apply(Event::StopSignalSent {
            container: "sleeper".into(),
            at_ms: 1000,
        });
        assert!(t.plan(2999).is_empty());
        assert_eq!(t.next_deadline_ms(), Some(3000));
        assert_eq!(t.plan(3000), vec![Action::Kill("sleeper".into())]);
        t.apply(Event::KillSent {
            container: "sleeper".into(),
        });
        t.apply(Event::Exited {
            container: "sleeper".into(),
            exit_code: 137,
        });
        assert_eq!(t.known, TaskStatus::Stopped);
        assert_eq!(t.plan(4000), vec![Action::Cleanup]);
        t.apply(Event::CleanedUp);
        assert!(t.plan(4000).is_empty());
    }

    #[test]
    fn non_essential_exit_keeps_the_task_running() {
        let mut t = task(vec![container("main", true), container("side", false)]);
        run_to_running(&mut t);
        t.apply(Event::Exited {
            container: "side".into(),
            exit_code: 0,
        });
        assert_eq!(t.desired, TaskStatus::Running);
        assert_eq!(t.known, TaskStatus::Running);
    }

    #[test]
    fn the_first_stop_reason_wins() {
        let mut t = task(vec![container("main", true)]);
        run_to_running(&mut t);
        t.apply(Event::StopRequested {
            code: StopCode::UserInitiated,
            reason: "by hand".into(),
        });
        t.apply(Event::Exited {
            container: "main".into(),
            exit_code: 143,
        });
        assert_eq!(t.stop_code, Some(StopCode::UserInitiated));
        assert_eq!(t.stopped_reason.as_deref(), Some("by hand"));
    }

    #[test]
    fn a_failure_to_start_stops_the_task_and_skips_unstarted_containers() {
        let mut t = task(vec![container("a", true), container("b", true)]);
        t.apply(Event::Failed {
            container: "a".into(),
            reason: "CannotPullContainerError: no such image".into(),
        });
        assert_eq!(t.known, TaskStatus::Stopped);
        assert_eq!(t.stop_code, Some(StopCode::TaskFailedToStart));
        assert_eq!(t.plan(0), vec![Action::Cleanup]);
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
        t.apply(Event::Exited {
            container: "a".into(),
            exit_code: 0,
        });
        t.apply(Event::Started {
            container: "a".into(),
        });
        t.apply(Event::Exited {
            container: "a".into(),
            exit_code: 9,
        });
        assert_eq!(t.container("a").unwrap().known, ContainerStatus::Stopped);
        assert_eq!(t.container("a").unwrap().exit_code, Some(0));
    }

    #[test]
    fn a_task_received_as_stopped_never_starts() {
        let mut t = task(vec![container("a", true)]);
        t = TaskState::new(t.spec.clone(), TaskStatus::Stopped);
        assert_eq!(t.known, TaskStatus::Stopped);
        assert_eq!(t.plan(0), vec![Action::Cleanup]);
    }

    #[test]
    fn runtime_ids_fit_containerd() {
        let id = "0123456789abcdef0123456789abcdef";
        assert_eq!(runtime_id(id, 0, "web"), format!("{id}-web"));
        let long = runtime_id(id, 7, &"x".repeat(200));
        assert!(long.len() <= 76, "{}", long.len());
        assert!(long.starts_with(&format!("{id}-007")));
    }
}
