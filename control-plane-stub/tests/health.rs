//! Container health checks through the control plane: healthCheck and dependsOn HEALTHY at
//! registration, and the health the agent reports in DescribeTasks.

mod common;

use berth_cp::admin;
use berth_proto::v1 as pb;
use common::*;
use pb::control_message::Msg;
use serde_json::{json, Value};

/// Registers and connects an agent.
async fn agent(dir: &std::path::Path, g: std::net::SocketAddr) -> FakeAgent {
    let code = admin::create_activation(&data_dir(dir), "default", 1, 3600).unwrap();
    let reg = grpc(g)
        .await
        .register(register_request("default", code_auth(&code)))
        .await
        .unwrap()
        .into_inner();
    let mut agent = FakeAgent::connect(g, &reg.instance_id, &reg.secret, 0)
        .await
        .unwrap();
    assert!(matches!(agent.expect().await, Msg::Welcome(_)));
    assert!(matches!(agent.expect().await, Msg::Manifest(_)));
    agent
}

/// web and db are essential and checked (web waits for db to be HEALTHY); side is checked and
/// not essential; log is neither.
fn definition() -> Value {
    json!({
        "family": "checked",
        "containerDefinitions": [
            {"name": "web", "image": "busybox", "memory": 64,
             "healthCheck": {"command": ["CMD-SHELL", "wget -q -O- http://localhost/ || exit 1"],
                             "interval": 10, "retries": 2},
             "dependsOn": [{"containerName": "db", "condition": "HEALTHY"}]},
            {"name": "db", "image": "busybox", "memory": 64,
             "healthCheck": {"command": ["CMD", "pg_isready"]}},
            {"name": "side", "image": "busybox", "memory": 32, "essential": false,
             "healthCheck": {"command": ["CMD", "true"]}},
            {"name": "log", "image": "busybox", "memory": 32, "essential": false}
        ]
    })
}

fn report(
    arn: &str,
    name: &str,
    health: Option<pb::ContainerHealth>,
    restart_count: i32,
) -> pb::state_change::Change {
    let pb::state_change::Change::Container(mut c) =
        container_change(arn, name, pb::ContainerStatus::Running, None)
    else {
        unreachable!()
    };
    c.health = health;
    c.restart_count = restart_count;
    pb::state_change::Change::Container(c)
}

fn health(status: &str, exit_code: i32, output: &str, checked_at_ms: i64) -> pb::ContainerHealth {
    pb::ContainerHealth {
        status: status.into(),
        checked_at_ms,
        exit_code,
        output: output.into(),
    }
}

fn container<'a>(task: &'a Value, name: &str) -> &'a Value {
    task["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name} in {task}"))
}

async fn describe(api: std::net::SocketAddr, arn: &str) -> Value {
    let d = ecs_ok(api, "DescribeTasks", json!({"tasks": [arn]})).await;
    d["tasks"][0].clone()
}

