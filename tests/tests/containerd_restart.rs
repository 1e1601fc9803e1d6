//! Durability against containerd itself (issue #7), each test on a containerd of its own so that
//! stopping or freezing it disturbs no other test:
//! - containerd stopped (SIGTERM) or killed (SIGKILL) for a while and started again: running
//!   tasks keep running (same process: their shims outlive containerd), an exit that happened
//!   while containerd was down is still reported with its exit code, and a stop afterwards
//!   works and leaves nothing in containerd;
//! - containerd frozen (SIGSTOP) for about three call timeouts: the instance's health turns
//!   IMPAIRED while its session stays up, and once containerd is thawed it is OK again and a
//!   new task runs.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use berth_e2e::{
    container, exit_code, register, run_task, stop_and_wait, task_id, task_main_pid_at, tasks_at,
    timeout, wait_running, wait_task, wait_until, TestEnv, TEST_IMAGE,
};
use serde_json::{json, Value};

/// The agents' `[containerd] call_timeout_secs` in these tests.
const CALL_TIMEOUT_SECS: u64 = 3;
/// How long after its start the exiting task's container exits.
const EXIT_AFTER_SECS: u64 = 4;
/// How long containerd stays down.
const DOWN_FOR: Duration = Duration::from_secs(8);

/// A CP and one agent on a private containerd with short call timeouts.
async fn env_on_private_containerd(name: &str, heartbeat_ms: Option<u64>) -> Result<TestEnv> {
    let mut env = TestEnv::new(name)?;
    env.use_private_containerd()?;
    env.set_containerd_call_timeout_secs(CALL_TIMEOUT_SECS);
    if let Some(ms) = heartbeat_ms {
        env.set_cp_heartbeat_interval_ms(ms);
    }
    env.start_cp().await?;
    let code = env.create_activation(1)?;
    env.start_agent(Some(&code))?;
    env.wait_agent_connected().await?;
    Ok(env)
}

async fn register_sh(env: &TestEnv, family: &str, script: &str) -> Result<String> {
    register(
        &env.api(),
        json!({
            "family": format!("{family}-{}", env.id),
            "networkMode": "none",
            "containerDefinitions": [{
                "name": "app",
                "image": TEST_IMAGE,
                "essential": true,
                "memory": 32,
                // sleep as pid 1 ignores SIGTERM: a stop is a SIGKILL after this.
                "stopTimeout": 2,
                "command": ["sh", "-c", script]
            }]
        }),
    )
    .await
}

fn runtime_id(task: &Value) -> Result<String> {
    container(task, "app")
        .and_then(|c| c["runtimeId"].as_str())
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .with_context(|| format!("no runtimeId for app in {task}"))
}

/// The pid of the container's main process and its task status in the env's containerd.
fn ctr_task(env: &TestEnv, id: &str) -> Result<Option<(u32, String)>> {
    let socket = env.containerd_socket();
    Ok(tasks_at(&socket, &env.namespace)?
        .into_iter()
        .find(|t| t.id == id)
        .map(|t| (t.pid, t.status)))
}

/// Waits until none of `ids` is a container in the env's containerd any more.
async fn wait_containers_gone(env: &TestEnv, ids: &[&str]) -> Result<()> {
    wait_until(
        "the containers to be removed from containerd",
        timeout(60),
        || {
            let left = env.containerd_containers();
            async move {
                let left = left?;
                Ok(ids
                    .iter()
                    .all(|id| !left.iter().any(|c| c == id))
                    .then_some(()))
            }
        },
    )
    .await
}

