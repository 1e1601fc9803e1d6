//! The DAEMON scheduling strategy's decisions: one task of the service on every ACTIVE container
//! instance that satisfies its placement constraints. Pure, like [`super::service::plan`], and
//! answering with the same actions (a start names its instance).
//!
//! ECS's rules for daemons: the desired count is the number of such instances; a deployment
//! replaces an instance's task in place — the old task stops first (maximumPercent is 100),
//! as many at once as minimumHealthyPercent allows (default 0: all) — and the new one starts
//! once the instance holds nothing of the service; on a DRAINING instance the daemon task stops
//! last, after every other task there has stopped.

use super::service::{
    failure_threshold, minimum_healthy, Action, DeploymentView, Rollout, StopReason, TaskHealth,
};

/// A container instance of the cluster, as a daemon sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonInstance {
    pub id: String,
    /// ACTIVE (not draining, not deregistered) and satisfying the service's constraints.
    pub eligible: bool,
    /// Its agent is connected: a task can be started there now.
    pub connected: bool,
    pub draining: bool,
    /// Tasks of other services or standalone ones, not stopped, on this instance.
    pub other_tasks: u32,
}

/// One of the service's tasks that has not stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonTask {
    pub id: String,
    pub deployment_id: String,
    pub instance_id: String,
    pub health: TaskHealth,
    /// Asked to stop already.
    pub stopping: bool,
    pub protected: bool,
}

pub struct DaemonView<'a> {
    pub instances: &'a [DaemonInstance],
    /// Newest first: the first is PRIMARY.
    pub deployments: &'a [DeploymentView],
    pub tasks: &'a [DaemonTask],
    pub minimum_healthy_percent: u32,
    /// Whether the deployment circuit breaker is on, and rolls back.
    pub circuit_breaker: Option<bool>,
}

/// A daemon's desired count: its eligible instances.
pub fn desired_count(instances: &[DaemonInstance]) -> u32 {
    instances.iter().filter(|i| i.eligible).count() as u32
}

pub fn plan(view: &DaemonView<'_>) -> Vec<Action> {
    let mut actions = Vec::new();
    let Some(primary) = view.deployments.first() else {
        return actions;
    };
    let desired = desired_count(view.instances);
    if let Some(rollback) = view.circuit_breaker {
        if primary.rollout == Rollout::InProgress
            && primary.failed_tasks >= failure_threshold(desired)
        {
            actions.push(Action::Fail {
                deployment: primary.id.clone(),
                rollback,
            });
            return actions;
        }
    }
    let stop = |actions: &mut Vec<Action>, t: &DaemonTask, reason| {
        actions.push(Action::Stop {
            task: t.id.clone(),
            reason,
        })
    };
    let mut healthy = view
        .tasks
        .iter()
        .filter(|t| !t.stopping && t.health == TaskHealth::Healthy)
        .count() as u32;
    let floor = minimum_healthy(desired, view.minimum_healthy_percent);
    let mut done = primary.rollout == Rollout::InProgress;

    for instance in view.instances {
        let here: Vec<&DaemonTask> = view
            .tasks
            .iter()
            .filter(|t| t.instance_id == instance.id)
            .collect();
        if !instance.eligible {
            done &= here.is_empty();
            // A draining instance keeps its daemon until everything else there has stopped.
            if instance.draining && instance.other_tasks > 0 {
                continue;
            }
            let reason = if instance.draining {
                StopReason::Draining
            } else {
                StopReason::ScaleIn
            };
            for t in here.iter().filter(|t| !t.stopping && !t.protected) {
                stop(&mut actions, t, reason);
            }
            continue;
        }
        let mut kept_primary = false;
        for t in here.iter().filter(|t| !t.stopping) {
            let is_primary = t.deployment_id == primary.id;
            if t.health == TaskHealth::Unhealthy && !t.protected {
                stop(&mut actions, t, StopReason::Unhealthy);
            } else if is_primary && !kept_primary {
                kept_primary = true;
                done &= t.health == TaskHealth::Healthy;
            } else if is_primary && !t.protected {
                // More than one of the primary here (a restart raced a start): the later goes.
                stop(&mut actions, t, StopReason::ScaleIn);
            } else if !is_primary && !t.protected {
                // An older deployment's task, replaced in place once the minimum allows.
                done = false;
                let counts = t.health == TaskHealth::Healthy;
                if !counts || healthy > floor {
                    stop(&mut actions, t, StopReason::Replaced);
                    if counts {
                        healthy -= 1;
                    }
                }
            } else {
                done &= is_primary;
            }
        }
        if !kept_primary {
            done = false;
        }
        // The new task starts once the instance holds nothing of the service, not even a task
        // being stopped (maximumPercent 100): a replacement comes in the pass after the stop.
        if !kept_primary
            && here.is_empty()
            && instance.connected
            && primary.rollout != Rollout::Failed
        {
            actions.push(Action::StartOn {
                deployment: primary.id.clone(),
                instance: instance.id.clone(),
            });
        }
    }
    // A task on an instance the cluster no longer lists (deregistered while a report was in
    // flight) is not the daemon of any instance: it stops, and the deployment is not done
    // until it has.
    let unknown: Vec<&DaemonTask> = view
        .tasks
        .iter()
        .filter(|t| !view.instances.iter().any(|i| i.id == t.instance_id))
        .collect();
    for t in unknown.iter().filter(|t| !t.stopping && !t.protected) {
        stop(&mut actions, t, StopReason::ScaleIn);
    }
    let on_unknown_instance = !unknown.is_empty();
    if done && !on_unknown_instance {
        actions.push(Action::Complete {
            deployment: primary.id.clone(),
        });
    }
    let primary_done = primary.rollout == Rollout::Completed;
    for d in &view.deployments[1..] {
        if (d.rollout != Rollout::Failed || primary_done)
            && !view.tasks.iter().any(|t| t.deployment_id == d.id)
        {
            actions.push(Action::Retire {
                deployment: d.id.clone(),
            });
        }
    }
    actions
}

#[cfg(test)]
mod tests;
