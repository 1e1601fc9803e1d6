//! Acceptance tests of the walking skeleton (issue #2): berth-cp and berth-agent as real
//! processes, tasks as real containerd containers, driven through the ECS API and the AWS CLI.

use anyhow::{Context, Result};
use berth_e2e::{
    container, exit_code, register, start_task, task_arn, timeout, wait_status, wait_until, AwsCli,
    TestEnv, TEST_IMAGE,
};
use serde_json::{json, Value};

/// Polls DescribeTasks until the task is STOPPED; returns the stopped task and every distinct
/// lastStatus seen on the way, in order.
async fn wait_stopped(env: &TestEnv, task: &str) -> Result<(Value, Vec<String>)> {
    let api = env.api();
    let cluster = env.cluster.as_str();
    let seen = std::cell::RefCell::new(Vec::<String>::new());
    let stopped = wait_until("the task to stop", timeout(120), || {
        let task = api.describe_task(cluster, task);
        let seen = &seen;
        async move {
            let task = task.await?;
            let status = task["lastStatus"].as_str().unwrap_or_default().to_owned();
            let mut seen = seen.borrow_mut();
            if seen.last() != Some(&status) {
                seen.push(status.clone());
            }
            Ok((status == "STOPPED").then_some(task))
        }
    })
    .await?;
    Ok((stopped, seen.into_inner()))
}

/// Waits until none of the task's containers is left in containerd.
async fn wait_no_containers(env: &TestEnv) -> Result<()> {
    wait_until(
        "containerd to hold no containers",
        timeout(60),
        move || async move {
            let left = env.containerd_containers()?;
            Ok(left.is_empty().then_some(()))
        },
    )
    .await
}

/// A task definition whose one essential container runs until it is stopped.
fn long_running(family: &str) -> Value {
    json!({
        "family": family,
        "networkMode": "none",
        "containerDefinitions": [{
            "name": "app",
            "image": TEST_IMAGE,
            "essential": true,
            "memory": 64,
            "command": ["sleep", "3600"],
            "stopTimeout": 2
        }]
    })
}

/// (a) An essential container exits: the task stops, the other container is stopped by
/// signal, exit codes and the stop reason are recorded, and containerd is left clean.
#[tokio::test]
async fn essential_container_exit_stops_the_task() -> Result<()> {
    let env = TestEnv::with_agent("essential-exit").await?;
    let api = env.api();
    let family = format!("two-{}", env.id);
    let task_definition = register(
        &api,
        json!({
            "family": family,
            "networkMode": "none",
            "containerDefinitions": [
                {
                    "name": "main",
                    "image": TEST_IMAGE,
                    "essential": true,
                    "memory": 64,
                    "command": ["sh", "-c", "sleep 1; exit 3"]
                },
                {
                    "name": "sleeper",
                    "image": TEST_IMAGE,
                    "essential": false,
                    "memory": 64,
                    "command": ["sleep", "3600"],
                    "stopTimeout": 2
                }
            ]
        }),
    )
    .await?;

    let started = start_task(&env, &task_definition, json!({"count": 1})).await?;
    assert_eq!(
        started["lastStatus"], "PENDING",
        "RunTask answered {started}"
    );
    assert_eq!(
        started["desiredStatus"], "RUNNING",
        "RunTask answered {started}"
    );
    let task = task_arn(&started)?;

    let (stopped, seen) = wait_stopped(&env, &task).await?;
    eprintln!("lastStatus seen: {seen:?}");
    // RUNNING lasts about a second (main's sleep); polling may miss it on a loaded machine, so
    // a missed RUNNING must at least have left its startedAt behind.
    let order = ["PENDING", "RUNNING", "STOPPED"];
    let positions: Vec<usize> = seen
        .iter()
        .map(|s| order.iter().position(|o| o == s))
        .collect::<Option<_>>()
        .with_context(|| format!("unexpected lastStatus values {seen:?}"))?;
    assert!(positions.is_sorted(), "lastStatus went backwards: {seen:?}");
    if !seen.iter().any(|s| s == "RUNNING") {
        eprintln!("note: polling missed RUNNING ({seen:?}); checking startedAt instead");
    }
    assert!(
        stopped["startedAt"].is_number() || stopped["startedAt"].is_string(),
        "a task that ran has startedAt: {stopped}"
    );

    assert_eq!(exit_code(&stopped, "main"), Some(3), "task: {stopped}");
    let sleeper = exit_code(&stopped, "sleeper");
    assert!(
        matches!(sleeper, Some(137) | Some(143)),
        "sleeper was stopped by a signal, exitCode {sleeper:?}; task: {stopped}"
    );
    for name in ["main", "sleeper"] {
        let c = container(&stopped, name).context("container in task")?;
        assert_eq!(c["lastStatus"], "STOPPED", "{name}: {c}");
    }
    assert_eq!(
        stopped["stopCode"], "EssentialContainerExited",
        "task: {stopped}"
    );
    let reason = stopped["stoppedReason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("main"),
        "stoppedReason {reason:?} names main"
    );

    wait_no_containers(&env).await?;
    env.pass();
    Ok(())
}

