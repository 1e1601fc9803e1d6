//! Container health checks run by the agent (ECS `healthCheck`) against real containerd:
//! UNKNOWN → HEALTHY → UNHEALTHY as DescribeTasks and the AWS CLI show it, the start period,
//! a hanging check killed at its timeout with nothing left behind, and dependsOn HEALTHY.
//!
//! Checks run every 5 s (ECS's minimum interval); the tests wait generously and assert on what
//! happens and in which order, never on how fast.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use berth_e2e::{
    berth_health, container, container_health, container_log, epoch_secs, health_check,
    now_epoch_secs, register, start_task, stop_and_wait, task_arn, task_health, task_main_pid,
    task_pids, timeout, wait_stopped, wait_until, watch_health, AwsCli, HealthWatch, TestEnv,
    TEST_IMAGE,
};
use serde_json::{json, Value};

/// ECS's minimum check interval.
const INTERVAL: u32 = 5;

/// berth-cp and one agent that keeps stopped tasks' logs.
async fn env(name: &str) -> Result<TestEnv> {
    let mut env = TestEnv::new(name)?;
    env.set_task_cleanup_wait_secs(600);
    env.start_cp().await?;
    let code = env.create_activation(1)?;
    env.start_agent(Some(&code))?;
    env.wait_agent_connected().await?;
    Ok(env)
}

/// A container running `script` with busybox sh.
fn shell(name: &str, script: &str) -> Value {
    json!({
        "name": name,
        "image": TEST_IMAGE,
        "essential": true,
        "memory": 32,
        "stopTimeout": 2,
        "command": ["sh", "-c", script],
    })
}

/// `c` with a healthCheck.
fn checked(mut c: Value, check: Value) -> Value {
    c["healthCheck"] = check;
    c
}

/// Registers a task definition (network mode none) and runs one task of it; returns the
/// task's ARN and RunTask's answer.
async fn run(env: &TestEnv, family: &str, containers: Vec<Value>) -> Result<(String, Value)> {
    let td = register(
        &env.api(),
        json!({
            "family": format!("{family}-{}", env.id),
            "networkMode": "none",
            "containerDefinitions": containers,
        }),
    )
    .await?;
    let started = start_task(env, &td, json!({"count": 1})).await?;
    Ok((task_arn(&started)?, started))
}

/// A berth.health timestamp as epoch seconds, checked to be a plausible time of this test.
fn stamp(health: &Value, field: &str, test_start: f64) -> Result<f64> {
    let t = epoch_secs(&health[field]).with_context(|| format!("no {field} in {health}"))?;
    let now = now_epoch_secs();
    ensure!(
        t >= test_start - 1.0 && t <= now + 1.0,
        "berth.health.{field} {t} is not a time of this test ({test_start}..{now}): {health}"
    );
    Ok(t)
}

