//! Container health checks: the pure policy (ECS's, which is Docker's) and the few helpers the
//! checker needs. Running a check is the runtime's (`Runtime::exec`); scheduling them is the
//! engine's (one tokio task per checked container, a shared bound on concurrent execs).
//!
//! The policy: every container with a healthCheck starts UNKNOWN. A passing check makes it
//! HEALTHY and resets the failure count. A failing check counts unless the container is still
//! in its start period and has never been healthy (a success inside the start period ends it);
//! `retries` counted failures in a row make it UNHEALTHY. A check that outlives its timeout is
//! killed and counts as a failure.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::HealthCheck;

/// Every health-check exec id starts with this, so that the checks a crashed agent left
/// running can be told from anything else executed in a container.
pub const EXEC_PREFIX: &str = "health-";

/// ECS's defaults and limits (RegisterTaskDefinition's HealthCheck).
pub const DEFAULT_INTERVAL_SECS: u32 = 30;
pub const DEFAULT_TIMEOUT_SECS: u32 = 5;
pub const DEFAULT_RETRIES: u32 = 3;
pub const DEFAULT_START_PERIOD_SECS: u32 = 0;
pub const INTERVAL_RANGE: (u32, u32) = (5, 300);
pub const TIMEOUT_RANGE: (u32, u32) = (2, 60);
pub const RETRIES_RANGE: (u32, u32) = (1, 10);
pub const START_PERIOD_RANGE: (u32, u32) = (0, 300);

/// How much of a check's output is kept (and reported).
pub const MAX_OUTPUT_BYTES: usize = 1024;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
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
}

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResult {
    /// None: the check outlived its timeout and was killed.
    pub exit_code: Option<i32>,
    /// The start of its stdout and stderr, at most [`MAX_OUTPUT_BYTES`].
    pub output: String,
    pub ended_at_ms: u64,
}

impl CheckResult {
    pub fn passed(&self) -> bool {
        self.exit_code == Some(0)
    }
}

/// A container's health, persisted with the task so an agent restart keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthState {
    pub status: HealthStatus,
    /// Counted failures in a row.
    pub failures: u32,
    pub last: Option<CheckResult>,
}

impl HealthState {
    /// Folds in a check of a container that started at `started_at_ms`; returns whether the
    /// status changed.
    pub fn record(&mut self, check: &HealthCheck, started_at_ms: u64, result: CheckResult) -> bool {
        let before = self.status;
        if result.passed() {
            self.status = HealthStatus::Healthy;
            self.failures = 0;
        } else {
            let start_period_ends = started_at_ms + u64::from(check.start_period_secs) * 1000;
            let in_start_period =
                self.status == HealthStatus::Unknown && result.ended_at_ms < start_period_ends;
            if !in_start_period {
                self.failures = self.failures.saturating_add(1);
                if self.failures >= check.retries.max(1) {
                    self.status = HealthStatus::Unhealthy;
                }
            }
        }
        self.last = Some(result);
        before != self.status
    }
}

/// The command to exec for a healthCheck `command`: `["CMD", args...]` runs the args,
/// `["CMD-SHELL", "cmd"]` runs `/bin/sh -c cmd`. `["NONE"]` disables the check (Ok(None)).
pub fn exec_args(command: &[String]) -> Result<Option<Vec<String>>, String> {
    match command.split_first() {
        Some((kind, rest)) if kind == "CMD" && !rest.is_empty() => Ok(Some(rest.to_vec())),
        Some((kind, rest)) if kind == "CMD-SHELL" && !rest.is_empty() => {
            Ok(Some(vec!["/bin/sh".into(), "-c".into(), rest.join(" ")]))
        }
        Some((kind, [])) if kind == "NONE" => Ok(None),
        _ => Err(
            "command must be [\"CMD\", args...], [\"CMD-SHELL\", \"command\"] or [\"NONE\"]".into(),
        ),
    }
}

/// The start of a check's output as text, cut at a character boundary.
pub fn truncate_output(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_OUTPUT_BYTES)]);
    let mut out = text.into_owned();
    while out.len() > MAX_OUTPUT_BYTES {
        out.pop();
    }
    out
}

/// When the first check of a container runs: somewhere in its first interval, so that
/// containers started together (a burst of tasks, or every container after an agent restart)
/// do not check together. `unit` is a uniform random number in [0, 1).
pub fn first_delay(check: &HealthCheck, unit: f64) -> Duration {
    let interval = Duration::from_secs(u64::from(check.interval_secs.max(1)));
    // At least a tenth of the interval: a check at once would mostly find a process that has
    // not started listening yet.
    interval.mul_f64(0.1 + 0.9 * unit.clamp(0.0, 1.0))
}

