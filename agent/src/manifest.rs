//! Task-manifest reconciliation, pure: the control plane periodically lists the tasks it
//! believes this instance has; the two sides disagree after a lost payload, a restored backup
//! or a control plane that lost its state. Disagreement is only acted on once it has lasted a
//! grace period across at least two manifests, because a manifest and a payload can cross on
//! the wire (a task placed a moment ago may be in one and not yet in the other).

use std::collections::{HashMap, HashSet};

/// What the agent holds, as the tracker needs it.
#[derive(Debug, Default, Clone)]
pub struct AgentTasks {
    /// Tasks the agent is running or starting and has not been asked to stop.
    pub active: HashSet<String>,
    /// Every task the agent has a record of, finished or not.
    pub known: HashSet<String>,
}

/// What to do about a manifest.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Decisions {
    /// Tasks the control plane has not listed for the whole grace period: stop them.
    pub stop: Vec<String>,
    /// Tasks the control plane has listed for the whole grace period that the agent has never
    /// heard of: report them STOPPED.
    pub report_missing: Vec<String>,
}

pub const STOP_REASON: &str =
    "Stopped by the agent: the control plane's task manifest no longer lists this task";
pub const MISSING_REASON: &str =
    "The container instance's agent has no record of this task (it never received it)";

#[derive(Debug)]
pub struct ManifestTracker {
    grace_ms: u64,
    /// Active tasks absent from the manifests since this time.
    unlisted_since: HashMap<String, u64>,
    /// Listed tasks the agent does not know, since this time.
    unknown_since: HashMap<String, u64>,
}

impl ManifestTracker {
    pub fn new(grace_ms: u64) -> Self {
        Self {
            grace_ms,
            unlisted_since: HashMap::new(),
            unknown_since: HashMap::new(),
        }
    }

    /// Folds in a manifest received at `now_ms`.
    pub fn observe(&mut self, manifest: &[String], agent: &AgentTasks, now_ms: u64) -> Decisions {
        let listed: HashSet<&str> = manifest.iter().map(String::as_str).collect();
        let mut decisions = Decisions::default();

        self.unlisted_since
            .retain(|arn, _| agent.active.contains(arn) && !listed.contains(arn.as_str()));
        for arn in &agent.active {
            if listed.contains(arn.as_str()) {
                continue;
            }
            let since = *self.unlisted_since.entry(arn.clone()).or_insert(now_ms);
            if now_ms.saturating_sub(since) >= self.grace_ms && since < now_ms {
                decisions.stop.push(arn.clone());
            }
        }

        self.unknown_since
            .retain(|arn, _| !agent.known.contains(arn) && listed.contains(arn.as_str()));
        for arn in manifest {
            if agent.known.contains(arn) {
                continue;
            }
            let since = *self.unknown_since.entry(arn.clone()).or_insert(now_ms);
            if now_ms.saturating_sub(since) >= self.grace_ms && since < now_ms {
                decisions.report_missing.push(arn.clone());
            }
        }

        // Decided once: the stop and the report are durable from here on.
        for arn in &decisions.stop {
            self.unlisted_since.remove(arn);
        }
        for arn in &decisions.report_missing {
            self.unknown_since.remove(arn);
        }
        decisions.stop.sort();
        decisions.report_missing.sort();
        decisions
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(arns: &[&str]) -> HashSet<String> {
        arns.iter().map(|s| s.to_string()).collect()
    }

    fn list(arns: &[&str]) -> Vec<String> {
        arns.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn agreement_decides_nothing() {
        let mut t = ManifestTracker::new(1000);
        let agent = AgentTasks {
            active: set(&["a", "b"]),
            known: set(&["a", "b", "old"]),
        };
        for now in [0, 5000, 10_000] {
            assert_eq!(
                t.observe(&list(&["a", "b"]), &agent, now),
                Decisions::default()
            );
        }
    }

    #[test]
    fn an_unlisted_task_is_stopped_only_after_the_grace_period_and_a_second_manifest() {
        let mut t = ManifestTracker::new(1000);
        let agent = AgentTasks {
            active: set(&["a", "ghost"]),
            known: set(&["a", "ghost"]),
        };
        // One manifest alone never decides, however long ago the grace began.
        assert!(t.observe(&list(&["a"]), &agent, 0).stop.is_empty());
        assert!(t.observe(&list(&["a"]), &agent, 999).stop.is_empty());
        assert_eq!(
            t.observe(&list(&["a"]), &agent, 1000).stop,
            list(&["ghost"])
        );
        // Decided once.
        assert!(t.observe(&list(&["a"]), &agent, 5000).stop.is_empty());
    }

    #[test]
    fn a_task_listed_again_within_the_grace_period_is_forgiven() {
        let mut t = ManifestTracker::new(1000);
        let agent = AgentTasks {
            active: set(&["new"]),
            known: set(&["new"]),
        };
        // The manifest was computed before the payload that placed the task.
        assert!(t.observe(&[], &agent, 0).stop.is_empty());
        assert!(t.observe(&list(&["new"]), &agent, 500).stop.is_empty());
        // Missing again later: the clock starts over.
        assert!(t.observe(&[], &agent, 2000).stop.is_empty());
        assert!(t.observe(&[], &agent, 2999).stop.is_empty());
        assert_eq!(t.observe(&[], &agent, 3000).stop, list(&["new"]));
    }

    #[test]
    fn a_listed_task_the_agent_never_received_is_reported_after_the_grace_period() {
        let mut t = ManifestTracker::new(1000);
        let mut agent = AgentTasks {
            active: set(&["a"]),
            known: set(&["a"]),
        };
        let manifest = list(&["a", "lost", "late"]);
        assert_eq!(t.observe(&manifest, &agent, 0), Decisions::default());
        // The payload of "late" arrives in the meantime.
        agent.known.insert("late".into());
        agent.active.insert("late".into());
        let d = t.observe(&manifest, &agent, 1500);
        assert_eq!(d.report_missing, list(&["lost"]));
        assert!(d.stop.is_empty());
        assert!(t.observe(&manifest, &agent, 3000).report_missing.is_empty());
    }

    #[test]
    fn a_task_that_finished_meanwhile_is_not_stopped() {
        let mut t = ManifestTracker::new(1000);
        let mut agent = AgentTasks {
            active: set(&["a"]),
            known: set(&["a"]),
        };
        assert!(t.observe(&[], &agent, 0).stop.is_empty());
        agent.active.clear();
        assert!(t.observe(&[], &agent, 2000).stop.is_empty());
    }
}
