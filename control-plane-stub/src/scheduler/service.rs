//! The service scheduler's decisions (issue #17, first part): a pure function from a snapshot of
//! one service — its desired count, its deployments (newest first) and their tasks — to the
//! actions that bring it to its desired count within its deployment configuration's window.
//! The caller (the service controller, with the store) carries the actions out and records
//! each as a service event; it calls [`plan`] again on every change of the service's tasks and
//! on a timer, so a plan only says what can be done now.
//!
//! The rules are ECS's rolling update: at most `maximumPercent` of the desired count (rounded
//! down) are RUNNING or PENDING, at least `minimumHealthyPercent` (rounded up) stay healthy
//! while old tasks are stopped; unhealthy tasks are replaced; a deployment whose failed tasks
//! reach the circuit breaker's threshold fails (and rolls back when asked); a deployment is
//! complete once all its desired tasks are healthy and nothing of an older one is left.

use std::collections::HashMap;

/// A service's deploymentConfiguration, as far as the scheduler acts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeploymentConfiguration {
    pub minimum_healthy_percent: u32,
    pub maximum_percent: u32,
    /// `deploymentCircuitBreaker.enable`; `Some(rollback)` when enabled.
    pub circuit_breaker: Option<CircuitBreaker>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitBreaker {
    pub rollback: bool,
}

impl Default for DeploymentConfiguration {
    /// ECS's defaults for a REPLICA service: 100 % healthy, 200 % at most, no circuit breaker.
    fn default() -> Self {
        Self {
            minimum_healthy_percent: 100,
            maximum_percent: 200,
            circuit_breaker: None,
        }
    }
}

/// How many tasks must stay healthy during a deployment: rounded up, as ECS does.
pub fn minimum_healthy(desired: u32, percent: u32) -> u32 {
    (u64::from(desired) * u64::from(percent)).div_ceil(100) as u32
}

/// How many tasks may be RUNNING or PENDING during a deployment: rounded down, as ECS does.
pub fn maximum_tasks(desired: u32, percent: u32) -> u32 {
    (u64::from(desired) * u64::from(percent) / 100) as u32
}

/// The circuit breaker's failed-task threshold: half the desired count (rounded up), at least 3
/// and at most 200.
pub fn failure_threshold(desired: u32) -> u32 {
    desired.div_ceil(2).clamp(3, 200)
}

/// Whether a configuration lets a deployment of `desired` tasks make progress; the message
/// names the fields (InvalidParameterException in the API).
pub fn validate(config: &DeploymentConfiguration, desired: u32) -> Result<(), String> {
    let (min, max) = (config.minimum_healthy_percent, config.maximum_percent);
    if min > 100 {
        return Err(format!(
            "deploymentConfiguration.minimumHealthyPercent: {min} must be between 0 and 100"
        ));
    }
    if max < 100 {
        return Err(format!(
            "deploymentConfiguration.maximumPercent: {max} must be at least 100, or the service \
             could never run its desiredCount"
        ));
    }
    let (healthy, most) = (minimum_healthy(desired, min), maximum_tasks(desired, max));
    if desired > 0 && most <= healthy {
        return Err(format!(
            "deploymentConfiguration: with desiredCount {desired}, maximumPercent {max} allows at \
             most {most} tasks and minimumHealthyPercent {min} keeps {healthy} healthy, so a \
             deployment could neither start a new task nor stop an old one; raise maximumPercent \
             or lower minimumHealthyPercent"
        ));
    }
    Ok(())
}

/// Where a deployment's rollout stands (ECS's rolloutState).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rollout {
    InProgress,
    Completed,
    Failed,
}

/// One deployment of the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentView {
    pub id: String,
    pub rollout: Rollout,
    /// Tasks of this deployment that stopped before they became healthy.
    pub failed_tasks: u32,
}

