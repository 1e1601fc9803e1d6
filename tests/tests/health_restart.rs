//! Health state across an agent crash: the status survives a kill -9 and a restart (the
//! restart is not a failure, nothing goes back to UNKNOWN) and checks resume on schedule.
//! Changes alone are reported, so "checks resume" is shown by one: the test makes the check
//! fail after the restart, and the restarted agent notices.

use anyhow::{ensure, Result};
use berth_e2e::{container, ctr, register, run_task, wait_task, TestEnv, TEST_IMAGE};
use serde_json::{json, Value};

fn health(task: &Value, name: &str) -> (String, f64) {
    let c = container(task, name).cloned().unwrap_or(Value::Null);
    (
        c["healthStatus"].as_str().unwrap_or("").to_owned(),
        c["berth"]["health"]["checkedAt"].as_f64().unwrap_or(0.0),
    )
}

#[tokio::test]
async fn health_survives_an_agent_crash_and_checks_resume() -> Result<()> {
    let mut env = TestEnv::with_agent("health-crash").await?;
    let td = register(
        &env.api(),
        json!({
            "family": format!("health-crash-{}", env.id),
            "networkMode": "none",
            "containerDefinitions": [{
                "name": "app",
                "image": TEST_IMAGE,
                "essential": true,
                "memory": 64,
                "command": ["sh", "-c", "touch /tmp/ok; exec sleep 600"],
                "healthCheck": {"command": ["CMD", "test", "-f", "/tmp/ok"], "interval": 5, "timeout": 2, "retries": 1}
            }]
        }),
    )
    .await?;
    let task = run_task(&env, &td, Value::Null).await?;
    let healthy = wait_task(&env, &task, "app HEALTHY", 60, |t| {
        Ok(health(t, "app").0 == "HEALTHY")
    })
    .await?;
    ensure!(healthy["healthStatus"] == "HEALTHY", "{healthy}");
    let (_, checked_before) = health(&healthy, "app");
    let runtime_id = container(&healthy, "app")
        .and_then(|c| c["runtimeId"].as_str())
        .unwrap_or_default()
        .to_owned();

    env.kill_agent(0).await?;
    env.restart_agent(0)?;
    env.wait_agent_connected().await?;
    // Through two check intervals of the restarted agent, nothing changes.
    tokio::time::sleep(std::time::Duration::from_secs(11)).await;
    let after = env.api().describe_task(&env.cluster, &task).await?;
    ensure!(
        health(&after, "app") == ("HEALTHY".to_owned(), checked_before),
        "the restart changed the health: {after}"
    );
    // The checks are live: a failure is seen and reported.
    ctr(
        &env.namespace,
        &[
            "task",
            "exec",
            "--exec-id",
            "berth-test-rm",
            &runtime_id,
            "rm",
            "/tmp/ok",
        ],
    )?;
    let unhealthy = wait_task(&env, &task, "app UNHEALTHY", 30, |t| {
        Ok(health(t, "app").0 == "UNHEALTHY")
    })
    .await?;
    ensure!(unhealthy["lastStatus"] == "RUNNING", "{unhealthy}");
    ensure!(health(&unhealthy, "app").1 > checked_before, "{unhealthy}");
    berth_e2e::stop_and_wait(&env, &task).await?;
    env.pass();
    Ok(())
}
