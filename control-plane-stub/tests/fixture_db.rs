//! A data directory written by the release before the control plane was reshaped (e27fa3c,
//! schema version 4; `tests/fixtures/v0.1-data/`) opens with this berth-cp: its clusters, task
//! definitions, instance (and the instance's credential), tasks, events, security group and
//! secret are all there, and it takes new writes.
//!
//! The fixture was made by `generate_fixture` below, run on e27fa3c:
//! `BERTH_FIXTURE_OUT=control-plane-stub/tests/fixtures/v0.1-data cargo test -p berth-cp --test fixture_db -- --ignored generate_fixture`

mod common;

use std::path::Path;

use berth_cp::admin;
use berth_proto::v1 as pb;
use common::*;
use pb::control_message::Msg;
use serde_json::{json, Value};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/v0.1-data");

fn definition(command: &str) -> Value {
    json!({
        "family": "web",
        "networkMode": "bridge",
        "containerDefinitions": [{
            "name": "app", "image": "busybox", "memory": 64,
            "command": ["sh", "-c", command],
            "portMappings": [{"containerPort": 80}]
        }],
        "tags": [{"key": "made-by", "value": "e27fa3c"}]
    })
}

/// Makes the fixture with the code of the day (run on e27fa3c; see the module doc).
#[tokio::test]
#[ignore]
async fn generate_fixture() {
    let out =
        std::path::PathBuf::from(std::env::var("BERTH_FIXTURE_OUT").expect("BERTH_FIXTURE_OUT"));
    let dir = TempDir::new("fixture-gen");
    let server = start(dir.path()).await;
    let (api, g) = (server.api_addr, server.grpc_addr);

    ecs_ok(api, "CreateCluster", json!({"clusterName": "edge"})).await;
    ecs_ok(api, "RegisterTaskDefinition", definition("sleep 1")).await;
    ecs_ok(api, "RegisterTaskDefinition", definition("sleep 3600")).await;
    ecs_ok(
        api,
        "DeregisterTaskDefinition",
        json!({"taskDefinition": "web:1"}),
    )
    .await;
    let (status, _) = berth(
        api,
        reqwest::Method::PUT,
        "/berth/v1/security-groups/web",
        Some(json!({"description": "web servers",
                    "ingress": [{"protocol": "tcp", "fromPort": 80, "toPort": 80, "cidr": "0.0.0.0/0"}]})),
    )
    .await;
    assert_eq!(status, 201);
    let (status, _) = berth(
        api,
        reqwest::Method::PUT,
        "/berth/v1/secrets/registry",
        Some(json!({"username": "fixture", "password": "not-a-real-password"})),
    )
    .await;
    assert_eq!(status, 201);

    let code = admin::create_activation(&data_dir(dir.path()), "default", 1, 3600).unwrap();
    let mut req = register_request("default", code_auth(&code));
    req.hostname = "fixture-host".into();
    let reg = grpc(g).await.register(req).await.unwrap().into_inner();
    let mut agent = FakeAgent::connect(g, &reg.instance_id, &reg.secret, 0)
        .await
        .unwrap();
    assert!(matches!(agent.expect().await, Msg::Welcome(_)));
    assert!(matches!(agent.expect().await, Msg::Manifest(_)));
    agent
        .send(pb::agent_message::Msg::Heartbeat(pb::Heartbeat {
            sent_at_ms: 1_700_000_000_000,
            running_tasks: 0,
            containerd_healthy: true,
        }))
        .await;
    assert!(matches!(agent.expect().await, Msg::HeartbeatAck(_)));

    // One task that ran and exited, one that runs.
    let run = ecs_ok(
        api,
        "RunTask",
        json!({"taskDefinition": "web", "startedBy": "fixture"}),
    )
    .await;
    let stopped = run["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    next_payload(&mut agent).await;
    agent
        .state_change(
            1,
            container_change(&stopped, "app", pb::ContainerStatus::Running, None),
        )
        .await;
    agent
        .state_change(
            2,
            task_change(&stopped, pb::TaskStatus::Running, "", 1_700_000_001_000),
        )
        .await;
    agent
        .state_change(
            3,
            pb::state_change::Change::Container(pb::ContainerStateChange {
                task_arn: stopped.clone(),
                container_name: "app".into(),
                status: pb::ContainerStatus::Stopped as i32,
                exit_code: Some(3),
                reason: "exited".into(),
                runtime_id: "rt-1".into(),
                at_ms: 1_700_000_002_000,
                ..Default::default()
            }),
        )
        .await;
    agent
        .state_change(
            4,
            task_change(
                &stopped,
                pb::TaskStatus::Stopped,
                "EssentialContainerExited",
                1_700_000_002_500,
            ),
        )
        .await;

    let run = ecs_ok(api, "RunTask", json!({"taskDefinition": "web"})).await;
    let running = run["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    next_payload(&mut agent).await;
    agent
        .state_change(
            5,
            container_change(&running, "app", pb::ContainerStatus::Running, None),
        )
        .await;
    agent
        .state_change(
            6,
            pb::state_change::Change::Task(pb::TaskStateChange {
                task_arn: running.clone(),
                status: pb::TaskStatus::Running as i32,
                at_ms: 1_700_000_003_000,
                network: Some(pb::TaskNetwork {
                    mode: "bridge".into(),
                    private_ipv4: "10.231.0.2".into(),
                    prefix_length: 16,
                    gateway_ipv4: "10.231.0.1".into(),
                    mac_address: "02:42:0a:e7:00:02".into(),
                    bindings: vec![pb::NetworkBinding {
                        container_name: "app".into(),
                        protocol: "tcp".into(),
                        container_port: 80,
                        host_port: 49153,
                        bind_ip: "0.0.0.0".into(),
                    }],
                }),
                ..Default::default()
            }),
        )
        .await;
    drop(agent);
    server.shutdown().await.unwrap();

    // One file: the WAL folded into the database.
    let db = data_dir(dir.path()).join("berth-cp.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    conn.pragma_update(None, "journal_mode", "DELETE").unwrap();
    drop(conn);
    std::fs::create_dir_all(&out).unwrap();
    std::fs::copy(&db, out.join("berth-cp.db")).unwrap();
    let id = |arn: &str| arn.rsplit('/').next().unwrap().to_string();
    let ids = json!({
        "instanceId": reg.instance_id,
        "instanceSecret": reg.secret,
        "stoppedTask": id(&stopped),
        "runningTask": id(&running),
    });
    std::fs::write(
        out.join("ids.json"),
        serde_json::to_string_pretty(&ids).unwrap(),
    )
    .unwrap();
}

/// A copy of the fixture in a directory of its own (the checked-in file is never opened).
fn copy_fixture(dir: &Path) -> Value {
    let data = data_dir(dir);
    std::fs::create_dir_all(&data).unwrap();
    std::fs::copy(
        Path::new(FIXTURE).join("berth-cp.db"),
        data.join("berth-cp.db"),
    )
    .unwrap();
    serde_json::from_str(&std::fs::read_to_string(Path::new(FIXTURE).join("ids.json")).unwrap())
        .unwrap()
}

#[tokio::test]
async fn old_data_dir_opens_with_tasks_and_instances_intact() {
    let dir = TempDir::new("fixture");
    let ids = copy_fixture(dir.path());
    let (instance, secret) = (
        ids["instanceId"].as_str().unwrap(),
        ids["instanceSecret"].as_str().unwrap(),
    );
    let (stopped, running) = (
        ids["stoppedTask"].as_str().unwrap(),
        ids["runningTask"].as_str().unwrap(),
    );
    let server = start(dir.path()).await;
    let (api, g) = (server.api_addr, server.grpc_addr);

    // The schema is current.
    let version: i64 = rusqlite::Connection::open(data_dir(dir.path()).join("berth-cp.db"))
        .unwrap()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert!(version >= 4, "schema version {version}");

    // Clusters.
    let c = ecs_ok(api, "ListClusters", json!({})).await;
    assert_eq!(
        c["clusterArns"],
        json!([
            "arn:aws:ecs:us-east-1:000000000000:cluster/default",
            "arn:aws:ecs:us-east-1:000000000000:cluster/edge"
        ])
    );
    let c = ecs_ok(api, "DescribeClusters", json!({"clusters": ["default"]})).await;
    assert_eq!(
        c["clusters"][0]["registeredContainerInstancesCount"], 1,
        "{c}"
    );
    assert_eq!(c["clusters"][0]["runningTasksCount"], 1);
    assert_eq!(c["clusters"][0]["pendingTasksCount"], 0);

    // Task definitions: revision 1 deregistered, 2 active, tags kept.
    let d = ecs_ok(
        api,
        "DescribeTaskDefinition",
        json!({"taskDefinition": "web:1"}),
    )
    .await;
    assert_eq!(d["taskDefinition"]["status"], "INACTIVE");
    assert_eq!(
        d["taskDefinition"]["containerDefinitions"][0]["command"],
        json!(["sh", "-c", "sleep 1"])
    );
    let d = ecs_ok(
        api,
        "DescribeTaskDefinition",
        json!({"taskDefinition": "web", "include": ["TAGS"]}),
    )
    .await;
    assert_eq!(d["taskDefinition"]["revision"], 2);
    assert_eq!(d["taskDefinition"]["status"], "ACTIVE");
    assert_eq!(d["tags"], json!([{"key": "made-by", "value": "e27fa3c"}]));

    // The instance, its resources, attributes and runtime health.
    let l = ecs_ok(api, "ListContainerInstances", json!({})).await;
    let instance_arn =
        format!("arn:aws:ecs:us-east-1:000000000000:container-instance/default/{instance}");
    assert_eq!(l["containerInstanceArns"], json!([instance_arn]));
    let d = ecs_ok(
        api,
        "DescribeContainerInstances",
        json!({"containerInstances": [instance]}),
    )
    .await;
    let ci = &d["containerInstances"][0];
    assert_eq!(ci["agentConnected"], false);
    assert_eq!(ci["runningTasksCount"], 1);
    assert_eq!(ci["versionInfo"]["agentVersion"], "0.1.0");
    let registered: Vec<(String, i64)> = ci["registeredResources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["type"] == "INTEGER")
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["integerValue"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        registered,
        [("CPU".to_string(), 2048), ("MEMORY".to_string(), 4096)]
    );
    assert!(
        ci["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["name"] == "berth.network-modes" && a["value"] == "bridge,host"),
        "{ci}"
    );

    // Tasks: the running one with its binding, the stopped one with its exit.
    let d = ecs_ok(api, "DescribeTasks", json!({"tasks": [running, stopped]})).await;
    let (r, s) = (&d["tasks"][0], &d["tasks"][1]);
    assert_eq!(r["lastStatus"], "RUNNING", "{r}");
    assert_eq!(r["desiredStatus"], "RUNNING");
    assert_eq!(
        r["taskDefinitionArn"],
        "arn:aws:ecs:us-east-1:000000000000:task-definition/web:2"
    );
    assert_eq!(r["containerInstanceArn"], instance_arn.as_str());
    assert_eq!(
        r["containers"][0]["networkBindings"],
        json!([{"bindIP": "0.0.0.0", "containerPort": 80, "hostPort": 49153, "protocol": "tcp"}])
    );
    assert_eq!(s["lastStatus"], "STOPPED", "{s}");
    assert_eq!(s["stopCode"], "EssentialContainerExited");
    assert_eq!(s["stoppedReason"], "EssentialContainerExited reason");
    assert_eq!(s["startedBy"], "fixture");
    assert_eq!(s["containers"][0]["exitCode"], 3);
    assert_eq!(s["containers"][0]["reason"], "exited");
    assert_eq!(s["containers"][0]["lastStatus"], "STOPPED");

    // Events, security group, secret.
    let (status, e) = berth(
        api,
        reqwest::Method::GET,
        &format!("/berth/v1/tasks/{stopped}/events"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let seen: Vec<(u64, String)> = e["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["seq"].as_u64().unwrap(),
                e["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (1, "RUNNING".into()),
            (2, "RUNNING".into()),
            (3, "STOPPED".into()),
            (4, "STOPPED".into())
        ]
    );
    let (_, groups) = berth(api, reqwest::Method::GET, "/berth/v1/security-groups", None).await;
    assert_eq!(groups["securityGroups"][0]["groupName"], "web");
    assert_eq!(
        groups["securityGroups"][0]["ingress"],
        json!([{"cidr": "0.0.0.0/0", "fromPort": 80, "protocol": "tcp", "toPort": 80}])
    );
    let (_, secrets) = berth(api, reqwest::Method::GET, "/berth/v1/secrets", None).await;
    assert_eq!(secrets["secrets"][0]["name"], "registry");

    // The instance's credential still works, and the session resumes where it was.
    let mut agent = FakeAgent::connect(g, instance, secret, 2).await.unwrap();
    match agent.expect().await {
        Msg::Welcome(w) => assert_eq!(w.last_state_change_seq, 6),
        other => panic!("expected Welcome, got {other:?}"),
    }
    match agent.expect().await {
        Msg::Manifest(m) => assert_eq!(
            m.task_arns,
            [format!(
                "arn:aws:ecs:us-east-1:000000000000:task/default/{running}"
            )]
        ),
        other => panic!("expected a manifest, got {other:?}"),
    }

    // New writes: a third revision, a stop request the agent receives.
    let d = ecs_ok(api, "RegisterTaskDefinition", definition("sleep 60")).await;
    assert_eq!(d["taskDefinition"]["revision"], 3);
    let s = ecs_ok(
        api,
        "StopTask",
        json!({"task": running, "reason": "after the upgrade"}),
    )
    .await;
    assert_eq!(s["task"]["desiredStatus"], "STOPPED");
    let p = next_payload(&mut agent).await;
    assert_eq!(
        p.seq, 3,
        "payloads continue after the two the old release sent"
    );
    assert_eq!(
        p.stops
            .iter()
            .map(|s| (s.task_arn.as_str(), s.reason.as_str()))
            .collect::<Vec<_>>(),
        [(
            format!("arn:aws:ecs:us-east-1:000000000000:task/default/{running}").as_str(),
            "after the upgrade"
        )]
    );
    drop(agent);
    server.shutdown().await.unwrap();
}
