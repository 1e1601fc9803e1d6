//! Durability (issue #7): periodic task manifests, instance health from heartbeats, and the
//! task event history.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use berth_cp::admin;
use berth_cp::config::Settings;
use berth_proto::v1 as pb;
use clap::Parser;
use common::*;
use pb::control_message::Msg;
use serde_json::{json, Value};

/// Registers an agent; returns its id and secret.
async fn register(dir: &std::path::Path, g: SocketAddr) -> (String, String) {
    let code = admin::create_activation(&data_dir(dir), "default", 1, 3600).unwrap();
    let reg = grpc(g)
        .await
        .register(register_request("default", code_auth(&code)))
        .await
        .unwrap()
        .into_inner();
    (reg.instance_id, reg.secret)
}

/// Connects and reads Welcome and the first manifest.
async fn connect(g: SocketAddr, id: &str, secret: &str, last_payload_seq: u64) -> FakeAgent {
    let mut agent = FakeAgent::connect(g, id, secret, last_payload_seq)
        .await
        .unwrap();
    assert!(matches!(agent.expect().await, Msg::Welcome(_)));
    assert!(matches!(agent.expect().await, Msg::Manifest(_)));
    agent
}

/// The next manifest's ARNs, skipping heartbeat acks.
async fn next_manifest(agent: &mut FakeAgent) -> Vec<String> {
    loop {
        match agent.expect().await {
            Msg::Manifest(m) => return m.task_arns,
            Msg::HeartbeatAck(_) => continue,
            other => panic!("expected a manifest, got {other:?}"),
        }
    }
}

