//! Services through the ECS API against a fake agent (issue #17): a service reaches its desired
//! count and a steady state, a new revision rolls out within the deployment window, a stopped
//! task is replaced, and a forced delete drains the service to INACTIVE.

mod common;

use std::net::SocketAddr;

use berth_cp::config::Settings;
use common::*;
use serde_json::{json, Value};

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
    let dir = TempDir::new("services");
    let server = start_with(
        dir.path(),
        Settings {
            service_interval_ms: Some(100),
            service_settle_ms: Some(200),
            ..Settings::default()
        },
    )
    .await;
    let (api, g) = (server.api_addr, server.grpc_addr);
    let mut agent = ReportingAgent::register(dir.path(), g).await;
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
    use berth_proto::v1 as pb;
    let dir = TempDir::new("services-breaker");
    let server = start_with(
        dir.path(),
        Settings {
            service_interval_ms: Some(100),
            service_settle_ms: Some(100),
            ..Settings::default()
        },
    )
    .await;
    let (api, g) = (server.api_addr, server.grpc_addr);
    let mut agent = ReportingAgent::register(dir.path(), g).await;
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
    let mut failed = 0;
    let rolled_back = loop {
        let s = describe(api, "web").await;
        let d = s["deployments"].as_array().unwrap();
        if d.len() == 1
            && d[0]["rolloutState"] == "COMPLETED"
            && d[0]["id"] != bad
            && s["runningCount"] == 2
        {
            break s;
        }
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
            if t.revision == 2 {
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
    };
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
    server.shutdown().await.unwrap();
}