/// What the scheduler needs to know of one of the service's tasks that has not stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskHealth {
    /// PENDING, or RUNNING but not yet healthy (health checks pending, settle period).
    Starting,
    Healthy,
    /// Failed its health checks after the grace period.
    Unhealthy,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskView {
    pub id: String,
    pub deployment_id: String,
    pub health: TaskHealth,
    /// Asked to stop already (desiredStatus STOPPED): it still holds its place under the
    /// maximum until it has stopped, but counts for nothing else.
    pub stopping: bool,
    /// Task scale-in protection: never stopped by the scheduler.
    pub protected: bool,
    /// On a DRAINING container instance: replaced elsewhere like an older deployment's task,
    /// within the same minimum and maximum (not yet healthy: stopped at once).
    pub draining: bool,
    /// Where it runs, for each of the service's spread strategies in order (the value of the
    /// attribute, or the instance id): a scale-in keeps the service balanced over them.
    pub spread: Vec<String>,
}

/// A snapshot of one service.
#[derive(Debug, Clone)]
pub struct ServiceView<'a> {
    pub desired_count: u32,
    pub config: DeploymentConfiguration,
    /// Newest first: the first is the PRIMARY deployment.
    pub deployments: &'a [DeploymentView],
    pub tasks: &'a [TaskView],
}

/// Why the scheduler stops a task; the controller words the event and the task's
/// stoppedReason from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// It failed its health checks.
    Unhealthy,
    /// An older deployment's task, replaced by the primary's.
    Replaced,
    /// More tasks than the desired count.
    ScaleIn,
    /// Its container instance is DRAINING; a replacement runs elsewhere.
    Draining,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Start `count` tasks of the deployment.
    Start {
        deployment: String,
        count: u32,
    },
    /// Start one task of the deployment on this instance (DAEMON services).
    StartOn {
        deployment: String,
        instance: String,
    },
    Stop {
        task: String,
        reason: StopReason,
    },
    /// The deployment's failed tasks reached the threshold: it is FAILED, and with `rollback` a
    /// new deployment goes back to the last completed one.
    Fail {
        deployment: String,
        rollback: bool,
    },
    /// All the deployment's desired tasks are healthy and nothing older is left.
    Complete {
        deployment: String,
    },
    /// An older deployment with no task left: it leaves the service's list.
    Retire {
        deployment: String,
    },
}

/// How many tasks share each value of each spread key: what a scale-in evens out. Each task's
/// values are numbered once, so that comparing two tasks reads counts by index.
struct Crowd {
    /// Per task (in the order given), the slot of its value for each key.
    slots: Vec<Vec<usize>>,
    /// Per slot, how many tasks hold it.
    counts: Vec<usize>,
}

impl Crowd {
    fn of(tasks: &[&TaskView]) -> Self {
        let mut numbered: HashMap<(usize, &str), usize> = HashMap::new();
        let mut counts = Vec::new();
        let slots = tasks
            .iter()
            .map(|t| {
                t.spread
                    .iter()
                    .enumerate()
                    .map(|(k, v)| {
                        let slot = *numbered.entry((k, v.as_str())).or_insert_with(|| {
                            counts.push(0);
                            counts.len() - 1
                        });
                        counts[slot] += 1;
                        slot
                    })
                    .collect()
            })
            .collect();
        Crowd { slots, counts }
    }

    /// Which of tasks `a` and `b` is in the more crowded place, key by key in order.
    fn compare(&self, a: usize, b: usize) -> std::cmp::Ordering {
        let (a, b) = (&self.slots[a], &self.slots[b]);
        for (sa, sb) in a.iter().zip(b) {
            match self.counts[*sa].cmp(&self.counts[*sb]) {
                std::cmp::Ordering::Equal => continue,
                other => return other,
            }
        }
        std::cmp::Ordering::Equal
    }

    fn remove(&mut self, task: usize) {
        for slot in &self.slots[task] {
            self.counts[*slot] -= 1;
        }
    }
}

