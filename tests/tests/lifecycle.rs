//! Container lifecycle (issue #3) against real containerd: dependsOn ordering and failure,
//! restart policies (in place, counted) and cleanup after the configured wait.

use std::time::Instant;

use anyhow::{ensure, Context, Result};
use berth_e2e::{
    container, register, run_task, task_id, timeout, wait_stopped, wait_task, wait_until, TestEnv,
    TEST_IMAGE,
};
use serde_json::{json, Value};

/// berth-cp and one agent for an env configured first (as `TestEnv::with_agent` does).
async fn start(mut env: TestEnv) -> Result<TestEnv> {
    env.start_cp().await?;
    let code = env.create_activation(1)?;
    env.start_agent(Some(&code))?;
    env.wait_agent_connected().await?;
    Ok(env)
}

/// The host's uptime a container printed first (`cat /proc/uptime`): uptime is not
/// namespaced, so it orders events across containers.
fn uptime_in_log(env: &TestEnv, task: &str, name: &str) -> Result<f64> {
    let path = env
        .agent_data_dir(0)
        .join("logs")
        .join(task_id(task))
        .join(format!("{name}.log"));
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let first = text
        .split_whitespace()
        .next()
        .with_context(|| format!("{} is empty", path.display()))?;
    first
        .parse()
        .with_context(|| format!("{first:?} in {} is not an uptime", path.display()))
}

fn def(name: &str, essential: bool, script: &str) -> Value {
    json!({
        "name": name,
        "image": TEST_IMAGE,
        "essential": essential,
        "memory": 32,
        "stopTimeout": 2,
        "command": ["sh", "-c", script],
    })
}

fn depends(mut c: Value, on: &str, condition: &str) -> Value {
    c["dependsOn"] = json!([{"containerName": on, "condition": condition}]);
    c
}

/// START lets the dependent start while its dependency runs; COMPLETE and SUCCESS wait for the
/// dependency's exit. Logs are kept (cleanup wait) so each container's start time can be read.
#[tokio::test]
async fn depends_on_orders_container_starts() -> Result<()> {
    let mut env = TestEnv::new("depends-on")?;
    env.set_task_cleanup_wait_secs(600);
    let env = start(env).await?;
    let api = env.api();
    let td = register(
        &api,
        json!({
            "family": format!("deps-{}", env.id),
            "networkMode": "none",
            "containerDefinitions": [
                def("first", false, "cat /proc/uptime; sleep 3; exit 0"),
                depends(def("after-start", true, "cat /proc/uptime; sleep 600"), "first", "START"),
                depends(def("after-complete", false, "cat /proc/uptime"), "first", "COMPLETE"),
                depends(def("after-success", true, "cat /proc/uptime; sleep 1; exit 0"), "first", "SUCCESS"),
            ]
        }),
    )
    .await?;
    let task = run_task(&env, &td, json!({"count": 1})).await?;
    let stopped = wait_stopped(&env, &task).await?;
    ensure!(
        stopped["stopCode"] == "EssentialContainerExited"
            && stopped["stoppedReason"]
                .as_str()
                .is_some_and(|r| r.contains("after-success")),
        "the task should stop when after-success exits: {stopped}"
    );
    for name in ["first", "after-complete", "after-success"] {
        let code = container(&stopped, name).and_then(|c| c["exitCode"].as_i64());
        ensure!(code == Some(0), "{name} exit code {code:?}: {stopped}");
    }
    let first = uptime_in_log(&env, &task, "first")?;
    let start = uptime_in_log(&env, &task, "after-start")?;
    let complete = uptime_in_log(&env, &task, "after-complete")?;
    let success = uptime_in_log(&env, &task, "after-success")?;
    ensure!(
        start >= first && start < first + 3.0,
        "after-start ({start}) must start while first ({first}) runs"
    );
    for (name, t) in [("after-complete", complete), ("after-success", success)] {
        ensure!(
            t >= first + 3.0,
            "{name} ({t}) started before first ({first}) exited"
        );
    }
    env.pass();
    Ok(())
}

