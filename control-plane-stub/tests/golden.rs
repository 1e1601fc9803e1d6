//! The ECS JSON API byte for byte: one scenario through every operation berth-cp has (and the
//! Berth REST routes), each response's status, content type and raw body compared with
//! `tests/golden/ecs_transcript.txt`. The transcript was recorded with the release before the
//! control plane was reshaped (e27fa3c, issue #16), so a change of member order, number format
//! or error wording shows up here. Only what differs between runs is normalised: generated ids
//! (each replaced by `<id-N>`, numbered in order of first appearance, so the same id stays the
//! same placeholder) and timestamps within a day of now (`<ts>`).
//!
//! `BERTH_UPDATE_GOLDEN=1 cargo test -p berth-cp --test golden` rewrites the transcript.

mod common;

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;

use berth_cp::admin;
use berth_proto::v1 as pb;
use common::*;
use pb::control_message::Msg;
use serde_json::{json, Value};

const GOLDEN: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/golden/ecs_transcript.txt"
);

/// Every response of the scenario, as recorded.
struct Transcript {
    api: SocketAddr,
    client: reqwest::Client,
    entries: Vec<String>,
}

impl Transcript {
    async fn record(&mut self, what: String, req: reqwest::RequestBuilder) -> Value {
        let resp = req.send().await.expect("request sent");
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = resp.text().await.unwrap();
        self.entries
            .push(format!("=== {what}\n{status} {content_type}\n{body}\n"));
        serde_json::from_str(&body).unwrap_or(Value::Null)
    }

    async fn ecs(&mut self, op: &str, body: Value) -> Value {
        let req = self
            .client
            .post(format!("http://{}/", self.api))
            .header(
                "X-Amz-Target",
                format!("AmazonEC2ContainerServiceV20141113.{op}"),
            )
            .header("Content-Type", "application/x-amz-json-1.1")
            .body(body.to_string());
        self.record(format!("{op} {body}"), req).await
    }

    async fn ecs_raw(&mut self, target: &str, body: &str) -> Value {
        let req = self
            .client
            .post(format!("http://{}/", self.api))
            .header("X-Amz-Target", target)
            .header("Content-Type", "application/x-amz-json-1.1")
            .body(body.to_string());
        self.record(format!("POST / {target} {body}"), req).await
    }

    async fn berth(&mut self, method: reqwest::Method, path: &str, body: Option<&str>) -> Value {
        let mut req = self
            .client
            .request(method.clone(), format!("http://{}{path}", self.api));
        if let Some(b) = body {
            req = req.body(b.to_string());
        }
        self.record(format!("{method} {path} {}", body.unwrap_or("")), req)
            .await
    }
}

fn is_hex(c: char) -> bool {
    c.is_ascii_digit() || ('a'..='f').contains(&c)
}

/// The length of a generated id at the start of `s`: a hyphenated UUID, or 32 or 17 hex digits
/// (task and instance ids; the ids of security groups and network interfaces). A run of digits
/// alone counts only after an id's `-` or `/` (`eni-`, `task/`): elsewhere it is a number, and a
/// random id is all digits once in about 3,000 tries for 17 characters.
fn id_len(s: &[char], prefixed: bool) -> Option<usize> {
    let run = |from: usize| s[from..].iter().take_while(|c| is_hex(**c)).count();
    let mut at = 0;
    let mut uuid = true;
    for (i, n) in [8, 4, 4, 4, 12].into_iter().enumerate() {
        if run(at) < n || (i < 4 && s.get(at + n) != Some(&'-')) {
            uuid = false;
            break;
        }
        at += n + usize::from(i < 4);
    }
    if uuid && run(at - 12) == 12 {
        return Some(at);
    }
    let n = run(0);
    ((n == 32 || n == 17) && (prefixed || s[..n].iter().any(|c| c.is_ascii_alphabetic())))
        .then_some(n)
}