/// (a) A check that passes while /tmp/ok exists: UNKNOWN, then HEALTHY, then UNHEALTHY once
/// the file is gone, for the container and the task, in DescribeTasks and through the AWS CLI;
/// berth.health shows the failing check; the standalone task keeps running.
#[tokio::test]
async fn health_goes_unknown_healthy_unhealthy() -> Result<()> {
    let test_start = now_epoch_secs();
    let env = env("health-flip").await?;
    let check = "test -f /tmp/ok || { echo missing-ok-file; echo on-stderr >&2; exit 3; }";
    let app = checked(
        shell(
            "app",
            "touch /tmp/ok; sleep 12; rm -f /tmp/ok; echo removed; exec sleep 3600",
        ),
        health_check(&["CMD-SHELL", check], INTERVAL, 2, 2, 0),
    );
    let (task, started) = run(&env, "health-flip", vec![app]).await?;
    let mut watch = HealthWatch::default();
    watch.record(&started, "app");

    let healthy = watch_health(&env, &task, "app", "app HEALTHY", 90, &mut watch, |t, _| {
        Ok(container_health(t, "app") == Some("HEALTHY"))
    })
    .await?;
    ensure!(
        task_health(&healthy) == Some("HEALTHY"),
        "the task's only checked essential container is HEALTHY: {healthy}"
    );
    let h = berth_health(&healthy, "app").with_context(|| format!("no berth.health: {healthy}"))?;
    ensure!(h["status"] == "HEALTHY" && h["exitCode"] == 0, "{h}");
    let healthy_checked = stamp(h, "checkedAt", test_start)?;

    let unhealthy = watch_health(
        &env,
        &task,
        "app",
        "app UNHEALTHY",
        90,
        &mut watch,
        |t, _| Ok(container_health(t, "app") == Some("UNHEALTHY")),
    )
    .await?;
    ensure!(
        watch.container.values() == ["UNKNOWN", "HEALTHY", "UNHEALTHY"],
        "container healthStatus went {:?}",
        watch.container.all()
    );
    ensure!(
        watch.task.values() == ["UNKNOWN", "HEALTHY", "UNHEALTHY"],
        "task healthStatus went {:?}",
        watch.task.all()
    );
    let h =
        berth_health(&unhealthy, "app").with_context(|| format!("no berth.health: {unhealthy}"))?;
    ensure!(h["status"] == "UNHEALTHY", "{h}");
    ensure!(h["exitCode"] == 3, "the failing check's exit code: {h}");
    let output = h["output"].as_str().unwrap_or_default();
    for needle in ["missing-ok-file", "on-stderr"] {
        ensure!(
            output.contains(needle),
            "{needle:?} not in the check's output: {h}"
        );
    }
    let checked_at = stamp(h, "checkedAt", test_start)?;
    let received_at = stamp(h, "receivedAt", test_start)?;
    ensure!(
        checked_at > healthy_checked,
        "the deciding failure ({checked_at}) after the pass ({healthy_checked}): {h}"
    );
    ensure!(
        received_at >= checked_at,
        "received ({received_at}) before the check ended ({checked_at}): {h}"
    );

    // The AWS CLI (botocore's model of DescribeTasks) shows the same.
    if std::env::var_os("BERTH_E2E_SKIP_AWS").is_some_and(|v| v == "1") {
        println!("AWS CLI part skipped: BERTH_E2E_SKIP_AWS=1");
    } else {
        let aws = AwsCli::new(&env.api_url(), &env.dir().join("aws"))?;
        let out = aws.ecs(&[
            "describe-tasks",
            "--cluster",
            &env.cluster,
            "--tasks",
            &task,
        ])?;
        let t = &out["tasks"][0];
        ensure!(
            t["healthStatus"] == "UNHEALTHY",
            "aws ecs describe-tasks: {out}"
        );
        ensure!(
            container_health(t, "app") == Some("UNHEALTHY"),
            "aws ecs describe-tasks: {out}"
        );
    }

    // An UNHEALTHY essential container of a standalone task changes only the status: after
    // more failing checks, everything still runs.
    tokio::time::sleep(Duration::from_secs(u64::from(INTERVAL) * 2)).await;
    let later = env.api().describe_task(&env.cluster, &task).await?;
    ensure!(
        later["lastStatus"] == "RUNNING" && later["desiredStatus"] == "RUNNING",
        "an unhealthy standalone task keeps running: {later}"
    );
    let app = container(&later, "app").context("no app")?;
    ensure!(app["lastStatus"] == "RUNNING", "{app}");
    ensure!(app["healthStatus"] == "UNHEALTHY", "{app}");
    ensure!(later["healthStatus"] == "UNHEALTHY", "{later}");

    stop_and_wait(&env, &task).await?;
    env.pass();
    Ok(())
}

