//! Services through the ECS API against a fake agent (issue #17): a service reaches its desired
//! count and a steady state, a new revision rolls out within the deployment window, a stopped
//! task is replaced, and a forced delete drains the service to INACTIVE.

mod common;

use std::net::SocketAddr;

use berth_cp::config::Settings;
use common::*;
use serde_json::{json, Value};

/// berth-cp (the service scheduler every 100 ms, `settle_ms`, and `extra`'s other settings) and
/// one fake agent registered in `default`.
async fn with_agent(
    tag: &str,
    settle_ms: u64,
    extra: Settings,
) -> (TempDir, berth_cp::server::RunningServer, ReportingAgent) {
    let dir = TempDir::new(tag);
    let server = start_with(
        dir.path(),
        Settings {
            service_interval_ms: Some(100),
            service_settle_ms: Some(settle_ms),
            ..extra
        },
    )
    .await;
    let agent = ReportingAgent::register(dir.path(), server.grpc_addr).await;
    (dir, server, agent)
}

async fn describe(api: SocketAddr, name: &str) -> Value {
    let d = ecs_ok(api, "DescribeServices", json!({"services": [name]})).await;
    d["services"][0].clone()
}

/// Waits until the service has one deployment, COMPLETED, with `running` tasks running.
async fn stable(api: SocketAddr, name: &str, running: u64) -> Value {
    eventually("the service to be stable", || async {
        let s = describe(api, name).await;
        let d = s["deployments"].as_array()?;
        (d.len() == 1 && d[0]["rolloutState"] == "COMPLETED" && s["runningCount"] == running)
            .then_some(s)
    })
    .await
}

fn definition(command: &str) -> Value {
    json!({
        "family": "web",
        "containerDefinitions": [{
            "name": "app", "image": "busybox", "memory": 64, "command": ["sh", "-c", command]
        }]
    })
}