fn epoch_secs() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[tokio::test]
async fn reported_health_shows_in_describe_tasks() {
    let dir = TempDir::new("health");
    let server = start(dir.path()).await;
    let (api, g) = (server.api_addr, server.grpc_addr);
    let mut agent = agent(dir.path(), g).await;

    let registered = ecs_ok(api, "RegisterTaskDefinition", definition()).await;
    assert_eq!(
        registered["taskDefinition"]["containerDefinitions"][0]["healthCheck"]["retries"], 2,
        "echoed back as given"
    );
    let run = ecs_ok(api, "RunTask", json!({"taskDefinition": "checked"})).await;
    assert_eq!(run["tasks"][0]["healthStatus"], "UNKNOWN", "{run}");
    let arn = run["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    // The agent reads the healthCheck from the definition it is sent.
    let Msg::Payload(p) = agent.expect().await else {
        panic!("expected a payload")
    };
    agent
        .send(pb::agent_message::Msg::PayloadAck(pb::PayloadAck {
            seq: p.seq,
        }))
        .await;
    let web: Value = serde_json::from_str(&p.tasks[0].containers[0].definition_json).unwrap();
    assert_eq!(
        web["healthCheck"]["command"],
        json!(["CMD-SHELL", "wget -q -O- http://localhost/ || exit 1"])
    );

    // Nothing reported yet: UNKNOWN everywhere, ECS's way, and Berth's extension on the
    // checked containers only.
    let t = describe(api, &arn).await;
    assert_eq!(t["healthStatus"], "UNKNOWN");
    for name in ["web", "db", "side", "log"] {
        assert_eq!(container(&t, name)["healthStatus"], "UNKNOWN", "{name}");
    }
    assert_eq!(
        container(&t, "web")["berth"]["health"],
        json!({"status": "UNKNOWN", "output": ""})
    );
    assert!(container(&t, "log")["berth"].get("health").is_none(), "{t}");

    // web turns UNHEALTHY: the container and the task show it.
    let before = epoch_secs();
    agent
        .state_change(
            1,
            report(
                &arn,
                "web",
                Some(health(
                    "UNHEALTHY",
                    1,
                    "wget: can't connect to remote host: Connection refused\n",
                    1_700_000_000_250,
                )),
                0,
            ),
        )
        .await;
    let after = epoch_secs();
    let t = describe(api, &arn).await;
    assert_eq!(t["healthStatus"], "UNHEALTHY", "{t}");
    let web = container(&t, "web");
    assert_eq!(web["healthStatus"], "UNHEALTHY");
    let h = &web["berth"]["health"];
    assert_eq!(h["status"], "UNHEALTHY");
    assert_eq!(h["exitCode"], 1);
    assert_eq!(
        h["output"],
        "wget: can't connect to remote host: Connection refused\n"
    );
    assert_eq!(h["checkedAt"], 1_700_000_000.25);
    let received = h["receivedAt"].as_f64().unwrap();
    assert!(
        before - 0.001 <= received && received <= after + 0.001,
        "{before} <= {received} <= {after}"
    );

    // A later change without health (a restart, say) keeps it.
    agent.state_change(2, report(&arn, "web", None, 1)).await;
    let t = describe(api, &arn).await;
    let web = container(&t, "web");
    assert_eq!(web["berth"]["restartCount"], 1);
    assert_eq!(web["healthStatus"], "UNHEALTHY");
    assert_eq!(
        web["berth"]["health"],
        h.clone(),
        "the last report, unchanged"
    );
    assert_eq!(t["healthStatus"], "UNHEALTHY");

    // HEALTHY once every essential checked container is; the non-essential side's UNHEALTHY
    // and the unchecked log do not count.
    let change = |name: &str, status: &str, at: i64| {
        report(&arn, name, Some(health(status, 0, "ok", at)), 0)
    };
    agent
        .state_change(3, change("web", "HEALTHY", 1_700_000_010_000))
        .await;
    assert_eq!(
        describe(api, &arn).await["healthStatus"],
        "UNKNOWN",
        "db not reported yet"
    );
    agent
        .state_change(4, change("side", "UNHEALTHY", 1_700_000_010_000))
        .await;
    agent
        .state_change(5, change("db", "HEALTHY", 1_700_000_011_000))
        .await;
    let t = describe(api, &arn).await;
    assert_eq!(t["healthStatus"], "HEALTHY", "{t}");
    assert_eq!(container(&t, "db")["healthStatus"], "HEALTHY");
    assert_eq!(container(&t, "side")["healthStatus"], "UNHEALTHY");
    assert_eq!(container(&t, "log")["healthStatus"], "UNKNOWN");
    assert_eq!(container(&t, "web")["berth"]["health"]["output"], "ok");

    // StopTask's answer carries the same fields.
    let stopped = ecs_ok(api, "StopTask", json!({"task": arn})).await;
    assert_eq!(stopped["task"]["healthStatus"], "HEALTHY");

    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn registration_checks_health_checks_and_healthy_dependencies() {
    let dir = TempDir::new("health-register");
    let server = start(dir.path()).await;
    let api = server.api_addr;

    let mut v = definition();
    v["containerDefinitions"][1]
        .as_object_mut()
        .unwrap()
        .remove("healthCheck");
    let (status, e) = ecs(api, "RegisterTaskDefinition", v).await;
    assert_eq!(
        (status, e["__type"].as_str()),
        (400, Some("ClientException")),
        "{e}"
    );
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("HEALTHY on \"db\" can never be met: \"db\" has no healthCheck"),
        "{e}"
    );

    let mut v = definition();
    v["containerDefinitions"][0]["healthCheck"]["interval"] = json!(301);
    let (status, e) = ecs(api, "RegisterTaskDefinition", v).await;
    assert_eq!(
        (status, e["__type"].as_str()),
        (400, Some("InvalidParameterException")),
        "{e}"
    );
    assert_eq!(
        e["message"],
        "containerDefinitions[0].healthCheck.interval: 301 must be between 5 and 300 seconds"
    );

    server.shutdown().await.unwrap();
}