/// (b) Failures inside the start period do not count: a check that fails for the first ~15 s
/// (retries 1, startPeriod 60) leaves the container UNKNOWN, never UNHEALTHY, until it passes.
/// The container's log shows that failing checks did run in that time.
#[tokio::test]
async fn failures_in_the_start_period_do_not_count() -> Result<()> {
    let env = env("health-start-period").await?;
    let app = checked(
        shell(
            "app",
            "sleep 15; echo checks-before-ok: $(cat /tmp/checks | wc -l); touch /tmp/ok; \
             exec sleep 3600",
        ),
        health_check(
            &["CMD-SHELL", "echo run >> /tmp/checks; test -f /tmp/ok"],
            INTERVAL,
            2,
            1,
            60,
        ),
    );
    let (task, started) = run(&env, "health-start", vec![app]).await?;
    let mut watch = HealthWatch::default();
    watch.record(&started, "app");
    let healthy = watch_health(&env, &task, "app", "app HEALTHY", 90, &mut watch, |t, w| {
        ensure!(
            !w.container.contains("UNHEALTHY") && !w.task.contains("UNHEALTHY"),
            "a failure inside the start period counted: container {:?}, task {:?}",
            w.container.all(),
            w.task.all()
        );
        Ok(container_health(t, "app") == Some("HEALTHY"))
    })
    .await?;
    ensure!(
        watch.container.values() == ["UNKNOWN", "HEALTHY"],
        "container healthStatus went {:?}",
        watch.container.all()
    );
    ensure!(task_health(&healthy) == Some("HEALTHY"), "{healthy}");
    let log = container_log(&env, &task, "app")?;
    let before: u32 = log
        .lines()
        .find_map(|l| l.strip_prefix("checks-before-ok:"))
        .and_then(|n| n.trim().parse().ok())
        .with_context(|| format!("no check count in the log: {log:?}"))?;
    ensure!(
        before >= 1,
        "no check ran in the first 15 s, so nothing was tested: {log:?}"
    );
    stop_and_wait(&env, &task).await?;
    env.pass();
    Ok(())
}

/// (c) A check that hangs is killed at its timeout and counts as a failure (UNHEALTHY with
/// retries 1); neither it nor anything it started is left in the container.
#[tokio::test]
async fn a_hanging_check_times_out_and_leaves_nothing_behind() -> Result<()> {
    let test_start = now_epoch_secs();
    let env = env("health-hang").await?;
    let app = checked(
        json!({
            "name": "app",
            "image": TEST_IMAGE,
            "essential": true,
            "memory": 32,
            "stopTimeout": 2,
            "command": ["sleep", "3600"],
        }),
        health_check(&["CMD-SHELL", "sleep 300"], INTERVAL, 2, 1, 0),
    );
    let (task, started) = run(&env, "health-hang", vec![app]).await?;
    let mut watch = HealthWatch::default();
    watch.record(&started, "app");
    let unhealthy = watch_health(
        &env,
        &task,
        "app",
        "app UNHEALTHY",
        90,
        &mut watch,
        |t, _| Ok(container_health(t, "app") == Some("UNHEALTHY")),
    )
    .await?;
    ensure!(
        !watch.container.contains("HEALTHY"),
        "a check that never ends passed: {:?}",
        watch.container.all()
    );
    let h =
        berth_health(&unhealthy, "app").with_context(|| format!("no berth.health: {unhealthy}"))?;
    // A killed check has no exit code of its own: null, or -1 as the agent reports it.
    ensure!(
        h["exitCode"].is_null() || h["exitCode"] == -1,
        "a timed-out check's exit code: {h}"
    );
    stamp(h, "checkedAt", test_start)?;
    let runtime_id = container(&unhealthy, "app")
        .and_then(|c| c["runtimeId"].as_str())
        .with_context(|| format!("no runtimeId: {unhealthy}"))?
        .to_owned();

    // Let a few more checks hang and be killed; then, between two checks, the container holds
    // its main process only (a leaked `sleep 300` would stay for minutes).
    tokio::time::sleep(Duration::from_secs(u64::from(INTERVAL) * 2 + 2)).await;
    let main = task_main_pid(&env.namespace, &runtime_id)?
        .with_context(|| format!("containerd has no task {runtime_id}"))?;
    let ns = env.namespace.clone();
    wait_until(
        "the container to hold only its main process",
        timeout(40),
        || {
            let ns = ns.clone();
            let id = runtime_id.clone();
            async move {
                let pids = task_pids(&ns, &id)?;
                if pids == [main] {
                    return Ok(Some(()));
                }
                let listed: Vec<String> = pids
                    .iter()
                    .map(|p| format!("{p}: {}", berth_e2e::procstat::cmdline(*p)))
                    .collect();
                anyhow::bail!("main process {main}; ctr task ps lists {listed:?}")
            }
        },
    )
    .await?;
    let still = env.api().describe_task(&env.cluster, &task).await?;
    ensure!(still["lastStatus"] == "RUNNING", "{still}");
    stop_and_wait(&env, &task).await?;
    env.pass();
    Ok(())
}

