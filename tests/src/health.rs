//! Container health checks as the API shows them: building a `healthCheck`, reading
//! `healthStatus` (container and task) and Berth's `berth.health` extension, and watching a
//! task's health change over time.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Result};
use serde_json::{json, Value};

use crate::ecs::container;
use crate::env::TestEnv;
use crate::wait::{timeout, wait_until};

/// A container definition's `healthCheck`: `command` as ECS takes it (`["CMD", ...]` or
/// `["CMD-SHELL", "..."]`), times in seconds.
pub fn health_check(
    command: &[&str],
    interval: u32,
    timeout: u32,
    retries: u32,
    start_period: u32,
) -> Value {
    json!({
        "command": command,
        "interval": interval,
        "timeout": timeout,
        "retries": retries,
        "startPeriod": start_period,
    })
}

/// The `healthStatus` of container `name` in a task object, if it shows one.
pub fn container_health<'a>(task: &'a Value, name: &str) -> Option<&'a str> {
    container(task, name)?["healthStatus"].as_str()
}

/// The task's own `healthStatus`, if it shows one.
pub fn task_health(task: &Value) -> Option<&str> {
    task["healthStatus"].as_str()
}

/// Berth's `berth.health` of container `name`: status, exitCode, output, checkedAt, receivedAt.
pub fn berth_health<'a>(task: &'a Value, name: &str) -> Option<&'a Value> {
    container(task, name)?
        .get("berth")?
        .get("health")
        .filter(|h| !h.is_null())
}

/// An API timestamp as epoch seconds: ECS's JSON number, or a number in a string.
pub fn epoch_secs(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Now, as epoch seconds (the clock the agent and berth-cp stamp with: they run on this host).
pub fn now_epoch_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// The distinct values something took, in the order they were seen (a repeat of the last one
/// is not recorded). A missing value is recorded as "-".
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Trail(Vec<String>);

impl Trail {
    pub fn push(&mut self, value: Option<&str>) {
        let value = value.unwrap_or("-");
        if self.0.last().map(String::as_str) != Some(value) {
            self.0.push(value.to_owned());
        }
    }

    /// Everything seen, "-" included.
    pub fn all(&self) -> &[String] {
        &self.0
    }

    /// The values seen, without the gaps where there was none, repeats merged.
    pub fn values(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for v in self.0.iter().map(String::as_str).filter(|v| *v != "-") {
            if out.last() != Some(&v) {
                out.push(v);
            }
        }
        out
    }

    pub fn contains(&self, value: &str) -> bool {
        self.0.iter().any(|v| v == value)
    }
}

/// What [`watch_health`] saw: the container's and the task's healthStatus, and the container's
/// lastStatus, each as a [`Trail`].
#[derive(Debug, Default, Clone)]
pub struct HealthWatch {
    pub container: Trail,
    pub task: Trail,
    pub last_status: Trail,
}

impl HealthWatch {
    /// Records what a task object (DescribeTasks or RunTask) shows of container `name`.
    pub fn record(&mut self, task: &Value, name: &str) {
        self.container.push(container_health(task, name));
        self.task.push(task_health(task));
        self.last_status
            .push(container(task, name).and_then(|c| c["lastStatus"].as_str()));
    }
}

/// Polls DescribeTasks (every 100 ms, for up to `secs`, scaled) until `done` holds for the task,
/// recording container `name`'s health in `watch` on every poll; returns the task. An error
/// from `done` ends the wait, and so does the task stopping before `done` holds.
pub async fn watch_health(
    env: &TestEnv,
    task: &str,
    name: &str,
    what: &str,
    secs: u64,
    watch: &mut HealthWatch,
    done: impl Fn(&Value, &HealthWatch) -> Result<bool>,
) -> Result<Value> {
    let api = env.api();
    let cluster = env.cluster.as_str();
    let cell = RefCell::new(std::mem::take(watch));
    let done = &done;
    let result = wait_until(what, timeout(secs), || {
        let described = api.describe_task(cluster, task);
        let cell = &cell;
        async move {
            let t = described.await?;
            let mut w = cell.borrow_mut();
            w.record(&t, name);
            if done(&t, &w)? {
                return Ok(Some(t));
            }
            if t["lastStatus"] == "STOPPED" {
                bail!(
                    "the task stopped (seen container health {:?}, task health {:?}): {t}",
                    w.container.all(),
                    w.task.all()
                );
            }
            Ok(None)
        }
    })
    .await;
    *watch = cell.into_inner();
    // A failing `done` would otherwise only show as the last error of a timeout.
    result.map_err(|e| {
        e.context(format!(
            "container health seen {:?}, task health {:?}, lastStatus {:?}",
            watch.container.all(),
            watch.task.all(),
            watch.last_status.all()
        ))
    })
}