async fn run_task(api: SocketAddr) -> String {
    let run = ecs_ok(api, "RunTask", json!({"taskDefinition": "web"})).await;
    run["tasks"][0]["taskArn"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn manifests_are_sent_periodically_and_fresh() {
    let dir = TempDir::new("manifest");
    let server = start_with(
        dir.path(),
        Settings {
            manifest_interval_ms: Some(200),
            ..Settings::default()
        },
    )
    .await;
    let (api, g) = (server.api_addr, server.grpc_addr);
    let (id, secret) = register(dir.path(), g).await;
    let mut agent = connect(g, &id, &secret, 0).await;
    assert_eq!(next_manifest(&mut agent).await, Vec::<String>::new());

    ecs_ok(api, "RegisterTaskDefinition", sample_task_definition("web")).await;
    let arn = run_task(api).await;
    assert!(matches!(agent.expect().await, Msg::Payload(p) if p.seq == 1));
    assert_eq!(next_manifest(&mut agent).await, vec![arn.clone()]);

    // Running, then stop requested: desiredStatus STOPPED, lastStatus still RUNNING. The agent
    // still has to stop it, so the manifest keeps it.
    agent
        .state_change(1, task_change(&arn, pb::TaskStatus::Running, "", 1))
        .await;
    ecs_ok(api, "StopTask", json!({"task": arn})).await;
    assert!(matches!(agent.expect().await, Msg::Payload(p) if p.seq == 2));
    assert_eq!(next_manifest(&mut agent).await, vec![arn.clone()]);

    agent
        .state_change(2, task_change(&arn, pb::TaskStatus::Stopped, "", 2))
        .await;
    assert_eq!(next_manifest(&mut agent).await, Vec::<String>::new());
    // And it goes on.
    assert_eq!(next_manifest(&mut agent).await, Vec::<String>::new());
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_default_manifest_interval_sends_nothing_more_soon() {
    let dir = TempDir::new("manifest-default");
    let server = start(dir.path()).await;
    let g = server.grpc_addr;
    let (id, secret) = register(dir.path(), g).await;
    let mut agent = connect(g, &id, &secret, 0).await;
    agent
        .send(pb::agent_message::Msg::Heartbeat(pb::Heartbeat {
            sent_at_ms: 1,
            running_tasks: 0,
            containerd_healthy: true,
        }))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Only the ack: no manifest before 60 s.
    assert!(matches!(agent.expect().await, Msg::HeartbeatAck(_)));
    server.shutdown().await.unwrap();
}

async fn instance(api: SocketAddr, id: &str) -> Value {
    let v = ecs_ok(
        api,
        "DescribeContainerInstances",
        json!({"containerInstances": [id], "include": ["CONTAINER_INSTANCE_HEALTH"]}),
    )
    .await;
    v["containerInstances"][0].clone()
}

async fn heartbeat(agent: &mut FakeAgent, healthy: bool) {
    agent
        .send(pb::agent_message::Msg::Heartbeat(pb::Heartbeat {
            sent_at_ms: 1,
            running_tasks: 0,
            containerd_healthy: healthy,
        }))
        .await;
    assert!(matches!(agent.expect().await, Msg::HeartbeatAck(_)));
}

#[tokio::test]
async fn instance_health_follows_heartbeats_and_the_connection() {
    let dir = TempDir::new("instance-health");
    let server = start(dir.path()).await;
    let (api, g) = (server.api_addr, server.grpc_addr);
    let (id, secret) = register(dir.path(), g).await;

    let ci = instance(api, &id).await;
    assert_eq!(
        ci["healthStatus"],
        json!({"overallStatus": "INSUFFICIENT_DATA", "details": []})
    );
    let mut agent = connect(g, &id, &secret, 0).await;
    let ci = instance(api, &id).await;
    assert_eq!(ci["agentConnected"], true);
    assert_eq!(ci["healthStatus"]["overallStatus"], "INSUFFICIENT_DATA");

    heartbeat(&mut agent, true).await;
    let h = instance(api, &id).await["healthStatus"].clone();
    assert_eq!(h["overallStatus"], "OK", "{h}");
    let d = &h["details"][0];
    assert_eq!(
        (&d["type"], &d["status"]),
        (&json!("CONTAINER_RUNTIME"), &json!("OK"))
    );
    let first_change = d["lastStatusChange"].as_f64().unwrap();
    assert_eq!(d["lastUpdated"].as_f64().unwrap(), first_change);

    tokio::time::sleep(Duration::from_millis(20)).await;
    heartbeat(&mut agent, true).await;
    let d = instance(api, &id).await["healthStatus"]["details"][0].clone();
    assert_eq!(d["lastStatusChange"].as_f64().unwrap(), first_change);
    assert!(d["lastUpdated"].as_f64().unwrap() > first_change, "{d}");

    heartbeat(&mut agent, false).await;
    let h = instance(api, &id).await["healthStatus"].clone();
    assert_eq!(h["overallStatus"], "IMPAIRED", "{h}");
    assert_eq!(h["details"][0]["status"], "IMPAIRED");
    assert!(h["details"][0]["lastStatusChange"].as_f64().unwrap() > first_change);

    // Disconnected: the last report is kept, but nothing current is known.
    drop(agent);
    let h = eventually("the agent shown disconnected", || async {
        let ci = instance(api, &id).await;
        (ci["agentConnected"] == false).then(|| ci["healthStatus"].clone())
    })
    .await;
    assert_eq!(h["overallStatus"], "INSUFFICIENT_DATA");
    assert_eq!(h["details"][0]["status"], "IMPAIRED");

    // Kept across a restart of berth-cp.
    server.shutdown().await.unwrap();
    let server = start(dir.path()).await;
    let (api, g) = (server.api_addr, server.grpc_addr);
    let _agent = connect(g, &id, &secret, 0).await;
    let h = eventually("the agent shown connected", || async {
        let ci = instance(api, &id).await;
        (ci["agentConnected"] == true).then(|| ci["healthStatus"].clone())
    })
    .await;
    assert_eq!(h["overallStatus"], "IMPAIRED", "{h}");

    let out = berthctl(api, &["describe-container-instances", &id]).await;
    assert!(out.lines().next().unwrap().contains("HEALTH"), "{out}");
    assert!(out.lines().nth(1).unwrap().contains("IMPAIRED"), "{out}");
    server.shutdown().await.unwrap();
}

async fn berthctl(api: SocketAddr, args: &[&str]) -> String {
    let endpoint = format!("http://{api}");
    let mut argv = vec!["berthctl", "--endpoint", &endpoint];
    argv.extend_from_slice(args);
    let cli = berth_cp::cli::Cli::try_parse_from(argv).unwrap();
    berth_cp::cli::execute(&cli).await.unwrap()
}

async fn events(api: SocketAddr, path: &str) -> (u16, Value) {
    let resp = reqwest::get(format!("http://{api}{path}")).await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}")),
    )
}

#[tokio::test]
async fn applied_changes_are_the_task_events_once_each_in_order() {
    let dir = TempDir::new("events");
    let server = start(dir.path()).await;
    let (api, g) = (server.api_addr, server.grpc_addr);
    let (id, secret) = register(dir.path(), g).await;
    let mut agent = connect(g, &id, &secret, 0).await;
    ecs_ok(api, "RegisterTaskDefinition", sample_task_definition("web")).await;
    let arn = run_task(api).await;
    let task_id = arn.rsplit('/').next().unwrap().to_string();
    assert!(matches!(agent.expect().await, Msg::Payload(_)));

    let (status, v) = events(api, &format!("/berth/v1/tasks/{task_id}/events")).await;
    assert_eq!((status, v), (200, json!({"events": []})));

    agent
        .state_change(
            1,
            container_change(&arn, "app", pb::ContainerStatus::Running, None),
        )
        .await;
    agent
        .state_change(
            2,
            task_change(&arn, pb::TaskStatus::Running, "", 1_700_000_000_000),
        )
        .await;
    // A resent sequence is acked and not recorded again.
    agent
        .state_change(
            2,
            task_change(&arn, pb::TaskStatus::Running, "", 1_700_000_000_000),
        )
        .await;
    agent
        .state_change(
            1,
            container_change(&arn, "app", pb::ContainerStatus::Running, None),
        )
        .await;
    // The agent restarts (a new session) and resends what it had not seen acked.
    drop(agent);
    let mut agent = connect(g, &id, &secret, 1).await;
    agent
        .state_change(
            2,
            task_change(&arn, pb::TaskStatus::Running, "", 1_700_000_000_000),
        )
        .await;
    agent
        .state_change(
            4,
            container_change(&arn, "app", pb::ContainerStatus::Stopped, Some(137)),
        )
        .await;
    agent
        .state_change(
            5,
            task_change(
                &arn,
                pb::TaskStatus::Stopped,
                "EssentialContainerExited",
                1_700_000_001_500,
            ),
        )
        .await;

    let expected = json!([
        {"seq": 1, "kind": "container", "container": "app", "status": "RUNNING", "exitCode": null, "reason": "", "at": 1_700_000_000.0},
        {"seq": 2, "kind": "task", "container": null, "status": "RUNNING", "exitCode": null, "reason": " reason", "at": 1_700_000_000.0},
        {"seq": 4, "kind": "container", "container": "app", "status": "STOPPED", "exitCode": 137, "reason": "", "at": 1_700_000_000.0},
        {"seq": 5, "kind": "task", "container": null, "status": "STOPPED", "exitCode": null, "reason": "EssentialContainerExited reason", "at": 1_700_000_001.5},
    ]);
    let without_received = |v: &Value| -> Value {
        let mut v = v["events"].clone();
        for e in v.as_array_mut().unwrap() {
            assert!(e["receivedAt"].as_f64().unwrap() > 1_700_000_000.0, "{e}");
            e.as_object_mut().unwrap().remove("receivedAt");
        }
        v
    };
    let encoded_arn = arn.replace(':', "%3A").replace('/', "%2F");
    for reference in [task_id.as_str(), arn.as_str(), encoded_arn.as_str()] {
        let (status, v) = events(api, &format!("/berth/v1/tasks/{reference}/events")).await;
        assert_eq!(status, 200, "{reference}: {v}");
        assert_eq!(without_received(&v), expected, "{reference}");
    }

    let out = berthctl(api, &["events", &arn]).await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 5, "{out}");
    assert!(lines[0].starts_with("SEQ"), "{out}");
    assert!(
        lines[4].starts_with("5 ") && lines[4].contains("EssentialContainerExited reason"),
        "{out}"
    );
    let json_out = berthctl(api, &["--output", "json", "events", &task_id]).await;
    assert_eq!(
        without_received(&serde_json::from_str(&json_out).unwrap()),
        expected
    );

    // Kept across a restart of berth-cp.
    server.shutdown().await.unwrap();
    let server = start(dir.path()).await;
    let api = server.api_addr;
    let (_, v) = events(api, &format!("/berth/v1/tasks/{task_id}/events")).await;
    assert_eq!(without_received(&v), expected);

    // Unknown tasks, another cluster's ARN, and other paths are 404s with ECS-style errors.
    for path in [
        "/berth/v1/tasks/ffffffffffffffffffffffffffffffff/events".to_string(),
        format!(
            "/berth/v1/tasks/{}/events",
            arn.replace("task/default/", "task/other/")
        ),
    ] {
        let (status, v) = events(api, &path).await;
        assert_eq!(status, 404, "{path}: {v}");
        assert_eq!(v["__type"], "ResourceNotFoundException", "{v}");
        assert!(v["message"].as_str().unwrap().contains("not found"), "{v}");
    }
    let (status, v) = events(api, &format!("/berth/v1/tasks/{task_id}/nope")).await;
    assert_eq!(status, 404);
    assert!(v["__type"].is_string());
    let endpoint = format!("http://{api}");
    let cli = berth_cp::cli::Cli::try_parse_from([
        "berthctl",
        "--endpoint",
        &endpoint,
        "events",
        "ghost",
    ])
    .unwrap();
    let err = berth_cp::cli::execute(&cli).await.unwrap_err();
    assert!(
        err.to_string().starts_with("ResourceNotFoundException"),
        "{err}"
    );
    server.shutdown().await.unwrap();
}