/// A SUCCESS dependency that exits non-zero stops the task as TaskFailedToStart, naming both
/// containers and the condition; the dependent never starts.
#[tokio::test]
async fn a_failed_success_dependency_stops_the_task() -> Result<()> {
    let env = TestEnv::with_agent("dep-fails").await?;
    let api = env.api();
    let td = register(
        &api,
        json!({
            "family": format!("depfail-{}", env.id),
            "networkMode": "none",
            "containerDefinitions": [
                def("init", false, "exit 3"),
                depends(def("app", true, "sleep 600"), "init", "SUCCESS"),
            ]
        }),
    )
    .await?;
    let task = run_task(&env, &td, json!({"count": 1})).await?;
    let stopped = wait_stopped(&env, &task).await?;
    ensure!(stopped["stopCode"] == "TaskFailedToStart", "{stopped}");
    let reason = stopped["stoppedReason"].as_str().unwrap_or_default();
    for needle in ["init", "app", "SUCCESS", "code 3"] {
        ensure!(
            reason.contains(needle),
            "{needle:?} not in stoppedReason {reason:?}"
        );
    }
    let app = container(&stopped, "app").context("no app container")?;
    ensure!(app["exitCode"].is_null(), "app must never have run: {app}");
    ensure!(
        container(&stopped, "init").and_then(|c| c["exitCode"].as_i64()) == Some(3),
        "{stopped}"
    );
    // Registration refuses what can never work.
    let refused = api
        .call(
            "RegisterTaskDefinition",
            json!({
                "family": format!("depbad-{}", env.id),
                "containerDefinitions": [
                    def("a", true, "true"),
                    depends(def("b", false, "true"), "a", "HEALTHY"),
                ]
            }),
        )
        .await;
    let err = format!(
        "{:?}",
        refused.expect_err("HEALTHY on a container without a healthCheck must be refused")
    );
    ensure!(err.contains("healthCheck"), "{err}");
    env.pass();
    Ok(())
}

/// A container with a restart policy that crashes after running the attempt period is
/// restarted in place (its writable layer survives) and DescribeTasks counts the restart; the
/// task keeps running although the container is essential.
#[tokio::test]
async fn a_restart_policy_restarts_the_container_in_place() -> Result<()> {
    let env = TestEnv::with_agent("restart").await?;
    let api = env.api();
    // ECS restarts only a container that ran at least restartAttemptPeriod (minimum 60 s).
    let script = "if [ -f /marker ]; then echo second run; exec sleep 600; fi; \
                  touch /marker; sleep 61; exit 1";
    let mut app = def("app", true, script);
    app["restartPolicy"] = json!({"enabled": true, "restartAttemptPeriod": 60});
    let td = register(
        &api,
        json!({
            "family": format!("restart-{}", env.id),
            "networkMode": "none",
            "containerDefinitions": [app]
        }),
    )
    .await?;
    let task = run_task(&env, &td, json!({"count": 1})).await?;
    let restarted = wait_task(&env, &task, "restartCount 1", 120, |t| {
        Ok(container(t, "app").is_some_and(|c| c["berth"]["restartCount"] == 1))
    })
    .await?;
    ensure!(restarted["lastStatus"] == "RUNNING", "{restarted}");
    ensure!(
        restarted["desiredStatus"] == "RUNNING",
        "a restart must not stop the task: {restarted}"
    );
    let log = env
        .agent_data_dir(0)
        .join("logs")
        .join(task_id(&task))
        .join("app.log");
    wait_until("the second run's output", timeout(30), || {
        let log = log.clone();
        async move {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            Ok(text.contains("second run").then_some(()))
        }
    })
    .await
    .context("the restarted container must see the file its first run wrote")?;
    api.call(
        "StopTask",
        json!({"cluster": env.cluster, "task": task, "reason": "done"}),
    )
    .await?;
    let stopped = wait_stopped(&env, &task).await?;
    ensure!(
        container(&stopped, "app").is_some_and(|c| c["berth"]["restartCount"] == 1),
        "{stopped}"
    );
    env.pass();
    Ok(())
}

/// A stopped task's containers stay in containerd for task_cleanup_wait_secs, then go; the
/// task stays visible through the API.
#[tokio::test]
async fn cleanup_waits_for_the_configured_time() -> Result<()> {
    let mut env = TestEnv::new("cleanup-wait")?;
    env.set_task_cleanup_wait_secs(3);
    let env = start(env).await?;
    let api = env.api();
    let td = register(
        &api,
        json!({
            "family": format!("cleanup-{}", env.id),
            "networkMode": "none",
            "containerDefinitions": [def("app", true, "echo bye; exit 0")]
        }),
    )
    .await?;
    let task = run_task(&env, &td, json!({"count": 1})).await?;
    wait_stopped(&env, &task).await?;
    let stopped_seen = Instant::now();
    let left = env.containerd_containers()?;
    ensure!(
        left.iter().any(|c| c.contains(task_id(&task))),
        "the container must stay during the wait: {left:?}"
    );
    let logs = env.agent_data_dir(0).join("logs").join(task_id(&task));
    ensure!(logs.exists(), "logs must stay during the wait");
    // The agent removes the containers, then the task's logs: wait for both (checking the logs
    // the instant the last container went raced the agent's next step).
    wait_until(
        "containerd to hold no containers and the task's logs to be gone",
        timeout(60),
        || async { Ok((env.containerd_containers()?.is_empty() && !logs.exists()).then_some(())) },
    )
    .await?;
    ensure!(
        stopped_seen.elapsed().as_secs_f64() > 1.5,
        "removed after {:?}, before the 3 s wait",
        stopped_seen.elapsed()
    );
    let described = api.describe_task(&env.cluster, &task).await?;
    ensure!(described["lastStatus"] == "STOPPED", "{described}");
    env.pass();
    Ok(())
}