/// (d) dependsOn HEALTHY: "app" is not started before "db" is HEALTHY (db's check passes
/// after ~10 s), as the API shows it on every poll and as both containers' clocks say.
#[tokio::test]
async fn depends_on_healthy_waits_for_the_dependency() -> Result<()> {
    let env = env("health-depends").await?;
    let db = checked(
        shell(
            "db",
            "sleep 10; echo db-ready-at $(date +%s); touch /tmp/ok; exec sleep 3600",
        ),
        // The start period keeps the failures before the file exists from counting.
        health_check(&["CMD-SHELL", "test -f /tmp/ok"], INTERVAL, 2, 3, 30),
    );
    let mut app = shell("app", "echo app-started-at $(date +%s); exec sleep 3600");
    app["dependsOn"] = json!([{"containerName": "db", "condition": "HEALTHY"}]);
    let (task, started) = run(&env, "health-deps", vec![db, app]).await?;
    let mut watch = HealthWatch::default();
    watch.record(&started, "db");
    let mut app_status = berth_e2e::Trail::default();
    let running = {
        let app_status = std::cell::RefCell::new(&mut app_status);
        watch_health(&env, &task, "db", "app RUNNING", 120, &mut watch, |t, _| {
            let app = container(t, "app").context("no app container")?;
            let status = app["lastStatus"].as_str().unwrap_or_default();
            app_status.borrow_mut().push(Some(status));
            if status == "RUNNING" {
                ensure!(
                    container_health(t, "db") == Some("HEALTHY"),
                    "app RUNNING while db is not HEALTHY: {t}"
                );
            }
            Ok(status == "RUNNING")
        })
        .await?
    };
    ensure!(
        app_status.all().first().map(String::as_str) != Some("RUNNING"),
        "app was RUNNING at the first look: {:?}",
        app_status.all()
    );
    ensure!(
        watch.container.values() == ["UNKNOWN", "HEALTHY"],
        "db healthStatus went {:?}",
        watch.container.all()
    );
    let h = berth_health(&running, "db").with_context(|| format!("no berth.health: {running}"))?;
    let db_healthy = epoch_secs(&h["checkedAt"]).with_context(|| format!("{h}"))?;
    let db_log = container_log(&env, &task, "db")?;
    let app_log = container_log(&env, &task, "app")?;
    let second = |log: &str, key: &str| -> Result<u64> {
        log.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|n| n.trim().parse().ok())
            .with_context(|| format!("no {key:?} in {log:?}"))
    };
    let db_ready = second(&db_log, "db-ready-at")?;
    let app_start = second(&app_log, "app-started-at")?;
    // `date +%s` rounds down: a start after db's passing check cannot print an earlier second.
    ensure!(
        app_start >= db_ready && app_start as f64 >= db_healthy.floor(),
        "app started at {app_start}, db's file was made at {db_ready} and its deciding check \
         ended at {db_healthy}"
    );
    stop_and_wait(&env, &task).await?;
    env.pass();
    Ok(())
}

/// (d) A HEALTHY dependency that never gets there within its startTimeout stops the task as
/// TaskFailedToStart, naming both containers and the condition; the dependent never runs.
#[tokio::test]
async fn a_dependency_that_never_gets_healthy_fails_the_task() -> Result<()> {
    let env = env("health-never").await?;
    let mut db = checked(
        shell("db", "exec sleep 3600"),
        health_check(&["CMD", "false"], INTERVAL, 2, 2, 0),
    );
    // ECS: the dependency's startTimeout bounds how long its dependents wait for it.
    db["startTimeout"] = json!(8);
    let mut app = shell("app", "exec sleep 3600");
    app["dependsOn"] = json!([{"containerName": "db", "condition": "HEALTHY"}]);
    let (task, _) = run(&env, "health-never", vec![db, app]).await?;
    let stopped = wait_stopped(&env, &task).await?;
    ensure!(stopped["stopCode"] == "TaskFailedToStart", "{stopped}");
    let reason = stopped["stoppedReason"].as_str().unwrap_or_default();
    for needle in ["app", "db", "HEALTHY"] {
        ensure!(
            reason.contains(needle),
            "{needle:?} not in stoppedReason {reason:?}"
        );
    }
    let app = container(&stopped, "app").context("no app container")?;
    ensure!(app["exitCode"].is_null(), "app must never have run: {app}");
    ensure!(
        container_health(&stopped, "db") != Some("HEALTHY"),
        "db never passed a check: {stopped}"
    );
    env.pass();
    Ok(())
}
