//! Services on a fleet of three agents (each its own containerd namespace, cgroup root and
//! network, see `TestEnv::start_host`), driven by the real AWS CLI and boto3 with their own
//! waiters: a rolling update and scaling, the circuit breaker with rollback, replacement of
//! tasks that fail their health checks, and berth-cp killed in the middle of a rolling update.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use berth_e2e::{register, timeout, wait_until, AwsCli, TestEnv, TEST_IMAGE};
use serde_json::{json, Value};

const HOSTS: usize = 3;

/// berth-cp with a short settle time and three hosts, all connected.
async fn fleet(name: &str) -> Result<TestEnv> {
    let mut env = TestEnv::new(name)?;
    env.set_cp_service_settle_ms(500);
    env.start_cp().await?;
    let code = env.create_activation(HOSTS as u32)?;
    for _ in 0..HOSTS {
        env.start_host(Some(&code))?;
    }
    let api = env.api();
    let cluster = env.cluster.clone();
    wait_until("three connected container instances", timeout(60), || {
        let (api, cluster) = (api.clone(), cluster.clone());
        async move {
            let list = api
                .call("ListContainerInstances", json!({"cluster": cluster}))
                .await?;
            let arns = list["containerInstanceArns"].clone();
            if arns.as_array().map_or(0, Vec::len) < HOSTS {
                return Ok(None);
            }
            let d = api
                .call(
                    "DescribeContainerInstances",
                    json!({"cluster": cluster, "containerInstances": arns}),
                )
                .await?;
            let connected = d["containerInstances"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|ci| ci["agentConnected"] == Value::Bool(true))
                .count();
            Ok((connected == HOSTS).then_some(()))
        }
    })
    .await?;
    for i in 0..HOSTS {
        ensure!(
            env.host_namespace(i) == format!("{}-h{}", env.namespace, i + 1),
            "host {i}'s namespace"
        );
    }
    Ok(env)
}

fn sleeper(family: &str, command: Value) -> Value {
    json!({
        "family": family,
        "networkMode": "none",
        "containerDefinitions": [{
            "name": "app", "image": TEST_IMAGE, "memory": 16, "stopTimeout": 1,
            "command": command
        }]
    })
}

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

fn strs(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect()
}