/// The actions that can be taken now (see the module doc).
pub fn plan(service: &ServiceView<'_>) -> Vec<Action> {
    let mut actions = Vec::new();
    let Some(primary) = service.deployments.first() else {
        return actions;
    };
    let desired = service.desired_count;
    let config = service.config;
    if let Some(breaker) = config.circuit_breaker {
        if primary.rollout == Rollout::InProgress
            && primary.failed_tasks >= failure_threshold(desired)
        {
            actions.push(Action::Fail {
                deployment: primary.id.clone(),
                rollback: breaker.rollback,
            });
            return actions;
        }
    }

    // Every task not yet stopped holds a place under the maximum, a stopping one too.
    let occupied = service.tasks.len() as u32;
    let mut live: Vec<&TaskView> = service.tasks.iter().filter(|t| !t.stopping).collect();

    // Unhealthy tasks are replaced: stopped now (they count as nothing healthy), their
    // replacements started below as the maximum allows.
    for t in live
        .iter()
        .filter(|t| t.health == TaskHealth::Unhealthy && !t.protected)
    {
        stop(&mut actions, t, StopReason::Unhealthy);
    }
    live.retain(|t| t.health != TaskHealth::Unhealthy || t.protected);

    // A primary task on a draining instance is on its way out: it counts as an older one.
    let is_primary = |t: &TaskView| t.deployment_id == primary.id && !t.draining;
    let old_reason = |t: &TaskView| {
        if t.draining {
            StopReason::Draining
        } else {
            StopReason::Replaced
        }
    };
    let primary_live = live.iter().filter(|t| is_primary(t)).count() as u32;
    let mut healthy = live
        .iter()
        .filter(|t| t.health == TaskHealth::Healthy)
        .count() as u32;

    // New tasks of the primary, within the desired count and the maximum. A failed deployment
    // starts nothing more.
    if primary.rollout != Rollout::Failed {
        let room = maximum_tasks(desired, config.maximum_percent).saturating_sub(occupied);
        let wanted = desired.saturating_sub(primary_live);
        let count = wanted.min(room);
        if count > 0 {
            actions.push(Action::Start {
                deployment: primary.id.clone(),
                count,
            });
        }
    }

    // Older deployments' tasks: those not healthy go at once (they hold nothing up); healthy
    // ones while the healthy count stays at the minimum.
    let floor = minimum_healthy(desired, config.minimum_healthy_percent);
    let old: Vec<&TaskView> = live.iter().copied().filter(|t| !is_primary(t)).collect();
    for t in old
        .iter()
        .filter(|t| t.health != TaskHealth::Healthy && !t.protected)
    {
        stop(&mut actions, t, old_reason(t));
    }
    for t in old
        .iter()
        .filter(|t| t.health == TaskHealth::Healthy && !t.protected)
    {
        if healthy <= floor {
            break;
        }
        stop(&mut actions, t, old_reason(t));
        healthy -= 1;
    }

    // More primary tasks than desired (a scale-in): those not yet healthy before healthy ones,
    // each time from where the service is most crowded by its spread strategies in order (as
    // ECS keeps a service balanced over its zones, then its instances), the newest on a tie;
    // protected tasks stay.
    let mut extra = primary_live.saturating_sub(desired);
    let primary_tasks: Vec<&TaskView> = live.iter().copied().filter(|t| is_primary(t)).collect();
    // Counted only for a scale-in: a steady pass does not pay for it.
    let scaling_in: &[&TaskView] = if extra > 0 { &primary_tasks } else { &[] };
    let mut crowd = Crowd::of(scaling_in);
    let mut stopped = vec![false; scaling_in.len()];
    for wanted in [TaskHealth::Starting, TaskHealth::Healthy] {
        while extra > 0 {
            let mut next: Option<usize> = None;
            for (i, t) in scaling_in.iter().enumerate() {
                if stopped[i] || t.health != wanted || t.protected {
                    continue;
                }
                // At least as crowded: the later (newer) one wins a tie.
                if next.is_none_or(|n| crowd.compare(i, n).is_ge()) {
                    next = Some(i);
                }
            }
            let Some(i) = next else { break };
            stopped[i] = true;
            crowd.remove(i);
            stop(&mut actions, scaling_in[i], StopReason::ScaleIn);
            extra -= 1;
        }
    }

    // Complete once every desired task of the primary is healthy and nothing older is left.
    let primary_healthy = primary_tasks
        .iter()
        .filter(|t| t.health == TaskHealth::Healthy)
        .count() as u32;
    let older_left = service
        .tasks
        .iter()
        .any(|t| t.deployment_id != primary.id || t.draining);
    if primary.rollout == Rollout::InProgress
        && !older_left
        && primary_healthy == desired
        && primary_live == desired
    {
        actions.push(Action::Complete {
            deployment: primary.id.clone(),
        });
    }
    // A failed deployment stays listed (FAILED, as ECS shows it) until the one that replaced it
    // has completed, so that its failure can be seen while the rollback runs.
    let primary_done = primary.rollout == Rollout::Completed;
    for d in &service.deployments[1..] {
        if (d.rollout != Rollout::Failed || primary_done)
            && !service.tasks.iter().any(|t| t.deployment_id == d.id)
        {
            actions.push(Action::Retire {
                deployment: d.id.clone(),
            });
        }
    }
    actions
}