/// How many lines of the agent's log that contain `needle`.
fn agent_log_count(env: &mut TestEnv, needle: &str) -> usize {
    env.agent(0)
        .log()
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

#[derive(Clone, Copy, Debug)]
enum Outage {
    /// SIGTERM, waited for.
    Stop,
    /// SIGKILL: a crash.
    Kill,
}

async fn survive_an_outage(name: &str, outage: Outage) -> Result<()> {
    let mut env = env_on_private_containerd(name, None).await?;
    let long_td = register_sh(&env, "cd-long", "exec sleep 600").await?;
    let exit_td = register_sh(&env, "cd-exit", &format!("sleep {EXIT_AFTER_SECS}; exit 7")).await?;

    let long = run_task(&env, &long_td, Value::Null).await?;
    let long_running = wait_running(&env, &long).await?;
    let long_id = runtime_id(&long_running)?;
    let (long_pid, status) =
        ctr_task(&env, &long_id)?.with_context(|| format!("no containerd task for {long_id}"))?;
    ensure!(status == "RUNNING", "{long_id} is {status} in containerd");
    let shims_before = env.private_containerd().shim_pids();

    // The exiting task: containerd goes down before its container exits and comes back after.
    let asked = Instant::now();
    let exiting = run_task(&env, &exit_td, Value::Null).await?;
    let exiting_running = wait_running(&env, &exiting).await?;
    let exiting_id = runtime_id(&exiting_running)?;
    let outage_started = Instant::now();
    match outage {
        Outage::Stop => env.private_containerd().stop()?,
        Outage::Kill => env.private_containerd().kill()?,
    };
    let down_at = asked.elapsed();
    // The container started after RunTask was asked for, so it exits no earlier than
    // EXIT_AFTER_SECS after that: if containerd was down by then, the exit happens while it is.
    ensure!(
        down_at < Duration::from_secs(EXIT_AFTER_SECS),
        "containerd was down only {down_at:?} after RunTask, so the exit may have happened \
         before: the test proves nothing on a machine this slow"
    );
    tokio::time::sleep(DOWN_FOR.saturating_sub(outage_started.elapsed())).await;
    // The exit has happened: the shim says so (through runc's state, without containerd).
    env.private_containerd().start()?;
    eprintln!(
        "{outage:?}: containerd down {:?}, from {down_at:?} after RunTask",
        outage_started.elapsed()
    );

    // No exit is missed: the exit during the outage is reported, with its code.
    let stopped = wait_task(&env, &exiting, "the exiting task to stop", 60, |t| {
        Ok(t["lastStatus"] == "STOPPED")
    })
    .await?;
    ensure!(
        exit_code(&stopped, "app") == Some(7),
        "the exit during the outage was not reported with code 7: {stopped}"
    );

    // The long task still runs: the same process, in the same shim.
    let long_now = env.api().describe_task(&env.cluster, &long).await?;
    ensure!(
        long_now["lastStatus"] == "RUNNING"
            && container(&long_now, "app").is_some_and(|c| c["lastStatus"] == "RUNNING"),
        "the long task is no longer RUNNING after the outage: {long_now}"
    );
    let now = ctr_task(&env, &long_id)?;
    ensure!(
        now == Some((long_pid, "RUNNING".to_owned())),
        "the long task's process was {long_pid} (RUNNING) before the outage, now {now:?}"
    );
    let shims_after = env.private_containerd().shim_pids();
    ensure!(
        shims_before.iter().all(|p| shims_after.contains(p)),
        "shims before the outage {shims_before:?}, after {shims_after:?}"
    );
    // It keeps running for a while (nothing stops it belatedly).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let status = env.api().task_status(&env.cluster, &long).await?;
    ensure!(status == "RUNNING", "the long task became {status}");
    ensure!(
        task_main_pid_at(&env.containerd_socket(), &env.namespace, &long_id)? == Some(long_pid),
        "the long task's process changed"
    );
    ensure!(
        env.wait_agent_connected().await.is_ok(),
        "the agent is not connected after the outage"
    );

    // A stop through the API still works and removes its containers.
    stop_and_wait(&env, &long).await?;
    let stopped_long = env.api().describe_task(&env.cluster, &long).await?;
    ensure!(
        exit_code(&stopped_long, "app").is_some(),
        "the stopped long task has no exit code: {stopped_long}"
    );
    wait_containers_gone(&env, &[&long_id, &exiting_id]).await?;
    ensure!(
        ctr_task(&env, &long_id)?.is_none(),
        "{long_id} still has a containerd task"
    );
    eprintln!(
        "{outage:?}: tasks {} and {} done",
        task_id(&long),
        task_id(&exiting)
    );
    env.pass();
    Ok(())
}

#[tokio::test]
async fn running_tasks_survive_a_containerd_restart_and_no_exit_is_missed() -> Result<()> {
    survive_an_outage("cd-restart", Outage::Stop).await
}

#[tokio::test]
async fn running_tasks_survive_a_containerd_crash_and_no_exit_is_missed() -> Result<()> {
    survive_an_outage("cd-crash", Outage::Kill).await
}

/// The instance as DescribeContainerInstances shows it.
async fn instance(env: &TestEnv, arn: &str) -> Result<Value> {
    let out = env
        .api()
        .call(
            "DescribeContainerInstances",
            json!({"cluster": env.cluster, "containerInstances": [arn]}),
        )
        .await?;
    out["containerInstances"][0]
        .as_object()
        .map(|o| Value::Object(o.clone()))
        .with_context(|| format!("no container instance {arn}: {out}"))
}

fn overall_health(instance: &Value) -> &str {
    instance["healthStatus"]["overallStatus"]
        .as_str()
        .unwrap_or("<no healthStatus.overallStatus>")
}

async fn wait_health(env: &TestEnv, arn: &str, want: &str, secs: u64) -> Result<Value> {
    wait_until(
        &format!("the instance's health to be {want}"),
        timeout(secs),
        || async move {
            let i = instance(env, arn).await?;
            Ok((overall_health(&i) == want).then_some(i))
        },
    )
    .await
}

#[tokio::test]
async fn a_frozen_containerd_degrades_instance_health_but_not_the_session() -> Result<()> {
    let mut env = env_on_private_containerd("cd-freeze", Some(1_000)).await?;
    let arn = env.wait_agent_connected().await?;
    let long_td = register_sh(&env, "cd-long", "exec sleep 600").await?;
    let long = run_task(&env, &long_td, Value::Null).await?;
    let long_id = runtime_id(&wait_running(&env, &long).await?)?;
    let (long_pid, _) =
        ctr_task(&env, &long_id)?.with_context(|| format!("no containerd task for {long_id}"))?;
    wait_health(&env, &arn, "OK", 30).await?;

    let sessions_before = agent_log_count(&mut env, "session established");
    let frozen_for = Duration::from_secs(3 * CALL_TIMEOUT_SECS);
    env.private_containerd().freeze()?;
    let frozen_at = Instant::now();
    let mut seen = Vec::new();
    let mut impaired_after = None;
    while frozen_at.elapsed() < frozen_for {
        let i = instance(&env, &arn).await?;
        let health = overall_health(&i).to_owned();
        if i["agentConnected"] != Value::Bool(true) {
            env.private_containerd().thaw()?;
            bail!(
                "the agent disconnected {:?} into the freeze: {i}",
                frozen_at.elapsed()
            );
        }
        if health == "IMPAIRED" && impaired_after.is_none() {
            impaired_after = Some(frozen_at.elapsed());
        }
        if seen.last() != Some(&health) {
            seen.push(health);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let still = instance(&env, &arn).await?;
    env.private_containerd().thaw()?;
    eprintln!(
        "frozen {:?}: health went {seen:?}, IMPAIRED after {impaired_after:?}",
        frozen_at.elapsed()
    );
    ensure!(
        impaired_after.is_some(),
        "the instance's health never became IMPAIRED while containerd was frozen for \
         {frozen_for:?} (seen: {seen:?}); last: {still}"
    );
    ensure!(
        overall_health(&still) == "IMPAIRED" && still["agentConnected"] == Value::Bool(true),
        "at the end of the freeze: {still}"
    );

    wait_health(&env, &arn, "OK", 30).await?;
    let sessions_after = agent_log_count(&mut env, "session established");
    let lost = agent_log_count(&mut env, "session lost");
    ensure!(
        sessions_after == sessions_before && lost == 0,
        "the freeze cost the agent its session: {} new session(s), {lost} 'session lost' line(s)",
        sessions_after - sessions_before
    );

    // The task that ran through the freeze still runs, in the same process.
    let status = env.api().task_status(&env.cluster, &long).await?;
    ensure!(
        status == "RUNNING",
        "the long task became {status} after the freeze"
    );
    ensure!(
        ctr_task(&env, &long_id)? == Some((long_pid, "RUNNING".to_owned())),
        "the long task's process changed across the freeze"
    );
    // And a new task runs.
    let after_td = register_sh(&env, "cd-after", "exec sleep 600").await?;
    let after = run_task(&env, &after_td, Value::Null).await?;
    let after_id = runtime_id(&wait_running(&env, &after).await?)?;
    stop_and_wait(&env, &after).await?;
    stop_and_wait(&env, &long).await?;
    wait_containers_gone(&env, &[&long_id, &after_id]).await?;
    env.pass();
    Ok(())
}