fn events(s: &Value) -> Vec<String> {
    s["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["message"].as_str().map(str::to_owned))
        .collect()
}

/// The service's tasks (DescribeTasks of ListTasks --service-name) with `desired` status.
async fn service_tasks(env: &TestEnv, name: &str, desired: &str) -> Result<Vec<Value>> {
    let api = env.api();
    let listed = api
        .call(
            "ListTasks",
            json!({"cluster": env.cluster, "serviceName": name, "desiredStatus": desired}),
        )
        .await?;
    let arns = strs(&listed["taskArns"]);
    if arns.is_empty() {
        return Ok(Vec::new());
    }
    let d = api
        .call(
            "DescribeTasks",
            json!({"cluster": env.cluster, "tasks": arns}),
        )
        .await?;
    Ok(d["tasks"].as_array().cloned().unwrap_or_default())
}

/// How many tasks run on each container instance (for the report: placement is first-fit).
fn by_instance(tasks: &[Value]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for t in tasks {
        let ci = t["containerInstanceArn"].as_str().unwrap_or("?");
        let short = ci.rsplit('/').next().unwrap_or(ci).to_owned();
        *m.entry(short).or_insert(0) += 1;
    }
    m
}

#[tokio::test]
async fn aws_cli_rolls_a_service_to_a_new_revision_scales_it_and_deletes_it() -> Result<()> {
    let env = fleet("svc-fleet-cli").await?;
    let aws = AwsCli::new(&env.api_url(), &env.dir().join("aws-home"))?;
    let family = format!("fleet-{}", env.id);
    let c = env.cluster.as_str();
    let rev1 = serde_json::to_string(&sleeper(&family, json!(["sleep", "600"])))?;
    let rev2 = serde_json::to_string(&sleeper(&family, json!(["sleep", "601"])))?;
    let td1 = aws.ecs(&["register-task-definition", "--cli-input-json", &rev1])?;
    ensure!(td1["taskDefinition"]["revision"] == 1, "{td1}");
    let name = format!("web-{}", env.id);
    let created = aws.ecs(&[
        "create-service",
        "--cluster",
        c,
        "--service-name",
        &name,
        "--task-definition",
        &family,
        "--desired-count",
        "3",
        "--launch-type",
        "EXTERNAL",
        "--deployment-configuration",
        "minimumHealthyPercent=50,maximumPercent=200",
    ])?;
    ensure!(created["service"]["desiredCount"] == 3, "{created}");
    aws.ecs(&[
        "wait",
        "services-stable",
        "--cluster",
        c,
        "--services",
        &name,
    ])?;
    let first = service_tasks(&env, &name, "RUNNING").await?;
    ensure!(first.len() == 3, "three tasks: {first:#?}");
    eprintln!("revision 1 tasks by instance: {:?}", by_instance(&first));

    let td2 = aws.ecs(&["register-task-definition", "--cli-input-json", &rev2])?;
    let rev2_arn = td2["taskDefinition"]["taskDefinitionArn"]
        .as_str()
        .context("rev 2 arn")?
        .to_owned();
    ensure!(rev2_arn.ends_with(&format!("{family}:2")), "{rev2_arn}");
    aws.ecs(&[
        "update-service",
        "--cluster",
        c,
        "--service",
        &name,
        "--task-definition",
        &format!("{family}:2"),
    ])?;
    aws.ecs(&[
        "wait",
        "services-stable",
        "--cluster",
        c,
        "--services",
        &name,
    ])?;
    let d = aws.ecs(&["describe-services", "--cluster", c, "--services", &name])?;
    let s = &d["services"][0];
    let deployments = s["deployments"].as_array().context("deployments")?;
    ensure!(deployments.len() == 1, "one deployment: {s:#}");
    ensure!(
        deployments[0]["taskDefinition"] == rev2_arn.as_str(),
        "{s:#}"
    );
    ensure!(deployments[0]["rolloutState"] == "COMPLETED", "{s:#}");
    ensure!(s["runningCount"] == 3, "{s:#}");
    let listed = aws.ecs(&["list-tasks", "--cluster", c, "--service-name", &name])?;
    let arns = strs(&listed["taskArns"]);
    ensure!(arns.len() == 3, "three tasks listed: {listed}");
    let mut args = vec!["describe-tasks", "--cluster", c, "--tasks"];
    args.extend(arns.iter().map(String::as_str));
    let described = aws.ecs(&args)?;
    let tasks = described["tasks"].as_array().context("tasks")?;
    ensure!(tasks.len() == 3, "{described}");
    for t in tasks {
        ensure!(
            t["taskDefinitionArn"] == rev2_arn.as_str(),
            "on rev 2: {t:#}"
        );
        ensure!(t["lastStatus"] == "RUNNING", "{t:#}");
    }
    ensure!(
        first
            .iter()
            .all(|t| !arns.iter().any(|a| t["taskArn"] == a.as_str())),
        "every revision 1 task was replaced"
    );
    eprintln!("revision 2 tasks by instance: {:?}", by_instance(tasks));

    for count in [6, 1] {
        aws.ecs(&[
            "update-service",
            "--cluster",
            c,
            "--service",
            &name,
            "--desired-count",
            &count.to_string(),
        ])?;
        aws.ecs(&[
            "wait",
            "services-stable",
            "--cluster",
            c,
            "--services",
            &name,
        ])?;
        let d = aws.ecs(&["describe-services", "--cluster", c, "--services", &name])?;
        ensure!(d["services"][0]["runningCount"] == count, "{d:#}");
        let running = service_tasks(&env, &name, "RUNNING").await?;
        ensure!(running.len() == count, "{count} tasks: {running:#?}");
        eprintln!("{count} tasks by instance: {:?}", by_instance(&running));
    }

    aws.ecs(&[
        "delete-service",
        "--cluster",
        c,
        "--service",
        &name,
        "--force",
    ])?;
    aws.ecs(&[
        "wait",
        "services-inactive",
        "--cluster",
        c,
        "--services",
        &name,
    ])?;
    let stopped = wait_until("every task stopped", timeout(60), || async {
        let left = service_tasks(&env, &name, "RUNNING").await?;
        if !left.is_empty() {
            return Ok(None);
        }
        let stopped = service_tasks(&env, &name, "STOPPED").await?;
        Ok(stopped
            .iter()
            .all(|t| t["lastStatus"] == "STOPPED")
            .then_some(stopped))
    })
    .await?;
    ensure!(
        stopped.len() >= 9,
        "every task of the service stopped: {stopped:#?}"
    );
    env.pass();
    Ok(())
}

/// The boto3 side: creates the service on revision 1, waits with boto3's own waiter, updates
/// it to a revision that exits at once, watches that deployment fail, waits again, and prints
/// what it saw as JSON.
const BOTO3_CIRCUIT_BREAKER: &str = r#"
import json, os, sys, time
import boto3
from botocore.config import Config

endpoint, cluster, name, good, bad = sys.argv[1:6]
ecs = boto3.client("ecs", endpoint_url=endpoint, region_name="us-east-1",
                   aws_access_key_id="berth", aws_secret_access_key="berth",
                   config=Config(retries={"max_attempts": 2}))
waiter_config = {"Delay": 2, "MaxAttempts": 90}
ecs.create_service(cluster=cluster, serviceName=name, taskDefinition=good, desiredCount=2,
                   launchType="EXTERNAL",
                   deploymentConfiguration={
                       "minimumHealthyPercent": 50, "maximumPercent": 200,
                       "deploymentCircuitBreaker": {"enable": True, "rollback": True}})
ecs.get_waiter("services_stable").wait(cluster=cluster, services=[name],
                                       WaiterConfig=waiter_config)
stable = ecs.describe_services(cluster=cluster, services=[name])["services"][0]
update = ecs.update_service(cluster=cluster, service=name, taskDefinition=bad)["service"]
primary = [d for d in update["deployments"] if d["status"] == "PRIMARY"][0]
# Until the deployment shows FAILED, or is gone from the service's deployments.
failed = None
listed = True
deadline = time.time() + 120
while time.time() < deadline and failed is None and listed:
    s = ecs.describe_services(cluster=cluster, services=[name])["services"][0]
    listed = False
    for d in s["deployments"]:
        if d["id"] == primary["id"]:
            listed = True
            if d.get("rolloutState") == "FAILED":
                failed = d
    time.sleep(0.05)
ecs.get_waiter("services_stable").wait(cluster=cluster, services=[name],
                                       WaiterConfig=waiter_config)
final = ecs.describe_services(cluster=cluster, services=[name])["services"][0]
print(json.dumps({"stable": stable, "primary": primary, "failed": failed, "final": final},
                 default=str))
"#;

/// The deployment of the broken revision must be seen FAILED in DescribeServices (ECS keeps a
/// failed deployment listed while the rollback runs), then the service is stable on revision 1.
#[tokio::test]
async fn boto3_circuit_breaker_fails_a_broken_revision_and_rolls_back() -> Result<()> {
    let env = fleet("svc-fleet-boto3").await?;
    let api = env.api();
    let family = format!("cb-{}", env.id);
    let good = register(&api, sleeper(&family, json!(["sleep", "600"]))).await?;
    let bad = register(&api, sleeper(&family, json!(["sh", "-c", "exit 1"]))).await?;
    ensure!(good.ends_with(":1") && bad.ends_with(":2"), "{good} {bad}");
    let name = format!("cb-{}", env.id);
    let seen = tokio::task::spawn_blocking({
        let home = env.dir().join("boto3-home");
        let (url, cluster, name) = (env.api_url(), env.cluster.clone(), name.clone());
        let (good, bad) = (good.clone(), bad.clone());
        move || {
            berth_e2e::boto3(
                &home,
                BOTO3_CIRCUIT_BREAKER,
                &[&url, &cluster, &name, &good, &bad],
            )
        }
    })
    .await??;

    let stable = &seen["stable"];
    ensure!(stable["runningCount"] == 2, "stable on rev 1: {stable:#}");
    ensure!(stable["taskDefinition"] == good.as_str(), "{stable:#}");
    let primary_id = seen["primary"]["id"].as_str().context("primary id")?;
    let failed = &seen["failed"];
    ensure!(
        failed.is_object(),
        "the rev 2 deployment listed as FAILED: {seen:#}"
    );
    ensure!(failed["taskDefinition"] == bad.as_str(), "{failed:#}");
    ensure!(
        failed["rolloutStateReason"] == "ECS deployment circuit breaker: tasks failed to start.",
        "{failed:#}"
    );
    let fin = &seen["final"];
    let ev = events(fin);
    ensure!(
        ev.iter().any(|e| e
            == &format!(
            "(service {name}) (deployment {primary_id}) deployment failed: tasks failed to start."
        )),
        "the circuit breaker's event: {ev:#?}"
    );
    ensure!(
        ev.iter().any(|e| e.starts_with(&format!(
            "(service {name}) (deployment {primary_id}) rolling back to (deployment "
        ))),
        "the rollback's event: {ev:#?}"
    );
    let deployments = fin["deployments"].as_array().context("deployments")?;
    ensure!(
        deployments.len() == 1,
        "one deployment after the rollback: {fin:#}"
    );
    let d = &deployments[0];
    ensure!(d["id"] != primary_id, "{fin:#}");
    ensure!(d["rolloutState"] == "COMPLETED", "{fin:#}");
    ensure!(
        d["taskDefinition"] == good.as_str(),
        "back on rev 1: {fin:#}"
    );
    ensure!(fin["taskDefinition"] == good.as_str(), "{fin:#}");
    ensure!(fin["runningCount"] == 2, "{fin:#}");
    let running = service_tasks(&env, &name, "RUNNING").await?;
    ensure!(running.len() == 2, "{running:#?}");
    for t in &running {
        ensure!(t["taskDefinitionArn"] == good.as_str(), "{t:#}");
    }
    eprintln!(
        "after the rollback, by instance: {:?}",
        by_instance(&running)
    );
    env.pass();
    Ok(())
}

#[tokio::test]
async fn tasks_failing_their_health_checks_are_replaced() -> Result<()> {
    let env = fleet("svc-fleet-health").await?;
    let api = env.api();
    let family = format!("hc-{}", env.id);
    register(
        &api,
        json!({
            "family": family,
            "networkMode": "none",
            "containerDefinitions": [{
                "name": "app", "image": TEST_IMAGE, "memory": 16, "stopTimeout": 1,
                "command": ["sleep", "600"],
                "healthCheck": {"command": ["CMD-SHELL", "exit 1"], "interval": 5,
                                "timeout": 2, "retries": 1, "startPeriod": 0}
            }]
        }),
    )
    .await?;
    let name = format!("hc-{}", env.id);
    api.call(
        "CreateService",
        json!({"cluster": env.cluster, "serviceName": name, "taskDefinition": family,
               "desiredCount": 2, "launchType": "EXTERNAL",
               "healthCheckGracePeriodSeconds": 5}),
    )
    .await?;
    let stopped = wait_until(
        "tasks replaced for failed health checks",
        timeout(120),
        || async {
            let s = service(&env, &name).await?;
            let ev = events(&s);
            if !ev
                .iter()
                .any(|e| e.contains("failed container health checks"))
            {
                return Ok(None);
            }
            let stopped: Vec<Value> = service_tasks(&env, &name, "STOPPED")
                .await?
                .into_iter()
                .filter(|t| t["stoppedReason"] == "Task failed container health checks")
                .collect();
            Ok((!stopped.is_empty()).then_some(stopped))
        },
    )
    .await?;
    for t in &stopped {
        ensure!(t["stopCode"] == "ServiceSchedulerInitiated", "{t:#}");
    }
    let s = service(&env, &name).await?;
    let ev = events(&s);
    let victim = stopped[0]["taskArn"].as_str().context("taskArn")?;
    let victim_id = victim.rsplit('/').next().unwrap_or(victim);
    ensure!(
        ev.iter().any(|e| e.starts_with(&format!(
            "(service {name}) (task {victim_id}) failed container health checks."
        ))),
        "the event names the task: {ev:#?}"
    );
    // Replacements: the service keeps asking for two, and starts more than it first did.
    ensure!(s["desiredCount"] == 2, "{s:#}");
    let started = ev
        .iter()
        .filter(|e| e.starts_with(&format!("(service {name}) has started ")))
        .count();
    ensure!(started >= 2, "a start event after the first: {ev:#?}");
    env.pass();
    Ok(())
}

#[tokio::test]
async fn a_rolling_update_survives_berth_cp_killed_mid_way() -> Result<()> {
    let mut env = fleet("svc-fleet-cpkill").await?;
    let api = env.api();
    let family = format!("roll-{}", env.id);
    register(&api, sleeper(&family, json!(["sleep", "600"]))).await?;
    let rev2 = register(&api, sleeper(&family, json!(["sleep", "601"]))).await?;
    let name = format!("roll-{}", env.id);
    let (desired, max_percent) = (4usize, 150usize);
    let max_tasks = desired * max_percent / 100;
    api.call(
        "CreateService",
        json!({"cluster": env.cluster, "serviceName": name,
               "taskDefinition": format!("{family}:1"), "desiredCount": desired, "launchType": "EXTERNAL",
               "deploymentConfiguration": {"minimumHealthyPercent": 50,
                                           "maximumPercent": max_percent}}),
    )
    .await?;
    wait_until("the service stable on rev 1", timeout(90), || async {
        let s = service(&env, &name).await?;
        let d = s["deployments"].as_array().context("deployments")?;
        Ok(
            (d.len() == 1 && d[0]["rolloutState"] == "COMPLETED" && s["runningCount"] == 4)
                .then_some(()),
        )
    })
    .await?;
    let rev1_tasks = service_tasks(&env, &name, "RUNNING").await?;
    ensure!(rev1_tasks.len() == desired, "{rev1_tasks:#?}");

    let updated = api
        .call(
            "UpdateService",
            json!({"cluster": env.cluster, "service": name, "taskDefinition": rev2}),
        )
        .await?;
    let primary = updated["service"]["deployments"]
        .as_array()
        .context("deployments")?
        .iter()
        .find(|d| d["status"] == "PRIMARY")
        .context("a PRIMARY deployment")?["id"]
        .as_str()
        .context("id")?
        .to_owned();
    // Until tasks of both revisions are up (or 10 s), then SIGKILL.
    let mut samples = Vec::new();
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let live = non_stopped(&env, &name).await?;
        samples.push(live.len());
        let both = live.iter().any(|t| t["taskDefinitionArn"] == rev2.as_str())
            && live.iter().any(|t| t["taskDefinitionArn"] != rev2.as_str());
        if both {
            break;
        }
        ensure!(
            Instant::now() < until,
            "never saw tasks of both revisions before the kill: {samples:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pid = env.cp().pid();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )?;
    env.cp().wait_exit(Duration::from_secs(10)).await?;
    env.start_cp().await?;

    let deadline = Instant::now() + timeout(120);
    let done = loop {
        let live = non_stopped(&env, &name).await?;
        samples.push(live.len());
        let s = service(&env, &name).await?;
        let d = s["deployments"].as_array().context("deployments")?;
        if d.len() == 1
            && d[0]["rolloutState"] == "COMPLETED"
            && s["runningCount"] == desired
            && live.len() == desired
        {
            break s;
        }
        ensure!(
            Instant::now() < deadline,
            "the deployment did not complete: {s:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let d = &done["deployments"][0];
    ensure!(
        d["id"] == primary.as_str(),
        "the PRIMARY before the kill completed: {done:#}"
    );
    ensure!(d["taskDefinition"] == rev2.as_str(), "{done:#}");
    let most = samples.iter().copied().max().unwrap_or(0);
    ensure!(
        most <= max_tasks,
        "at most {max_tasks} non-stopped tasks at any sample, saw {most}: {samples:?}"
    );
    let running = service_tasks(&env, &name, "RUNNING").await?;
    ensure!(running.len() == desired, "{running:#?}");
    for t in &running {
        ensure!(t["taskDefinitionArn"] == rev2.as_str(), "{t:#}");
        ensure!(t["lastStatus"] == "RUNNING", "{t:#}");
    }
    // No task lost: every rev 1 task is STOPPED by the scheduler, none still unaccounted for.
    for t in &rev1_tasks {
        let arn = t["taskArn"].as_str().context("taskArn")?;
        let now = api.describe_task(&env.cluster, arn).await?;
        ensure!(now["lastStatus"] == "STOPPED", "{arn}: {now:#}");
        ensure!(
            now["stopCode"] == "ServiceSchedulerInitiated",
            "{arn}: {now:#}"
        );
    }
    eprintln!("non-stopped task samples: {samples:?}");
    env.pass();
    Ok(())
}

/// The service's tasks that are not STOPPED (by lastStatus), whatever their desired status.
async fn non_stopped(env: &TestEnv, name: &str) -> Result<Vec<Value>> {
    let mut all = service_tasks(env, name, "RUNNING").await?;
    all.extend(service_tasks(env, name, "STOPPED").await?);
    Ok(all
        .into_iter()
        .filter(|t| t["lastStatus"] != "STOPPED")
        .collect())
}
