//! Small steps of the ECS API the tests repeat: register a task definition, run one task, wait
//! for a task's status, stop it, and read what it reports.

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value};

use crate::ecs::{container, EcsClient};
use crate::env::TestEnv;
use crate::wait::{timeout, wait_until};

/// Registers a task definition and returns its ARN.
pub async fn register(api: &EcsClient, task_definition: Value) -> Result<String> {
    let out = api
        .call("RegisterTaskDefinition", task_definition)
        .await
        .context("RegisterTaskDefinition")?;
    out["taskDefinition"]["taskDefinitionArn"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("no taskDefinitionArn in {out}"))
}

/// Runs one task of `task_definition` in the env's cluster, with the fields of `extra` (an
/// object; null fields are left out) added to the RunTask request; fails on any RunTask
/// failures and returns the task as RunTask answered it.
pub async fn start_task(env: &TestEnv, task_definition: &str, extra: Value) -> Result<Value> {
    let mut request = json!({"cluster": env.cluster, "taskDefinition": task_definition});
    for (k, v) in extra.as_object().into_iter().flatten() {
        if !v.is_null() {
            request[k] = v.clone();
        }
    }
    let out = env
        .api()
        .call("RunTask", request)
        .await
        .context("RunTask")?;
    ensure!(
        out["failures"].as_array().is_none_or(|f| f.is_empty()),
        "RunTask failures: {out}"
    );
    out["tasks"][0]
        .as_object()
        .map(|t| Value::Object(t.clone()))
        .with_context(|| format!("RunTask started no task: {out}"))
}

/// [`start_task`], returning the task's ARN.
pub async fn run_task(env: &TestEnv, task_definition: &str, extra: Value) -> Result<String> {
    task_arn(&start_task(env, task_definition, extra).await?)
}

/// Registers `task_definition` and runs one task of it; returns the task's ARN.
pub async fn register_and_run(env: &TestEnv, task_definition: Value) -> Result<String> {
    let arn = register(&env.api(), task_definition).await?;
    run_task(env, &arn, Value::Null).await
}

/// The ARN of a task as the API returns it.
pub fn task_arn(task: &Value) -> Result<String> {
    task["taskArn"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("no taskArn in {task}"))
}

/// The last part of a task ARN.
pub fn task_id(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

/// Polls DescribeTasks (for up to `secs`, scaled) until `done` holds for the task; returns the
/// task. An error from `done` ends the wait.
pub async fn wait_task(
    env: &TestEnv,
    task: &str,
    what: &str,
    secs: u64,
    done: impl Fn(&Value) -> Result<bool>,
) -> Result<Value> {
    let api = env.api();
    let cluster = env.cluster.as_str();
    let done = &done;
    wait_until(what, timeout(secs), || {
        let task = api.describe_task(cluster, task);
        async move {
            let task = task.await?;
            Ok(done(&task)?.then_some(task))
        }
    })
    .await
}

/// Waits until the task's lastStatus is `want`; returns the task.
pub async fn wait_status(env: &TestEnv, task: &str, want: &str) -> Result<Value> {
    wait_task(env, task, &format!("the task to be {want}"), 120, |t| {
        Ok(t["lastStatus"] == want)
    })
    .await
}

/// Waits until the task is RUNNING; fails at once if it stops instead.
pub async fn wait_running(env: &TestEnv, task: &str) -> Result<Value> {
    wait_task(env, task, "RUNNING", 120, |t| {
        if t["lastStatus"] == "STOPPED" {
            bail!("the task stopped instead of running: {t}");
        }
        Ok(t["lastStatus"] == "RUNNING")
    })
    .await
}

/// Waits until the task is STOPPED; returns the stopped task.
pub async fn wait_stopped(env: &TestEnv, task: &str) -> Result<Value> {
    wait_task(env, task, "the task to stop", 120, |t| {
        Ok(t["lastStatus"] == "STOPPED")
    })
    .await
}

/// StopTask (reason "test done") and wait until the task is STOPPED.
pub async fn stop_and_wait(env: &TestEnv, task: &str) -> Result<()> {
    env.api()
        .call(
            "StopTask",
            json!({"cluster": env.cluster, "task": task, "reason": "test done"}),
        )
        .await
        .context("StopTask")?;
    wait_task(env, task, "STOPPED", 120, |t| {
        Ok(t["lastStatus"] == "STOPPED")
    })
    .await?;
    Ok(())
}

/// The exit code of the task's container `name`, if it has one.
pub fn exit_code(task: &Value, name: &str) -> Option<i64> {
    container(task, name)?["exitCode"].as_i64()
}

/// The log (stdout and stderr) of container `name` of `task` on the env's first agent.
pub fn container_log(env: &TestEnv, task: &str, name: &str) -> Result<String> {
    let path = env
        .agent_data_dir(0)
        .join("logs")
        .join(task_id(task))
        .join(format!("{name}.log"));
    std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
}