#[tokio::test]
async fn a_service_keeps_its_count_rolls_out_and_drains() {
    let (_dir, server, mut agent) = with_agent("services", 200, Settings::default()).await;
    let api = server.api_addr;
    ecs_ok(api, "RegisterTaskDefinition", definition("sleep 3600")).await;

    // Create: two tasks of revision 1, then a steady state.
    let created = ecs_ok(
        api,
        "CreateService",
        json!({"serviceName": "web", "taskDefinition": "web", "desiredCount": 2,
               "launchType": "EXTERNAL",
               "deploymentConfiguration": {"minimumHealthyPercent": 50, "maximumPercent": 200}}),
    )
    .await;
    let s = &created["service"];
    assert_eq!(
        s["serviceArn"],
        "arn:aws:ecs:us-east-1:000000000000:service/default/web"
    );
    assert_eq!(s["status"], "ACTIVE");
    assert_eq!(s["deployments"][0]["status"], "PRIMARY");
    assert_eq!(s["deployments"][0]["rolloutState"], "IN_PROGRESS");
    let first_deployment = s["deployments"][0]["id"].as_str().unwrap().to_string();
    assert!(
        first_deployment.starts_with("ecs-svc/"),
        "{first_deployment}"
    );

    // The same request again returns it; a different one is refused as ECS words it.
    let again = ecs_ok(
        api,
        "CreateService",
        json!({"serviceName": "web", "taskDefinition": "web", "desiredCount": 2,
               "launchType": "EXTERNAL",
               "deploymentConfiguration": {"minimumHealthyPercent": 50, "maximumPercent": 200}}),
    )
    .await;
    assert_eq!(
        again["service"]["deployments"][0]["id"],
        first_deployment.as_str()
    );
    let (status, err) = ecs(
        api,
        "CreateService",
        json!({"serviceName": "web", "taskDefinition": "web", "desiredCount": 3}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(err["message"], "Creation of service was not idempotent.");

    let (v1, _) = agent.payloads(2, 0).await;
    for arn in &v1 {
        agent.run(arn).await;
    }
    let s = stable(api, "web", 2).await;
    assert_eq!(s["deployments"][0]["id"], first_deployment.as_str());
    let events: Vec<&str> = s["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        events[0], "(service web) has reached a steady state.",
        "{events:?}"
    );
    assert!(events
        .iter()
        .any(|e| e.starts_with("(service web) has started 2 tasks: (task ")));
    let tasks = ecs_ok(api, "ListTasks", json!({"serviceName": "web"})).await;
    assert_eq!(tasks["taskArns"].as_array().unwrap().len(), 2);
    let d = ecs_ok(api, "DescribeTasks", json!({"tasks": [v1[0].clone()]})).await;
    assert_eq!(d["tasks"][0]["group"], "service:web");
    assert_eq!(d["tasks"][0]["startedBy"], first_deployment.as_str());
    let listed = ecs_ok(api, "ListServices", json!({})).await;
    assert_eq!(
        listed["serviceArns"],
        json!(["arn:aws:ecs:us-east-1:000000000000:service/default/web"])
    );

    // A new revision: two new tasks (200 % allows 4), then the old ones stop.
    ecs_ok(api, "RegisterTaskDefinition", definition("sleep 7200")).await;
    let updated = ecs_ok(
        api,
        "UpdateService",
        json!({"service": "web", "taskDefinition": "web"}),
    )
    .await;
    let deployments = updated["service"]["deployments"].as_array().unwrap();
    assert_eq!(deployments.len(), 2);
    assert_eq!(deployments[0]["status"], "PRIMARY");
    assert_eq!(
        deployments[0]["taskDefinition"],
        "arn:aws:ecs:us-east-1:000000000000:task-definition/web:2"
    );
    let (v2, _) = agent.payloads(2, 0).await;
    for arn in &v2 {
        agent.run(arn).await;
    }
    let (_, old) = agent.payloads(0, 2).await;
    let mut old_sorted = old.clone();
    old_sorted.sort();
    let mut v1_sorted = v1.clone();
    v1_sorted.sort();
    assert_eq!(
        old_sorted, v1_sorted,
        "the old revision's tasks are the ones stopped"
    );
    let d = ecs_ok(api, "DescribeTasks", json!({"tasks": [old[0].clone()]})).await;
    assert_eq!(d["tasks"][0]["stopCode"], "ServiceSchedulerInitiated");
    for arn in &old {
        agent.exit(arn, "ServiceSchedulerInitiated").await;
    }
    let s = stable(api, "web", 2).await;
    assert_eq!(
        s["taskDefinition"],
        "arn:aws:ecs:us-east-1:000000000000:task-definition/web:2"
    );

    // A task that exits is replaced.
    agent.exit(&v2[0], "EssentialContainerExited").await;
    let (replacement, _) = agent.payloads(1, 0).await;
    agent.run(&replacement[0]).await;
    stable(api, "web", 2).await;

    // Scaling does not start a deployment.
    let scaled = ecs_ok(
        api,
        "UpdateService",
        json!({"service": "web", "desiredCount": 1}),
    )
    .await;
    assert_eq!(
        scaled["service"]["deployments"].as_array().unwrap().len(),
        1
    );
    let (_, gone) = agent.payloads(0, 1).await;
    agent.exit(&gone[0], "ServiceSchedulerInitiated").await;
    stable(api, "web", 1).await;

    // Delete: refused while scaled above 0, forced drains it to INACTIVE.
    let (status, err) = ecs(api, "DeleteService", json!({"service": "web"})).await;
    assert_eq!(
        (status, err["__type"].as_str()),
        (400, Some("InvalidParameterException"))
    );
    let deleted = ecs_ok(
        api,
        "DeleteService",
        json!({"service": "web", "force": true}),
    )
    .await;
    assert_eq!(deleted["service"]["status"], "DRAINING");
    let (_, last) = agent.payloads(0, 1).await;
    agent.exit(&last[0], "ServiceSchedulerInitiated").await;
    eventually("the service to be INACTIVE", || async {
        (describe(api, "web").await["status"] == "INACTIVE").then_some(())
    })
    .await;
    let listed = ecs_ok(api, "ListServices", json!({})).await;
    assert_eq!(listed["serviceArns"], json!([]));
    let (status, err) = ecs(
        api,
        "UpdateService",
        json!({"service": "web", "desiredCount": 1}),
    )
    .await;
    assert_eq!(
        (status, err["__type"].as_str()),
        (400, Some("ServiceNotActiveException"))
    );
    let (status, err) = ecs(api, "UpdateService", json!({"service": "nope"})).await;
    assert_eq!(
        (status, err["__type"].as_str()),
        (400, Some("ServiceNotFoundException"))
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn bad_service_requests_are_refused_with_the_field_named() {
    let dir = TempDir::new("services-bad");
    let server = start(dir.path()).await;
    let api = server.api_addr;
    ecs_ok(api, "RegisterTaskDefinition", definition("sleep 1")).await;
    for (body, code, words) in [
        (
            json!({"serviceName": "a b", "taskDefinition": "web", "desiredCount": 1}),
            "InvalidParameterException",
            "serviceName",
        ),
        (
            json!({"serviceName": "w", "taskDefinition": "web", "desiredCount": 1, "launchType": "FARGATE"}),
            "InvalidParameterException",
            "FARGATE",
        ),
        (
            json!({"serviceName": "w", "taskDefinition": "web", "desiredCount": 1, "schedulingStrategy": "DAEMON"}),
            "InvalidParameterException",
            "DAEMON",
        ),
        (
            json!({"serviceName": "w", "taskDefinition": "web", "desiredCount": 3,
                "deploymentConfiguration": {"minimumHealthyPercent": 100, "maximumPercent": 100}}),
            "InvalidParameterException",
            "could neither start",
        ),
        (
            json!({"serviceName": "w", "taskDefinition": "web", "desiredCount": -1}),
            "InvalidParameterException",
            "desiredCount",
        ),
        (
            json!({"serviceName": "w", "taskDefinition": "nope", "desiredCount": 1}),
            "ClientException",
            "nope",
        ),
        (
            json!({"serviceName": "w", "desiredCount": 1}),
            "InvalidParameterException",
            "taskDefinition",
        ),
        (
            json!({"cluster": "nope", "serviceName": "w", "taskDefinition": "web", "desiredCount": 1}),
            "ClusterNotFoundException",
            "nope",
        ),
    ] {
        let (status, err) = ecs(api, "CreateService", body.clone()).await;
        assert_eq!(
            (status, err["__type"].as_str()),
            (400, Some(code)),
            "{body}: {err}"
        );
        assert!(
            err["message"].as_str().unwrap().contains(words),
            "{body}: {err}"
        );
    }
    let d = ecs_ok(api, "DescribeServices", json!({"services": ["nope"]})).await;
    assert_eq!(
        d["failures"],
        json!([{"arn": "arn:aws:ecs:us-east-1:000000000000:service/default/nope", "reason": "MISSING"}])
    );
    let (status, _) = ecs(api, "DescribeServices", json!({"services": []})).await;
    assert_eq!(status, 400);
    server.shutdown().await.unwrap();
}

/// A revision whose tasks exit before they are healthy: with the circuit breaker and rollback,
/// the deployment FAILS after ECS's threshold (3 for a desired count of 2) and the service goes
/// back to the revision that completed, stable again.
#[tokio::test]
async fn the_circuit_breaker_fails_a_bad_revision_and_rolls_back() {
    let (_dir, server, mut agent) = with_agent("services-breaker", 100, Settings::default()).await;
    let api = server.api_addr;
    ecs_ok(api, "RegisterTaskDefinition", definition("sleep 3600")).await;
    ecs_ok(
        api,
        "CreateService",
        json!({"serviceName": "web", "taskDefinition": "web:1", "desiredCount": 2,
               "deploymentConfiguration": {"deploymentCircuitBreaker": {"enable": true, "rollback": true}}}),
    )
    .await;
    let (v1, _) = agent.payloads(2, 0).await;
    for arn in &v1 {
        agent.run(arn).await;
    }
    let first = stable(api, "web", 2).await["deployments"][0]["id"].clone();

    ecs_ok(api, "RegisterTaskDefinition", definition("exit 1")).await;
    let updated = ecs_ok(
        api,
        "UpdateService",
        json!({"service": "web", "taskDefinition": "web:2"}),
    )
    .await;
    let bad = updated["service"]["deployments"][0]["id"].clone();

    // The agent fails every revision-2 task at once, runs revision-1 tasks, and stops what it
    // is told to, until the service is stable again.
    let (rolled_back, failed) = drive(&mut agent, api, "web", Some(2), |s| {
        let d = s["deployments"].as_array().unwrap();
        d.len() == 1
            && d[0]["rolloutState"] == "COMPLETED"
            && d[0]["id"] != bad
            && s["runningCount"] == 2
    })
    .await;
    // The breaker trips at the third failure (the threshold for 2 tasks); tasks started in the
    // same batch as the third may fail too, but none is started after it.
    assert!(
        (3..=4).contains(&failed),
        "{failed} revision-2 tasks were started"
    );
    assert_eq!(
        rolled_back["taskDefinition"],
        "arn:aws:ecs:us-east-1:000000000000:task-definition/web:1"
    );
    assert_ne!(
        rolled_back["deployments"][0]["id"], first,
        "the rollback is a new deployment"
    );
    let events: Vec<String> = rolled_back["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_string())
        .collect();
    let failed_event = format!(
        "(service web) (deployment {}) deployment failed: tasks failed to start.",
        bad.as_str().unwrap()
    );
    assert!(events.contains(&failed_event), "{events:#?}");
    assert!(
        events
            .iter()
            .any(|e| e.contains("rolling back to (deployment")),
        "{events:#?}"
    );
    // The history: the failed deployment's rollback succeeded, to the first's revision.
    let history = ecs_ok(api, "ListServiceDeployments", json!({"service": "web"})).await;
    let history = history["serviceDeployments"].as_array().unwrap();
    assert_eq!(history.len(), 2, "{history:#?}");
    assert_eq!(history[0]["status"], "ROLLBACK_SUCCESSFUL");
    assert_eq!(history[1]["status"], "SUCCESSFUL");
    let sd = ecs_ok(
        api,
        "DescribeServiceDeployments",
        json!({"serviceDeploymentArns": [history[0]["serviceDeploymentArn"]]}),
    )
    .await;
    let sd = &sd["serviceDeployments"][0];
    assert_eq!(sd["deploymentCircuitBreaker"]["status"], "TRIGGERED");
    assert_eq!(sd["deploymentCircuitBreaker"]["threshold"], 3);
    assert_eq!(
        sd["rollback"]["serviceRevisionArn"],
        history[1]["targetServiceRevisionArn"]
    );
    server.shutdown().await.unwrap();
}

/// Plays the agent until `done` holds for the service: starts every task it is sent (fails at
/// once those of revision `failing`), stops what it is told to. Returns the service and how
/// many tasks it failed.
async fn drive<F>(
    agent: &mut ReportingAgent,
    api: SocketAddr,
    name: &str,
    failing: Option<i64>,
    done: F,
) -> (Value, usize)
where
    F: Fn(&Value) -> bool,
{
    use berth_proto::v1 as pb;
    let mut failed = 0;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let s = describe(api, name).await;
        if done(&s) {
            return (s, failed);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the service never got there: {s:#}"
        );
        let p =
            tokio::time::timeout(std::time::Duration::from_millis(300), agent.next_payload()).await;
        let Ok(p) = p else { continue };
        agent
            .session
            .send(pb::agent_message::Msg::PayloadAck(pb::PayloadAck {
                seq: p.seq,
            }))
            .await;
        for t in &p.tasks {
            if failing.is_some_and(|r| i64::from(t.revision) == r) {
                failed += 1;
                agent
                    .report(container_change(
                        &t.task_arn,
                        "app",
                        pb::ContainerStatus::Stopped,
                        Some(1),
                    ))
                    .await;
                agent
                    .report(task_change(
                        &t.task_arn,
                        pb::TaskStatus::Stopped,
                        "EssentialContainerExited",
                        1,
                    ))
                    .await;
            } else {
                agent.run(&t.task_arn).await;
            }
        }
        for s in &p.stops {
            agent.exit(&s.task_arn, "ServiceSchedulerInitiated").await;
        }
    }
}

fn is_stable_on(s: &Value, revision: &str) -> bool {
    let d = s["deployments"].as_array().cloned().unwrap_or_default();
    d.len() == 1
        && d[0]["rolloutState"] == "COMPLETED"
        && s["runningCount"] == s["desiredCount"]
        && s["taskDefinition"]
            .as_str()
            .is_some_and(|t| t.ends_with(&format!("/web:{revision}")))
}

fn messages(s: &Value) -> Vec<String> {
    s["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap().to_string())
        .collect()
}

/// The history of a service: each UpdateService that starts a deployment is a service
/// deployment from its source revisions to a target revision; StopServiceDeployment rolls one
/// in progress back to the revision that last succeeded; the revisions describe what ran.
#[tokio::test]
async fn service_deployments_record_rollouts_and_stop_rolls_back() {
    let (_dir, server, mut agent) = with_agent("services-history", 100, Settings::default()).await;
    let api = server.api_addr;
    ecs_ok(api, "RegisterTaskDefinition", definition("sleep 3600")).await;
    ecs_ok(
        api,
        "CreateService",
        json!({"serviceName": "web", "taskDefinition": "web:1", "desiredCount": 2}),
    )
    .await;
    drive(&mut agent, api, "web", None, |s| is_stable_on(s, "1")).await;

    let list = |statuses: Value| async move {
        let mut body = json!({"service": "web"});
        if !statuses.is_null() {
            body["status"] = statuses;
        }
        ecs_ok(api, "ListServiceDeployments", body).await["serviceDeployments"]
            .as_array()
            .unwrap()
            .clone()
    };
    let first = list(Value::Null).await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0]["status"], "SUCCESSFUL");
    assert!(first[0]["finishedAt"].is_number());
    let first_arn = first[0]["serviceDeploymentArn"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        first_arn.starts_with("arn:aws:ecs:us-east-1:000000000000:service-deployment/default/web/"),
        "{first_arn}"
    );
    let rev1 = first[0]["targetServiceRevisionArn"]
        .as_str()
        .unwrap()
        .to_string();

    // A deployment of revision 2 that never gets a task running: stopped, it rolls back.
    ecs_ok(api, "RegisterTaskDefinition", definition("sleep 7200")).await;
    ecs_ok(
        api,
        "UpdateService",
        json!({"service": "web", "taskDefinition": "web:2"}),
    )
    .await;
    let running = list(json!(["IN_PROGRESS"])).await;
    assert_eq!(running.len(), 1, "{running:#?}");
    let second_arn = running[0]["serviceDeploymentArn"]
        .as_str()
        .unwrap()
        .to_string();
    let described = ecs_ok(
        api,
        "DescribeServiceDeployments",
        json!({"serviceDeploymentArns": [second_arn, "arn:aws:ecs:us-east-1:000000000000:service-deployment/default/web/nope"]}),
    )
    .await;
    let sd = &described["serviceDeployments"][0];
    assert_eq!(sd["status"], "IN_PROGRESS");
    assert_eq!(sd["sourceServiceRevisions"][0]["arn"], rev1.as_str());
    assert_eq!(sd["targetServiceRevision"]["requestedTaskCount"], 2);
    assert_eq!(sd["deploymentCircuitBreaker"]["status"], "DISABLED");
    assert_eq!(described["failures"][0]["reason"], "MISSING");

    let stopped = ecs_ok(
        api,
        "StopServiceDeployment",
        json!({"serviceDeploymentArn": second_arn, "stopType": "ROLLBACK"}),
    )
    .await;
    assert_eq!(stopped["serviceDeploymentArn"], second_arn.as_str());
    let (status, err) = ecs(
        api,
        "StopServiceDeployment",
        json!({"serviceDeploymentArn": second_arn}),
    )
    .await;
    assert_eq!(
        (status, err["__type"].as_str()),
        (400, Some("ConflictException"))
    );
    let (_, err) = ecs(
        api,
        "StopServiceDeployment",
        json!({"serviceDeploymentArn": second_arn, "stopType": "ABORT"}),
    )
    .await;
    assert_eq!(err["__type"], "InvalidParameterException");
    let (_, err) = ecs(
        api,
        "StopServiceDeployment",
        json!({"serviceDeploymentArn": "arn:aws:ecs:us-east-1:000000000000:service-deployment/default/web/nope"}),
    )
    .await;
    assert_eq!(err["__type"], "ServiceDeploymentNotFoundException");

    let (s, _) = drive(&mut agent, api, "web", None, |s| is_stable_on(s, "1")).await;
    assert!(
        messages(&s)
            .iter()
            .any(|m| m.contains("stopped: rolling back to (deployment")),
        "{:#?}",
        messages(&s)
    );
    let described = ecs_ok(
        api,
        "DescribeServiceDeployments",
        json!({"serviceDeploymentArns": [second_arn]}),
    )
    .await;
    let sd = &described["serviceDeployments"][0];
    assert_eq!(sd["status"], "ROLLBACK_SUCCESSFUL", "{sd:#}");
    assert_eq!(sd["rollback"]["serviceRevisionArn"], rev1.as_str());
    assert!(sd["rollback"]["reason"]
        .as_str()
        .unwrap()
        .contains("StopServiceDeployment"));
    assert_eq!(list(Value::Null).await.len(), 2);
    assert_eq!(list(json!(["SUCCESSFUL"])).await.len(), 1);

    let revisions = ecs_ok(
        api,
        "DescribeServiceRevisions",
        json!({"serviceRevisionArns": [rev1, "nope"]}),
    )
    .await;
    let r = &revisions["serviceRevisions"][0];
    assert_eq!(
        r["taskDefinition"],
        "arn:aws:ecs:us-east-1:000000000000:task-definition/web:1"
    );
    assert_eq!(
        r["containerImages"],
        json!([{"containerName": "app", "image": "busybox"}])
    );
    assert_eq!(revisions["failures"][0]["reason"], "MISSING");
    let (_, err) = ecs(
        api,
        "DescribeServiceRevisions",
        json!({"serviceRevisionArns": []}),
    )
    .await;
    assert_eq!(err["__type"], "InvalidParameterException");
    server.shutdown().await.unwrap();
}

/// A protected task survives a scale-in; an unprotected one goes. Only service tasks can be
/// protected, and unknown ones are failures.
#[tokio::test]
async fn task_protection_keeps_a_task_through_scale_in() {
    let (_dir, server, mut agent) =
        with_agent("services-protection", 100, Settings::default()).await;
    let api = server.api_addr;
    ecs_ok(api, "RegisterTaskDefinition", definition("sleep 3600")).await;
    ecs_ok(
        api,
        "CreateService",
        json!({"serviceName": "web", "taskDefinition": "web:1", "desiredCount": 3}),
    )
    .await;
    drive(&mut agent, api, "web", None, |s| is_stable_on(s, "1")).await;
    let arns: Vec<String> = ecs_ok(api, "ListTasks", json!({"serviceName": "web"})).await
        ["taskArns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect();
    assert_eq!(arns.len(), 3);
    let keep = arns[1].clone();

    let updated = ecs_ok(
        api,
        "UpdateTaskProtection",
        json!({"tasks": [keep, "0123456789abcdef"], "protectionEnabled": true, "expiresInMinutes": 60}),
    )
    .await;
    assert_eq!(updated["protectedTasks"][0]["taskArn"], keep.as_str());
    assert_eq!(updated["protectedTasks"][0]["protectionEnabled"], true);
    assert!(updated["protectedTasks"][0]["expirationDate"].is_number());
    assert_eq!(updated["failures"][0]["reason"], "MISSING");
    let (_, err) = ecs(
        api,
        "UpdateTaskProtection",
        json!({"tasks": [keep], "protectionEnabled": true, "expiresInMinutes": 5000}),
    )
    .await;
    assert_eq!(err["__type"], "InvalidParameterException");
    let got = ecs_ok(api, "GetTaskProtection", json!({"tasks": [keep, arns[0]]})).await;
    assert_eq!(got["protectedTasks"][0]["protectionEnabled"], true);
    assert_eq!(got["protectedTasks"][1]["protectionEnabled"], false);

    // A task not of a service cannot be protected.
    let run = ecs_ok(api, "RunTask", json!({"taskDefinition": "web:1"})).await;
    let lone = run["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    let refused = ecs_ok(
        api,
        "UpdateTaskProtection",
        json!({"tasks": [lone], "protectionEnabled": true}),
    )
    .await;
    assert_eq!(refused["failures"][0]["reason"], "TASK_NOT_VALID");

    // Scale to 1: the newest unprotected tasks go, the protected one stays.
    ecs_ok(
        api,
        "UpdateService",
        json!({"service": "web", "desiredCount": 1}),
    )
    .await;
    drive(&mut agent, api, "web", None, |s| {
        s["runningCount"] == 1 && s["pendingCount"] == 0
    })
    .await;
    let left = ecs_ok(api, "ListTasks", json!({"serviceName": "web"})).await;
    assert_eq!(left["taskArns"], json!([keep]));

    // Unprotected, it is as any other.
    let off = ecs_ok(
        api,
        "UpdateTaskProtection",
        json!({"tasks": [keep], "protectionEnabled": false}),
    )
    .await;
    assert_eq!(off["protectedTasks"][0]["protectionEnabled"], false);
    assert!(off["protectedTasks"][0].get("expirationDate").is_none());
    server.shutdown().await.unwrap();
}

/// Tasks that keep failing to start, with no circuit breaker: after the third failure in a row
/// the service waits (the throttle) and says so; a new deployment ends the wait.
#[tokio::test]
async fn a_service_whose_tasks_keep_failing_backs_off() {
    use berth_proto::v1 as pb;
    let (_dir, server, mut agent) = with_agent(
        "services-throttle",
        100,
        Settings {
            // Long enough that no start can come within the test's wait below.
            service_throttle_base_ms: Some(600_000),
            ..Settings::default()
        },
    )
    .await;
    let api = server.api_addr;
    ecs_ok(api, "RegisterTaskDefinition", definition("exit 1")).await;
    ecs_ok(
        api,
        "CreateService",
        json!({"serviceName": "web", "taskDefinition": "web:1", "desiredCount": 1}),
    )
    .await;
    let (s, failed) = drive(&mut agent, api, "web", Some(1), |s| {
        messages(s)
            .iter()
            .any(|m| m == "(service web) is unable to consistently start tasks successfully.")
    })
    .await;
    assert_eq!(failed, 3, "the wait starts at the third failure");
    assert_eq!(s["deployments"][0]["failedTasks"], 3);
    // While it waits, nothing is started.
    let quiet =
        tokio::time::timeout(std::time::Duration::from_millis(1500), agent.next_payload()).await;
    assert!(
        quiet.is_err(),
        "a task was started while throttled: {quiet:?}"
    );

    // A new deployment (a working revision) starts at once.
    ecs_ok(api, "RegisterTaskDefinition", definition("sleep 3600")).await;
    ecs_ok(
        api,
        "UpdateService",
        json!({"service": "web", "taskDefinition": "web:2"}),
    )
    .await;
    let p = agent.next_payload().await;
    agent
        .session
        .send(pb::agent_message::Msg::PayloadAck(pb::PayloadAck {
            seq: p.seq,
        }))
        .await;
    assert_eq!(p.tasks.len(), 1);
    assert_eq!(p.tasks[0].revision, 2);
    server.shutdown().await.unwrap();
}

/// berthctl's service commands, and `deploy --wait` following a rollout to its end.
#[tokio::test]
async fn berthctl_creates_describes_and_deploys_a_service() {
    let (_dir, server, mut agent) = with_agent("services-berthctl", 100, Settings::default()).await;
    let api = server.api_addr;
    ecs_ok(api, "RegisterTaskDefinition", definition("sleep 3600")).await;
    let out = berthctl(
        api,
        &[
            "create-service",
            "web",
            "web:1",
            "--desired-count",
            "2",
            "--min-healthy-percent",
            "50",
        ],
    )
    .await
    .unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("SERVICE") && lines[0].contains("DEPLOYMENTS"),
        "{out}"
    );
    assert!(
        lines[1].starts_with("web ") && lines[1].contains("ACTIVE"),
        "{out}"
    );
    drive(&mut agent, api, "web", None, |s| is_stable_on(s, "1")).await;

    let out = berthctl(api, &["describe-services", "web"]).await.unwrap();
    assert!(out.contains("web: deployments"), "{out}");
    assert!(
        out.contains("PRIMARY") && out.contains("COMPLETED"),
        "{out}"
    );
    assert!(out.contains("has reached a steady state."), "{out}");
    let out = berthctl(api, &["list-services"]).await.unwrap();
    assert!(out.contains("service/default/web"), "{out}");
    let out = berthctl(api, &["service-events", "web", "--limit", "1"])
        .await
        .unwrap();
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(
        out.contains("(service web) has reached a steady state."),
        "{out}"
    );

    // deploy --wait returns once the new revision has replaced every task.
    ecs_ok(api, "RegisterTaskDefinition", definition("sleep 7200")).await;
    let (done, _) = tokio::join!(
        berthctl(api, &["deploy", "web", "web:2", "--wait"]),
        drive(&mut agent, api, "web", None, |s| is_stable_on(s, "2"))
    );
    let done = done.unwrap();
    assert!(
        done.starts_with("deployment ecs-svc/") && done.ends_with(" completed"),
        "{done}"
    );

    // A deployment that fails (circuit breaker, no rollback): deploy --wait says so, exit 1.
    berthctl(api, &["update-service", "web", "--circuit-breaker"])
        .await
        .unwrap();
    ecs_ok(api, "RegisterTaskDefinition", definition("exit 1")).await;
    let (failed, _) = tokio::join!(
        berthctl(api, &["deploy", "web", "web:3", "--wait"]),
        drive(&mut agent, api, "web", Some(3), |s| {
            s["deployments"][0]["rolloutState"] == "FAILED"
        })
    );
    let err = failed.unwrap_err().to_string();
    assert!(
        err.contains("failed: ECS deployment circuit breaker"),
        "{err}"
    );

    let (_, err) = ecs(api, "DeleteService", json!({"service": "web"})).await;
    assert_eq!(err["__type"], "InvalidParameterException");
    let out = berthctl(api, &["delete-service", "web", "--force"])
        .await
        .unwrap();
    assert!(out.contains("DRAINING"), "{out}");
    server.shutdown().await.unwrap();
}

/// A task no instance can hold: the service says so in ECS's words, once, not every pass.
#[tokio::test]
async fn a_service_that_cannot_place_says_why() {
    let dir = TempDir::new("services-unplaceable");
    let server = start_with(
        dir.path(),
        Settings {
            service_interval_ms: Some(100),
            ..Settings::default()
        },
    )
    .await;
    let (api, g) = (server.api_addr, server.grpc_addr);
    let _agent = ReportingAgent::register(dir.path(), g).await;
    ecs_ok(
        api,
        "RegisterTaskDefinition",
        json!({"family": "huge", "containerDefinitions": [{
            "name": "app", "image": "busybox", "memory": 4_000_000
        }]}),
    )
    .await;
    ecs_ok(
        api,
        "CreateService",
        json!({"serviceName": "huge", "taskDefinition": "huge", "desiredCount": 1}),
    )
    .await;
    let s = eventually("the placement event", || async {
        let s = describe(api, "huge").await;
        messages(&s)
            .iter()
            .any(|m| m.contains("has insufficient memory available."))
            .then_some(s)
    })
    .await;
    let m = messages(&s);
    assert!(
        m[0].starts_with(
            "(service huge) was unable to place a task because no container instance met all of \
             its requirements. The closest matching (container-instance "
        ),
        "{m:#?}"
    );
    // Several passes later, still one such event.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let m = messages(&describe(api, "huge").await);
    assert_eq!(
        m.iter().filter(|m| m.contains("unable to place")).count(),
        1,
        "{m:#?}"
    );
    server.shutdown().await.unwrap();
}
