//! Services against real containerd (issue #17): a service of two tasks on a real agent reaches
//! a steady state, a task killed from outside (its process, with SIGKILL, behind the agent's
//! back) is replaced, and a forced delete stops every task and leaves the service INACTIVE.

use anyhow::{ensure, Context, Result};
use berth_e2e::{register, task_main_pid, timeout, wait_until, TestEnv, TEST_IMAGE};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

async fn service(env: &TestEnv, name: &str) -> Result<Value> {
    let d = env
        .api()
        .call(
            "DescribeServices",
            json!({"cluster": env.cluster, "services": [name]}),
        )
        .await?;
    Ok(d["services"][0].clone())
}

/// The service's task ARNs whose lastStatus is RUNNING, once it is stable (one completed
/// deployment, runningCount == desiredCount).
async fn wait_stable(env: &TestEnv, name: &str) -> Result<Vec<String>> {
    wait_until("the service to be stable", timeout(90), || async {
        let s = service(env, name).await?;
        let d = s["deployments"].as_array().context("deployments")?;
        if !(d.len() == 1
            && d[0]["rolloutState"] == "COMPLETED"
            && s["runningCount"] == s["desiredCount"])
        {
            return Ok(None);
        }
        let listed = env
            .api()
            .call(
                "ListTasks",
                json!({"cluster": env.cluster, "serviceName": name}),
            )
            .await?;
        let arns: Vec<String> = listed["taskArns"]
            .as_array()
            .context("taskArns")?
            .iter()
            .filter_map(|a| a.as_str().map(str::to_owned))
            .collect();
        Ok(Some(arns))
    })
    .await
}

#[tokio::test]
async fn a_service_replaces_a_task_killed_from_outside_and_drains_on_delete() -> Result<()> {
    let mut env = TestEnv::new("services")?;
    env.set_cp_service_settle_ms(500);
    env.start_cp().await?;
    let code = env.create_activation(1)?;
    env.start_agent(Some(&code))?;
    env.wait_agent_connected().await?;
    let api = env.api();
    let family = format!("svc-{}", env.id);
    register(
        &api,
        json!({
            "family": family,
            "networkMode": "none",
            "containerDefinitions": [{
                "name": "app", "image": TEST_IMAGE, "memory": 32, "stopTimeout": 2,
                "command": ["sleep", "600"]
            }]
        }),
    )
    .await?;
    let name = format!("web-{}", env.id);
    api.call(
        "CreateService",
        json!({"cluster": env.cluster, "serviceName": name, "taskDefinition": family,
               "desiredCount": 2, "launchType": "EXTERNAL"}),
    )
    .await?;
    let first = wait_stable(&env, &name).await?;
    ensure!(first.len() == 2, "two tasks: {first:?}");

    // Kill one task's process behind the agent's back: the agent reports the exit, the service
    // starts a replacement.
    let victim = &first[0];
    let described = api.describe_task(&env.cluster, victim).await?;
    let runtime_id = described["containers"][0]["runtimeId"]
        .as_str()
        .context("runtimeId")?
        .to_owned();
    let pid = task_main_pid(&env.namespace, &runtime_id)?.context("the task's process")?;
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL)?;
    let after = wait_until("a replacement task", timeout(90), || async {
        let arns = wait_stable(&env, &name).await?;
        Ok((!arns.contains(victim) && arns.len() == 2).then_some(arns))
    })
    .await?;
    ensure!(
        after.contains(&first[1]),
        "the other task kept running: {after:?}"
    );
    let s = service(&env, &name).await?;
    let events: Vec<&str> = s["events"]
        .as_array()
        .context("events")?
        .iter()
        .filter_map(|e| e["message"].as_str())
        .collect();
    ensure!(
        events
            .iter()
            .any(|e| e.starts_with(&format!("(service {name}) has started 1 tasks: (task "))),
        "a replacement event: {events:#?}"
    );

    // Delete with force: every task stopped by the scheduler, the service INACTIVE.
    api.call(
        "DeleteService",
        json!({"cluster": env.cluster, "service": name, "force": true}),
    )
    .await?;
    wait_until("the service to be INACTIVE", timeout(90), || async {
        Ok((service(&env, &name).await?["status"] == "INACTIVE").then_some(()))
    })
    .await?;
    for arn in &after {
        let t = api.describe_task(&env.cluster, arn).await?;
        ensure!(t["lastStatus"] == "STOPPED", "{arn} stopped: {t}");
        ensure!(t["stopCode"] == "ServiceSchedulerInitiated", "{arn}: {t}");
    }
    env.pass();
    Ok(())
}