/// The transcript with generated ids and current timestamps replaced (see the module doc).
fn normalise(text: &str, now_secs: f64) -> String {
    let s: Vec<char> = text.chars().collect();
    let mut ids: HashMap<String, usize> = HashMap::new();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < s.len() {
        let boundary = i == 0 || !s[i - 1].is_ascii_alphanumeric();
        if boundary {
            let prefixed = i > 0 && matches!(s[i - 1], '-' | '/');
            if let Some(n) = id_len(&s[i..], prefixed)
                .filter(|n| !s.get(i + n).is_some_and(char::is_ascii_alphanumeric))
            {
                let id: String = s[i..i + n].iter().collect();
                let next = ids.len() + 1;
                let k = *ids.entry(id).or_insert(next);
                write!(out, "<id-{k}>").unwrap();
                i += n;
                continue;
            }
            if s[i].is_ascii_digit() {
                let mut j = i;
                while j < s.len() && (s[j].is_ascii_digit() || s[j] == '.') {
                    j += 1;
                }
                let number: String = s[i..j].iter().collect();
                if let Ok(v) = number.parse::<f64>() {
                    let secs = if v > 1e12 { v / 1000.0 } else { v };
                    if (secs - now_secs).abs() < 86_400.0 {
                        out.push_str("<ts>");
                        i = j;
                        continue;
                    }
                }
                out.push_str(&number);
                i = j;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

fn binding(container: &str, protocol: &str, port: u32, host_port: u32) -> pb::NetworkBinding {
    pb::NetworkBinding {
        container_name: container.into(),
        protocol: protocol.into(),
        container_port: port,
        host_port,
        bind_ip: "0.0.0.0".into(),
    }
}

fn running(arn: &str, network: pb::TaskNetwork) -> pb::state_change::Change {
    pb::state_change::Change::Task(pb::TaskStateChange {
        task_arn: arn.into(),
        status: pb::TaskStatus::Running as i32,
        at_ms: 1_700_000_001_000,
        pull_started_at_ms: 1_700_000_000_100,
        pull_stopped_at_ms: 1_700_000_000_600,
        network: Some(network),
        ..Default::default()
    })
}

fn container_running(
    arn: &str,
    name: &str,
    health: Option<pb::ContainerHealth>,
) -> pb::state_change::Change {
    pb::state_change::Change::Container(pb::ContainerStateChange {
        task_arn: arn.into(),
        container_name: name.into(),
        status: pb::ContainerStatus::Running as i32,
        runtime_id: format!("{name}-runtime"),
        at_ms: 1_700_000_000_900,
        health,
        image_digest: "sha256:5b0bcabd1ed22e9fb1310cf6c2dec7cdef19f0ad69efa1f392e94a4333501270"
            .into(),
        ..Default::default()
    })
}

/// Runs the scenario and returns its transcript, normalised.
async fn scenario() -> String {
    let dir = TempDir::new("golden");
    let server = start(dir.path()).await;
    let (api, g) = (server.api_addr, server.grpc_addr);
    let mut t = Transcript {
        api,
        client: reqwest::Client::new(),
        entries: Vec::new(),
    };

    // Clusters.
    t.ecs("CreateCluster", json!({"clusterName": "golden-extra"}))
        .await;
    t.ecs("CreateCluster", json!({"clusterName": "bad name!"}))
        .await;
    t.ecs("ListClusters", json!({})).await;
    t.ecs("ListClusters", json!({"maxResults": 1})).await;
    t.ecs(
        "DescribeClusters",
        json!({"clusters": ["default", "golden-extra", "nope"]}),
    )
    .await;

    // Task definitions.
    let web = json!({
        "family": "web",
        "networkMode": "bridge",
        "cpu": "512",
        "memory": "1 GB",
        "containerDefinitions": [{
            "name": "app",
            "image": "docker.io/library/busybox:latest",
            "essential": true,
            "memoryReservation": 128,
            "command": ["httpd", "-f", "-p", "80"],
            "environment": [{"name": "MODE", "value": "golden"}, {"name": "A", "value": "1"}],
            "portMappings": [
                {"containerPort": 80, "protocol": "tcp"},
                {"containerPort": 53, "hostPort": 5353, "protocol": "udp"}
            ],
            "healthCheck": {"command": ["CMD-SHELL", "wget -q -O- localhost || exit 1"], "interval": 10},
            "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": "g"}}
        }, {
            "name": "sidecar",
            "image": "busybox",
            "essential": false,
            "memory": 64,
            "dependsOn": [{"containerName": "app", "condition": "START"}]
        }],
        "tags": [{"key": "team", "value": "edge"}]
    });
    t.ecs("RegisterTaskDefinition", web.clone()).await;
    t.ecs("RegisterTaskDefinition", web).await;
    t.ecs(
        "RegisterTaskDefinition",
        json!({
            "family": "vpc",
            "networkMode": "awsvpc",
            "containerDefinitions": [{
                "name": "api", "image": "busybox", "memory": 64,
                "portMappings": [{"containerPort": 8080}]
            }]
        }),
    )
    .await;
    t.ecs(
        "RegisterTaskDefinition",
        json!({
            "family": "big",
            "containerDefinitions": [{"name": "hog", "image": "busybox", "memory": 8192}]
        }),
    )
    .await;
    t.ecs(
        "RegisterTaskDefinition",
        json!({"family": "broken", "containerDefinitions": [{"name": "x", "memory": 2}]}),
    )
    .await;
    t.ecs(
        "DescribeTaskDefinition",
        json!({"taskDefinition": "web", "include": ["TAGS"]}),
    )
    .await;
    t.ecs("DescribeTaskDefinition", json!({"taskDefinition": "web:1"}))
        .await;
    t.ecs(
        "DescribeTaskDefinition",
        json!({"taskDefinition": "missing"}),
    )
    .await;
    t.ecs("ListTaskDefinitions", json!({})).await;
    t.ecs(
        "ListTaskDefinitions",
        json!({"familyPrefix": "web", "sort": "DESC", "maxResults": 1}),
    )
    .await;
    t.ecs(
        "DeregisterTaskDefinition",
        json!({"taskDefinition": "web:1"}),
    )
    .await;
    t.ecs("ListTaskDefinitions", json!({"status": "INACTIVE"}))
        .await;

    // Tasks before any instance.
    t.ecs("RunTask", json!({"taskDefinition": "web"})).await;

    // An instance that runs every network mode.
    let code = admin::create_activation(&data_dir(dir.path()), "default", 1, 3600).unwrap();
    let mut req = register_request("default", code_auth(&code));
    // (register_request's attributes include ecs.availability-zone lab-1a.)
    req.attributes[0].value = "bridge,host,none,awsvpc".into();
    req.attributes.push(pb::Attribute {
        name: "ecs.capability.task-eni".into(),
        value: String::new(),
    });
    req.resources.push(pb::Resource {
        name: "PORTS".into(),
        r#type: "STRINGSET".into(),
        integer_value: 0,
        string_set_value: vec!["22".into()],
    });
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
    t.ecs("ListContainerInstances", json!({})).await;
    t.ecs(
        "DescribeContainerInstances",
        json!({"containerInstances": [reg.instance_id.clone(), "nope"]}),
    )
    .await;

    // Security groups and secrets (Berth REST).
    use reqwest::Method;
    t.berth(
        Method::PUT,
        "/berth/v1/security-groups/web-sg",
        Some(r#"{"description": "web", "ingress": ["tcp:80:0.0.0.0/0", "udp:53:10.0.0.0/8"]}"#),
    )
    .await;
    t.berth(
        Method::PUT,
        "/berth/v1/security-groups/web-sg",
        Some(r#"{"description": "web", "ingress": [{"protocol": "tcp", "fromPort": 80, "toPort": 80, "cidr": "0.0.0.0/0"}, {"protocol": "udp", "fromPort": 53, "cidr": "10.0.0.0/8"}]}"#),
    )
    .await;
    t.berth(
        Method::PUT,
        "/berth/v1/security-groups/web-sg",
        Some(r#"{"description": "web", "ingress": [{"protocol": "tcp", "fromPort": 8080, "toPort": 8090, "cidr": "10.0.0.0/8"}]}"#),
    )
    .await;
    t.berth(
        Method::PUT,
        "/berth/v1/security-groups/bad",
        Some("{not json"),
    )
    .await;
    t.berth(Method::GET, "/berth/v1/security-groups", None)
        .await;
    t.berth(Method::GET, "/berth/v1/security-groups/web-sg", None)
        .await;
    t.berth(Method::GET, "/berth/v1/security-groups/nope", None)
        .await;
    t.berth(
        Method::PUT,
        "/berth/v1/secrets/registry-login",
        Some(r#"{"username": "u", "password": "p"}"#),
    )
    .await;
    t.berth(
        Method::PUT,
        "/berth/v1/secrets/bad",
        Some(r#"{"username": 1}"#),
    )
    .await;
    t.berth(Method::GET, "/berth/v1/secrets", None).await;

    // A bridge task: placed, running with its bindings and health, stopped.
    let run = t
        .ecs(
            "RunTask",
            json!({"taskDefinition": "web", "startedBy": "golden", "group": "service:web",
                   "overrides": {"containerOverrides": [{"name": "app", "environment": [{"name": "MODE", "value": "override"}]}]}}),
        )
        .await;
    let web_arn = run["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    next_payload(&mut agent).await;
    t.ecs("DescribeTasks", json!({"tasks": [web_arn.clone()]}))
        .await;
    agent
        .state_change(
            1,
            container_running(
                &web_arn,
                "app",
                Some(pb::ContainerHealth {
                    status: "HEALTHY".into(),
                    checked_at_ms: 1_700_000_002_000,
                    exit_code: 0,
                    output: "ok".into(),
                }),
            ),
        )
        .await;
    agent
        .state_change(2, container_running(&web_arn, "sidecar", None))
        .await;
    agent
        .state_change(
            3,
            running(
                &web_arn,
                pb::TaskNetwork {
                    mode: "bridge".into(),
                    private_ipv4: "10.231.0.2".into(),
                    prefix_length: 16,
                    gateway_ipv4: "10.231.0.1".into(),
                    mac_address: "02:42:0a:e7:00:02".into(),
                    bindings: vec![
                        binding("app", "tcp", 80, 49153),
                        binding("app", "udp", 53, 5353),
                    ],
                },
            ),
        )
        .await;
    t.ecs(
        "DescribeTasks",
        json!({"tasks": [web_arn.clone()], "include": ["TAGS"]}),
    )
    .await;

    // An awsvpc task with a security group.
    let run = t
        .ecs(
            "RunTask",
            json!({"taskDefinition": "vpc", "networkConfiguration": {"awsvpcConfiguration": {"subnets": ["s-1"], "securityGroups": ["web-sg"]}}}),
        )
        .await;
    let vpc_arn = run["tasks"][0]["taskArn"].as_str().unwrap().to_string();
    next_payload(&mut agent).await;
    t.ecs("DescribeTasks", json!({"tasks": [vpc_arn.clone()]}))
        .await;
    agent
        .state_change(4, container_running(&vpc_arn, "api", None))
        .await;
    agent
        .state_change(
            5,
            running(
                &vpc_arn,
                pb::TaskNetwork {
                    mode: "awsvpc".into(),
                    private_ipv4: "10.232.0.2".into(),
                    prefix_length: 32,
                    gateway_ipv4: "10.232.0.1".into(),
                    mac_address: "02:42:0a:e8:00:02".into(),
                    bindings: vec![],
                },
            ),
        )
        .await;
    t.berth(Method::DELETE, "/berth/v1/security-groups/web-sg", None)
        .await;

    // Refusals of RunTask.
    t.ecs("RunTask", json!({"taskDefinition": "big"})).await;
    t.ecs("RunTask", json!({"taskDefinition": "web", "count": 0}))
        .await;
    t.ecs("RunTask", json!({"taskDefinition": "web:1"})).await;
    t.ecs(
        "RunTask",
        json!({"taskDefinition": "web", "networkConfiguration": {"awsvpcConfiguration": {"securityGroups": ["web-sg"]}}}),
    )
    .await;
    t.ecs(
        "RunTask",
        json!({"cluster": "nope", "taskDefinition": "web"}),
    )
    .await;

    t.ecs("ListTasks", json!({})).await;
    t.ecs("ListTasks", json!({"family": "vpc"})).await;
    t.ecs(
        "ListTasks",
        json!({"startedBy": "golden", "desiredStatus": "RUNNING"}),
    )
    .await;
    t.ecs("DescribeClusters", json!({"clusters": ["default"]}))
        .await;
    t.ecs(
        "DescribeContainerInstances",
        json!({"containerInstances": [reg.instance_id.clone()]}),
    )
    .await;

    // Stop the bridge task; its agent reports the exit.
    t.ecs(
        "StopTask",
        json!({"task": web_arn.clone(), "reason": "golden stop"}),
    )
    .await;
    next_payload(&mut agent).await;
    agent
        .state_change(
            6,
            pb::state_change::Change::Container(pb::ContainerStateChange {
                task_arn: web_arn.clone(),
                container_name: "app".into(),
                status: pb::ContainerStatus::Stopped as i32,
                exit_code: Some(137),
                reason: "killed".into(),
                runtime_id: "app-runtime".into(),
                at_ms: 1_700_000_003_000,
                ..Default::default()
            }),
        )
        .await;
    agent
        .state_change(
            7,
            pb::state_change::Change::Task(pb::TaskStateChange {
                task_arn: web_arn.clone(),
                status: pb::TaskStatus::Stopped as i32,
                stop_code: "UserInitiated".into(),
                stopped_reason: "golden stop".into(),
                at_ms: 1_700_000_003_500,
                ..Default::default()
            }),
        )
        .await;
    t.ecs(
        "DescribeTasks",
        json!({"tasks": [web_arn.clone(), vpc_arn.clone(), "nope"]}),
    )
    .await;
    t.ecs("StopTask", json!({"task": "nope"})).await;
    t.berth(
        Method::GET,
        &format!(
            "/berth/v1/tasks/{}/events",
            web_arn.rsplit('/').next().unwrap()
        ),
        None,
    )
    .await;
    t.berth(Method::GET, "/berth/v1/tasks/nope/events", None)
        .await;
    t.berth(Method::GET, "/berth/v1/tasks/nope/other", None)
        .await;

    // Protocol errors.
    t.ecs_raw("AmazonEC2ContainerServiceV20141113.DeleteEverything", "{}")
        .await;
    t.ecs_raw("SomethingElse.RunTask", "{}").await;
    t.ecs_raw("AmazonEC2ContainerServiceV20141113.ListTasks", "{nope")
        .await;
    t.ecs_raw("AmazonEC2ContainerServiceV20141113.ListTasks", "[1]")
        .await;
    t.ecs_raw(
        "AmazonEC2ContainerServiceV20141113.DescribeTasks",
        r#"{"tasks": "not a list"}"#,
    )
    .await;
    t.ecs_raw("AmazonEC2ContainerServiceV20141113.ListClusters", "")
        .await;
    t.ecs("ListClusters", json!({"nextToken": "bogus"})).await;
    t.berth(Method::DELETE, "/berth/v1/secrets/nope", None)
        .await;
    t.berth(Method::DELETE, "/berth/v1/secrets/registry-login", None)
        .await;

    server.shutdown().await.unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    normalise(&t.entries.concat(), now)
}

#[tokio::test]
async fn ecs_responses_are_byte_for_byte_as_recorded() {
    let got = scenario().await;
    if std::env::var("BERTH_UPDATE_GOLDEN").as_deref() == Ok("1") {
        std::fs::create_dir_all(std::path::Path::new(GOLDEN).parent().unwrap()).unwrap();
        std::fs::write(GOLDEN, &got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(GOLDEN).expect("the recorded transcript");
    if got != want {
        let split = |s: &str| -> Vec<String> {
            s.split("=== ")
                .filter(|e| !e.is_empty())
                .map(str::to_string)
                .collect()
        };
        let (g, w) = (split(&got), split(&want));
        for (i, (a, b)) in g.iter().zip(&w).enumerate() {
            assert_eq!(a, b, "entry {i} differs from the recording");
        }
        assert_eq!(g.len(), w.len(), "a different number of responses");
        panic!("the transcript differs");
    }
}

#[test]
fn normalising_replaces_ids_and_current_timestamps_only() {
    let text = "a1b2c3d4e5f60718293a4b5c6d7e8f90 task/a1b2c3d4e5f60718293a4b5c6d7e8f90 \
                sg-0123456789abcdef0 4c5b1f3e-9d8a-4b7c-8e6f-1a2b3c4d5e6f \
                1700000000.25 1800000000.5 1800000000500 80 12345678901234567 \
                eni-96890077771648669";
    assert_eq!(
        normalise(text, 1_800_000_000.0),
        "<id-1> task/<id-1> sg-<id-2> <id-3> 1700000000.25 <ts> <ts> 80 12345678901234567 \
         eni-<id-4>"
    );
}