/// ECS's service throttle: once tasks of the primary deployment fail to start
/// [`ThrottleSettings::after_failures`] times in a row, the scheduler waits before it starts
/// more, twice as long after each further failure, at most [`ThrottleSettings::max_ms`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleSettings {
    pub after_failures: u32,
    pub base_ms: i64,
    pub max_ms: i64,
}

impl Default for ThrottleSettings {
    /// From the third failure in a row: 10 s, doubling, up to ECS's cap of about 27 minutes.
    fn default() -> Self {
        Self {
            after_failures: 3,
            base_ms: 10_000,
            max_ms: 27 * 60 * 1000,
        }
    }
}

/// Where a service's back-off stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backoff {
    pub consecutive_failures: u32,
    /// No task is started before this time (ms).
    pub until_ms: i64,
}

impl Backoff {
    pub fn holds_starts(&self, now_ms: i64) -> bool {
        now_ms < self.until_ms
    }
}

/// The back-off after a pass that saw `new_failures` more tasks of the primary fail to start
/// and, with `became_healthy`, one of its tasks healthy (a success ends a run of failures).
/// The flag says whether this pass began or lengthened a wait (the controller's event).
pub fn throttle(
    prev: Backoff,
    new_failures: u32,
    became_healthy: bool,
    now_ms: i64,
    settings: &ThrottleSettings,
) -> (Backoff, bool) {
    if new_failures == 0 {
        if became_healthy && prev.consecutive_failures > 0 && !prev.holds_starts(now_ms) {
            return (Backoff::default(), false);
        }
        return (prev, false);
    }
    let consecutive = prev.consecutive_failures.saturating_add(new_failures);
    if consecutive < settings.after_failures {
        return (
            Backoff {
                consecutive_failures: consecutive,
                until_ms: prev.until_ms,
            },
            false,
        );
    }
    let doublings = (consecutive - settings.after_failures).min(30);
    let delay = settings
        .base_ms
        .saturating_mul(1i64 << doublings)
        .min(settings.max_ms);
    (
        Backoff {
            consecutive_failures: consecutive,
            until_ms: now_ms + delay,
        },
        true,
    )
}

fn stop(actions: &mut Vec<Action>, task: &TaskView, reason: StopReason) {
    actions.push(Action::Stop {
        task: task.id.clone(),
        reason,
    });
}

#[cfg(test)]
mod tests;