/// The aggregate ECS shows for a task: over its essential containers that have a health
/// check, UNHEALTHY wins over UNKNOWN, which wins over HEALTHY; UNKNOWN when there are none.
pub fn task_health(essential: impl IntoIterator<Item = HealthStatus>) -> HealthStatus {
    let mut any = false;
    let mut unknown = false;
    for s in essential {
        any = true;
        match s {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn check(retries: u32, start_period_secs: u32) -> HealthCheck {
        HealthCheck {
            args: vec!["true".into()],
            interval_secs: 5,
            timeout_secs: 2,
            retries,
            start_period_secs,
        }
    }

    fn result(ok: bool, at_ms: u64) -> CheckResult {
        CheckResult {
            exit_code: Some(if ok { 0 } else { 1 }),
            output: String::new(),
            ended_at_ms: at_ms,
        }
    }

    #[test]
    fn retries_failures_in_a_row_make_it_unhealthy_and_one_success_heals() {
        let c = check(3, 0);
        let mut h = HealthState::default();
        assert!(h.record(&c, 0, result(true, 1_000)));
        assert_eq!(h.status, HealthStatus::Healthy);
        assert!(!h.record(&c, 0, result(false, 2_000)));
        assert!(!h.record(&c, 0, result(false, 3_000)));
        assert_eq!(h.status, HealthStatus::Healthy);
        assert!(h.record(&c, 0, result(false, 4_000)));
        assert_eq!(h.status, HealthStatus::Unhealthy);
        assert_eq!(h.failures, 3);
        assert!(h.record(&c, 0, result(true, 5_000)));
        assert_eq!((h.status, h.failures), (HealthStatus::Healthy, 0));
    }

    #[test]
    fn a_success_between_failures_resets_the_count() {
        let c = check(2, 0);
        let mut h = HealthState::default();
        h.record(&c, 0, result(false, 1_000));
        h.record(&c, 0, result(true, 2_000));
        h.record(&c, 0, result(false, 3_000));
        assert_eq!(h.status, HealthStatus::Healthy);
        h.record(&c, 0, result(false, 4_000));
        assert_eq!(h.status, HealthStatus::Unhealthy);
    }

    #[test]
    fn failures_inside_the_start_period_do_not_count_until_a_success_ends_it() {
        let c = check(1, 60);
        let mut h = HealthState::default();
        // Started at 10 s; the start period runs to 70 s.
        assert!(!h.record(&c, 10_000, result(false, 20_000)));
        assert!(!h.record(&c, 10_000, result(false, 69_000)));
        assert_eq!((h.status, h.failures), (HealthStatus::Unknown, 0));
        // After it, one failure (retries 1) decides.
        let mut late = h.clone();
        assert!(late.record(&c, 10_000, result(false, 71_000)));
        assert_eq!(late.status, HealthStatus::Unhealthy);
        // A success inside it ends it: the next failure counts at once.
        assert!(h.record(&c, 10_000, result(true, 30_000)));
        assert!(h.record(&c, 10_000, result(false, 35_000)));
        assert_eq!(h.status, HealthStatus::Unhealthy);
    }

    #[test]
    fn a_timed_out_check_is_a_failure() {
        let c = check(1, 0);
        let mut h = HealthState::default();
        let timed_out = CheckResult {
            exit_code: None,
            output: String::new(),
            ended_at_ms: 1,
        };
        assert!(!timed_out.passed());
        assert!(h.record(&c, 0, timed_out));
        assert_eq!(h.status, HealthStatus::Unhealthy);
    }

    #[test]
    fn commands_follow_ecs_forms() {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            exec_args(&s(&["CMD", "test", "-f", "/ok"])).unwrap(),
            Some(s(&["test", "-f", "/ok"]))
        );
        assert_eq!(
            exec_args(&s(&["CMD-SHELL", "curl -f http://localhost/ || exit 1"])).unwrap(),
            Some(s(&["/bin/sh", "-c", "curl -f http://localhost/ || exit 1"]))
        );
        assert_eq!(exec_args(&s(&["NONE"])).unwrap(), None);
        for bad in [&[][..], &["CMD"][..], &["RUN", "x"][..], &["CMD-SHELL"][..]] {
            assert!(exec_args(&s(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn output_is_cut_at_1_kib_on_a_character_boundary() {
        assert_eq!(truncate_output(b"ok\n"), "ok\n");
        let long = "é".repeat(1000);
        let cut = truncate_output(long.as_bytes());
        assert!(cut.len() <= MAX_OUTPUT_BYTES);
        assert!(cut.chars().all(|c| c == 'é' || c == '\u{fffd}'));
    }

    #[test]
    fn first_checks_spread_over_the_interval() {
        let c = check(3, 0);
        assert_eq!(first_delay(&c, 0.0), Duration::from_millis(500));
        assert_eq!(first_delay(&c, 1.0), Duration::from_secs(5));
        let d = first_delay(&c, 0.5);
        assert!(
            d > Duration::from_secs(2) && d < Duration::from_secs(3),
            "{d:?}"
        );
    }

    #[test]
    fn task_health_prefers_unhealthy_then_unknown() {
        use HealthStatus::*;
        assert_eq!(task_health([]), Unknown);
        assert_eq!(task_health([Healthy, Healthy]), Healthy);
        assert_eq!(task_health([Healthy, Unknown]), Unknown);
        assert_eq!(task_health([Unknown, Unhealthy, Healthy]), Unhealthy);
    }
}