/// (b) The same life cycle through the real AWS CLI, waiters included.
#[tokio::test]
async fn aws_cli_runs_and_stops_a_task() -> Result<()> {
    // Only an explicit request skips it (the cgroup v2 guest has no AWS CLI): without one, a
    // missing CLI fails the test.
    if std::env::var_os("BERTH_E2E_SKIP_AWS").is_some_and(|v| v == "1") {
        println!("skipped: BERTH_E2E_SKIP_AWS=1");
        return Ok(());
    }
    let env = TestEnv::with_agent("aws-cli").await?;
    let aws = AwsCli::new(&env.api_url(), &env.dir().join("aws"))?;
    let family = format!("cli-{}", env.id);
    let file = env.dir().join("taskdef.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&long_running(&family))?)?;
    let file = format!("file://{}", file.display());

    let registered = aws.ecs(&["register-task-definition", "--cli-input-json", &file])?;
    assert_eq!(registered["taskDefinition"]["family"], family.as_str());
    assert_eq!(registered["taskDefinition"]["revision"], 1);

    let run = aws.ecs(&[
        "run-task",
        "--cluster",
        &env.cluster,
        "--task-definition",
        &family,
        "--count",
        "1",
    ])?;
    let task = task_arn(&run["tasks"][0])?;

    let described = aws.ecs(&[
        "describe-tasks",
        "--cluster",
        &env.cluster,
        "--tasks",
        &task,
    ])?;
    assert_eq!(described["tasks"][0]["taskArn"], task.as_str());
    assert_eq!(described["tasks"][0]["desiredStatus"], "RUNNING");

    aws.ecs(&[
        "wait",
        "tasks-running",
        "--cluster",
        &env.cluster,
        "--tasks",
        &task,
    ])?;
    let running = aws.ecs(&[
        "describe-tasks",
        "--cluster",
        &env.cluster,
        "--tasks",
        &task,
    ])?;
    assert_eq!(running["tasks"][0]["lastStatus"], "RUNNING");
    assert_eq!(
        running["tasks"][0]["containers"][0]["lastStatus"],
        "RUNNING"
    );

    let reason = "stopped by the e2e test";
    aws.ecs(&[
        "stop-task",
        "--cluster",
        &env.cluster,
        "--task",
        &task,
        "--reason",
        reason,
    ])?;
    aws.ecs(&[
        "wait",
        "tasks-stopped",
        "--cluster",
        &env.cluster,
        "--tasks",
        &task,
    ])?;
    let stopped = aws.ecs(&[
        "describe-tasks",
        "--cluster",
        &env.cluster,
        "--tasks",
        &task,
    ])?;
    let stopped = &stopped["tasks"][0];
    assert_eq!(stopped["lastStatus"], "STOPPED");
    assert_eq!(stopped["stopCode"], "UserInitiated", "task: {stopped}");
    assert_eq!(stopped["stoppedReason"], reason, "task: {stopped}");

    wait_no_containers(&env).await?;
    env.pass();
    Ok(())
}

/// (c) berth-cp restarts (same data dir, same ports) while a task runs: the agent reconnects,
/// the task is still RUNNING, and it can still be stopped.
#[tokio::test]
async fn control_plane_restart_keeps_running_tasks() -> Result<()> {
    let mut env = TestEnv::with_agent("cp-restart").await?;
    let family = format!("restart-{}", env.id);
    let task_definition = register(&env.api(), long_running(&family)).await?;
    let task = task_arn(&start_task(&env, &task_definition, json!({"count": 1})).await?)?;
    wait_status(&env, &task, "RUNNING").await?;

    let before = env.cp_addrs();
    env.stop_cp();
    env.start_cp().await?;
    assert_eq!(env.cp_addrs(), before);

    env.wait_agent_connected().await?;
    assert!(
        env.agent(0).exited().is_none(),
        "the agent must survive a control-plane restart"
    );
    let api = env.api();
    let status = api.task_status(&env.cluster, &task).await?;
    assert_eq!(status, "RUNNING", "after the restart");
    assert!(
        !env.containerd_containers()?.is_empty(),
        "the task's container still runs in containerd"
    );

    api.call(
        "StopTask",
        json!({"cluster": env.cluster, "task": task, "reason": "e2e"}),
    )
    .await?;
    wait_status(&env, &task, "STOPPED").await?;
    wait_no_containers(&env).await?;
    env.pass();
    Ok(())
}

/// (d) An agent with a wrong activation code, or with none, is refused and says why.
#[tokio::test]
async fn agent_without_valid_activation_is_refused() -> Result<()> {
    let mut env = TestEnv::new("activation")?;
    env.start_cp().await?;
    env.api()
        .call("CreateCluster", json!({"clusterName": env.cluster}))
        .await?;
    // A valid code exists, so a refusal is about the code the agent brings.
    env.create_activation(1)?;

    let wrong = env.start_agent(Some("not-a-valid-activation-code"))?;
    let none = env.start_agent(None)?;
    for (index, what) in [
        (wrong, "a wrong activation code"),
        (none, "no activation code"),
    ] {
        let agent = env.agent(index);
        let status = agent
            .wait_exit(timeout(60))
            .await
            .with_context(|| format!("the agent with {what} must exit"))?;
        assert!(!status.success(), "the agent with {what} exited {status}");
        let log = agent.log();
        assert!(
            log.to_lowercase().contains("activation code"),
            "the log of the agent with {what} says why:\n{log}"
        );
    }
    let instances = env
        .api()
        .call("ListContainerInstances", json!({"cluster": env.cluster}))
        .await?;
    assert_eq!(
        instances["containerInstanceArns"],
        json!([]),
        "no container instance was registered"
    );
    env.pass();
    Ok(())
}

/// (e) Malformed task definitions are rejected with a 400 that names the problem, and
/// berth-cp survives them.
#[tokio::test]
async fn malformed_task_definitions_are_rejected() -> Result<()> {
    let mut env = TestEnv::new("malformed")?;
    env.start_cp().await?;
    let api = env.api();
    let family = format!("bad-{}", env.id);
    let def = |containers: Value| json!({"family": family, "networkMode": "none", "containerDefinitions": containers});
    let ok =
        |name: &str| json!({"name": name, "image": TEST_IMAGE, "memory": 64, "essential": true});

    let bad_json = api
        .call_raw("RegisterTaskDefinition", r#"{"family": "x", "#.to_owned())
        .await
        .expect_err("a body that is not JSON is refused");
    // AWS answers a body it cannot parse with SerializationException; a client error either way.
    assert_client_error(
        &bad_json,
        &[
            "SerializationException",
            "InvalidParameterException",
            "ClientException",
        ],
        None,
    );

    let cases = [
        (
            "missing image",
            def(json!([{"name": "c", "memory": 64, "essential": true}])),
            "image",
        ),
        (
            "negative memory",
            def(json!([{"name": "c", "image": TEST_IMAGE, "memory": -1, "essential": true}])),
            "memory",
        ),
        (
            "duplicate container names",
            def(json!([ok("twin"), ok("twin")])),
            "name",
        ),
        (
            "no essential container",
            def(json!([
                {"name": "a", "image": TEST_IMAGE, "memory": 64, "essential": false},
                {"name": "b", "image": TEST_IMAGE, "memory": 64, "essential": false}
            ])),
            "essential",
        ),
    ];
    for (what, request, field) in cases {
        let err = api
            .call("RegisterTaskDefinition", request)
            .await
            .expect_err(what);
        eprintln!("{what}: {err}");
        assert_client_error(
            &err,
            &["InvalidParameterException", "ClientException"],
            Some(field),
        );
    }

    assert!(env.cp().exited().is_none(), "berth-cp is still alive");
    let good = api
        .call("RegisterTaskDefinition", def(json!([ok("c")])))
        .await
        .expect("a valid task definition registers after the bad ones");
    assert_eq!(
        good["taskDefinition"]["revision"], 1,
        "no bad one was stored"
    );
    env.pass();
    Ok(())
}

fn assert_client_error(err: &berth_e2e::ApiError, codes: &[&str], field: Option<&str>) {
    assert_eq!(err.status, 400, "{err}");
    assert!(codes.contains(&err.code.as_str()), "error type: {err}");
    if let Some(field) = field {
        assert!(
            err.message.to_lowercase().contains(field),
            "the message names {field}: {err}"
        );
    }
}
