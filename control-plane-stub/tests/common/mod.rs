//! Shared helpers: a server on port 0 in a temp dir, an ECS JSON client, a fake agent, and the
//! real aws CLI and boto3 (`clients`).
#![allow(dead_code)]

pub mod clients;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_cp::config::{resolve, Settings};
use berth_cp::server::{self, RunningServer};
use berth_proto::v1 as pb;
use berth_proto::v1::agent_service_client::AgentServiceClient;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

pub const WAIT: Duration = Duration::from_secs(10);

/// A unique directory, removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let p =
            std::env::temp_dir().join(format!("berth-cp-{tag}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub async fn start(dir: &Path) -> RunningServer {
    start_with(dir, Settings::default()).await
}

/// `start`, with `extra`'s settings over the test defaults.
pub async fn start_with(dir: &Path, extra: Settings) -> RunningServer {
    let defaults = Settings {
        data_dir: Some(dir.join("data")),
        api_listen: Some("127.0.0.1:0".into()),
        grpc_listen: Some("127.0.0.1:0".into()),
        heartbeat_interval_ms: Some(1000),
        ready_file: Some(dir.join("ready.json")),
        ..Settings::default()
    };
    let config = resolve(defaults.merged_with(extra)).unwrap();
    server::start(&config).await.expect("server starts")
}

pub fn data_dir(dir: &Path) -> PathBuf {
    dir.join("data")
}

/// Calls an ECS operation; returns the HTTP status and the JSON body.
pub async fn ecs(api: SocketAddr, op: &str, body: Value) -> (u16, Value) {
    let resp = reqwest::Client::new()
        .post(format!("http://{api}/"))
        .header(
            "X-Amz-Target",
            format!("AmazonEC2ContainerServiceV20141113.{op}"),
        )
        .header("Content-Type", "application/x-amz-json-1.1")
        .body(body.to_string())
        .send()
        .await
        .expect("request sent");
    let status = resp.status().as_u16();
    assert_eq!(
        resp.headers()["content-type"],
        "application/x-amz-json-1.1",
        "content type of {op}"
    );
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("{op}: not JSON: {text}")),
    )
}

/// Calls an operation that must succeed.
pub async fn ecs_ok(api: SocketAddr, op: &str, body: Value) -> Value {
    let (status, v) = ecs(api, op, body).await;
    assert_eq!(status, 200, "{op} failed: {v}");
    v
}

/// Polls `check` until it returns Some, or panics after WAIT.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn sample_task_definition(family: &str) -> Value {
    serde_json::json!({
        "family": family,
        "containerDefinitions": [{
            "name": "app",
            "image": "docker.io/library/busybox:latest",
            "memory": 128,
            "command": ["sleep", "3600"],
            "environment": [{"name": "A", "value": "1"}],
            "portMappings": [{"containerPort": 80}]
        }]
    })
}

pub async fn grpc(addr: SocketAddr) -> AgentServiceClient<tonic::transport::Channel> {
    AgentServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("gRPC connects")
}

pub fn register_request(cluster: &str, auth: pb::register_request::Auth) -> pb::RegisterRequest {
    pb::RegisterRequest {
        cluster: cluster.into(),
        auth: Some(auth),
        hostname: "host-1".into(),
        resources: vec![
            pb::Resource {
                name: "CPU".into(),
                r#type: "INTEGER".into(),
                integer_value: 2048,
                string_set_value: vec![],
            },
            pb::Resource {
                name: "MEMORY".into(),
                r#type: "INTEGER".into(),
                integer_value: 4096,
                string_set_value: vec![],
            },
        ],
        attributes: vec![
            pb::Attribute {
                name: "berth.network-modes".into(),
                value: "bridge,host".into(),
            },
            pb::Attribute {
                name: "ecs.availability-zone".into(),
                value: "lab-1a".into(),
            },
            pb::Attribute {
                name: "ecs.cpu-architecture".into(),
                value: "x86_64".into(),
            },
        ]
        .into_iter()
        // The capabilities a real agent reports (agent/src/host.rs), so that task definitions
        // requiring them (requiresAttributes) are placed.
        .chain(
            [
                "ecs.capability.container-health-check",
                "ecs.capability.container-ordering",
                "ecs.capability.task-cpu-mem-limit",
                "ecs.capability.private-registry-authentication.secretsmanager",
                "com.amazonaws.ecs.capability.privileged-container",
            ]
            .map(|name| pb::Attribute {
                name: name.into(),
                value: String::new(),
            }),
        )
        .collect(),
        version_info: Some(pb::VersionInfo {
            agent_version: "0.1.0".into(),
            agent_hash: "abc".into(),
            containerd_version: "2.0.0".into(),
        }),
    }
}

pub fn code_auth(code: &str) -> pb::register_request::Auth {
    pb::register_request::Auth::ActivationCode(code.into())
}

/// An agent session driven by the test.
pub struct FakeAgent {
    tx: mpsc::Sender<pb::AgentMessage>,
    rx: tonic::Streaming<pb::ControlMessage>,
}

impl FakeAgent {
    pub async fn connect(
        addr: SocketAddr,
        id: &str,
        secret: &str,
        last_payload_seq: u64,
    ) -> Result<Self, tonic::Status> {
        let (tx, rx) = mpsc::channel(16);
        tx.send(msg(pb::agent_message::Msg::Hello(pb::Hello {
            credential: Some(pb::InstanceCredential {
                instance_id: id.into(),
                secret: secret.into(),
            }),
            last_payload_seq,
            agent_version: "0.1.0".into(),
        })))
        .await
        .unwrap();
        let resp = grpc(addr).await.session(ReceiverStream::new(rx)).await?;
        Ok(Self {
            tx,
            rx: resp.into_inner(),
        })
    }

    pub async fn send(&self, m: pb::agent_message::Msg) {
        self.tx.send(msg(m)).await.expect("session open");
    }

    /// The next message, or the status the stream ended with.
    pub async fn next(&mut self) -> Result<pb::control_message::Msg, tonic::Status> {
        match tokio::time::timeout(WAIT, self.rx.next())
            .await
            .expect("a control message in time")
        {
            Some(Ok(m)) => Ok(m.msg.expect("message set")),
            Some(Err(s)) => Err(s),
            None => Err(tonic::Status::cancelled("stream ended")),
        }
    }

    pub async fn expect(&mut self) -> pb::control_message::Msg {
        self.next().await.expect("session still open")
    }

    pub async fn state_change(&mut self, seq: u64, change: pb::state_change::Change) {
        self.send(pb::agent_message::Msg::StateChange(pb::StateChange {
            seq,
            change: Some(change),
        }))
        .await;
        match self.expect().await {
            pb::control_message::Msg::StateChangeAck(a) => assert_eq!(a.seq, seq),
            other => panic!("expected ack of {seq}, got {other:?}"),
        }
    }
}

pub fn msg(m: pb::agent_message::Msg) -> pb::AgentMessage {
    pb::AgentMessage { msg: Some(m) }
}

pub fn task_change(
    arn: &str,
    status: pb::TaskStatus,
    code: &str,
    at_ms: i64,
) -> pb::state_change::Change {
    pb::state_change::Change::Task(pb::TaskStateChange {
        task_arn: arn.into(),
        status: status as i32,
        stop_code: code.into(),
        stopped_reason: format!("{code} reason"),
        at_ms,
        network: None,
        ..Default::default()
    })
}

pub fn container_change(
    arn: &str,
    name: &str,
    status: pb::ContainerStatus,
    exit: Option<i32>,
) -> pb::state_change::Change {
    pb::state_change::Change::Container(pb::ContainerStateChange {
        task_arn: arn.into(),
        container_name: name.into(),
        status: status as i32,
        exit_code: exit,
        reason: String::new(),
        runtime_id: "rt-1".into(),
        at_ms: 1_700_000_000_000,
        restart_count: 0,
        health: None,
        image_digest: "sha256:5b0bcabd1ed22e9fb1310cf6c2dec7cdef19f0ad69efa1f392e94a4333501270"
            .into(),
    })
}

/// Calls the Berth-specific JSON API.
pub async fn berth(
    api: SocketAddr,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new().request(method, format!("http://{api}{path}"));
    if let Some(b) = body {
        req = req.body(b.to_string());
    }
    let resp = req.send().await.expect("request sent");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: not JSON: {text}")),
    )
}

/// The next message must be a payload: it is acknowledged and returned.
pub async fn next_payload(agent: &mut FakeAgent) -> pb::TaskPayload {
    match agent.expect().await {
        pb::control_message::Msg::Payload(p) => {
            agent
                .send(pb::agent_message::Msg::PayloadAck(pb::PayloadAck {
                    seq: p.seq,
                }))
                .await;
            p
        }
        other => panic!("expected a payload, got {other:?}"),
    }
}

/// The agent's side: reports numbered in order; payloads that arrive while a report waits for
/// its ack are kept for `payloads`.
pub struct ReportingAgent {
    pub session: FakeAgent,
    seq: u64,
    early: std::collections::VecDeque<pb::TaskPayload>,
}

impl ReportingAgent {
    pub async fn report(&mut self, change: pb::state_change::Change) {
        self.seq += 1;
        self.session
            .send(pb::agent_message::Msg::StateChange(pb::StateChange {
                seq: self.seq,
                change: Some(change),
            }))
            .await;
        loop {
            match self.session.expect().await {
                pb::control_message::Msg::StateChangeAck(a) if a.seq == self.seq => return,
                pb::control_message::Msg::Payload(p) => self.early.push_back(p),
                pb::control_message::Msg::Manifest(_) => {}
                other => panic!("expected the ack of {}, got {other:?}", self.seq),
            }
        }
    }

    pub async fn next_payload(&mut self) -> pb::TaskPayload {
        if let Some(p) = self.early.pop_front() {
            return p;
        }
        loop {
            match self.session.expect().await {
                pb::control_message::Msg::Payload(p) => return p,
                pb::control_message::Msg::Manifest(_) => {}
                other => panic!("expected a payload, got {other:?}"),
            }
        }
    }

    pub async fn run(&mut self, arn: &str) {
        self.report(container_change(
            arn,
            "app",
            pb::ContainerStatus::Running,
            None,
        ))
        .await;
        self.report(task_change(
            arn,
            pb::TaskStatus::Running,
            "",
            1_700_000_000_000,
        ))
        .await;
    }

    pub async fn exit(&mut self, arn: &str, code: &str) {
        self.report(container_change(
            arn,
            "app",
            pb::ContainerStatus::Stopped,
            Some(0),
        ))
        .await;
        self.report(task_change(
            arn,
            pb::TaskStatus::Stopped,
            code,
            1_700_000_001_000,
        ))
        .await;
    }

    /// Payloads until `starts` tasks to start and `stops` to stop have arrived.
    pub async fn payloads(&mut self, starts: usize, stops: usize) -> (Vec<String>, Vec<String>) {
        let (mut started, mut stopped) = (Vec::new(), Vec::new());
        while started.len() < starts || stopped.len() < stops {
            let p = self.next_payload().await;
            self.session
                .send(pb::agent_message::Msg::PayloadAck(pb::PayloadAck {
                    seq: p.seq,
                }))
                .await;
            started.extend(p.tasks.into_iter().map(|t| t.task_arn));
            stopped.extend(p.stops.into_iter().map(|s| s.task_arn));
        }
        assert_eq!(
            (started.len(), stopped.len()),
            (starts, stops),
            "no more than asked"
        );
        (started, stopped)
    }
    /// Registers an agent in `default` and connects it.
    pub async fn register(dir: &Path, g: SocketAddr) -> Self {
        Self::register_with(dir, g, |_| {}).await
    }

    /// `register`, with the registration changed by `edit` first (to leave out an attribute).
    pub async fn register_with(
        dir: &Path,
        g: SocketAddr,
        edit: impl FnOnce(&mut pb::RegisterRequest),
    ) -> Self {
        let code = berth_cp::admin::create_activation(&data_dir(dir), "default", 1, 3600).unwrap();
        let mut request = register_request("default", code_auth(&code));
        edit(&mut request);
        let reg = grpc(g).await.register(request).await.unwrap().into_inner();
        let mut session = FakeAgent::connect(g, &reg.instance_id, &reg.secret, 0)
            .await
            .unwrap();
        assert!(matches!(
            session.expect().await,
            pb::control_message::Msg::Welcome(_)
        ));
        assert!(matches!(
            session.expect().await,
            pb::control_message::Msg::Manifest(_)
        ));
        Self {
            session,
            seq: 0,
            early: Default::default(),
        }
    }
}

/// Runs one berthctl command against the server, in-process, and returns what it prints.
pub async fn berthctl(api: SocketAddr, args: &[&str]) -> Result<String, berth_cp::cli::CliError> {
    use clap::Parser;
    let endpoint = format!("http://{api}");
    let mut argv = vec!["berthctl", "--endpoint", &endpoint];
    argv.extend_from_slice(args);
    let cli = berth_cp::cli::Cli::try_parse_from(argv).unwrap();
    berth_cp::cli::execute(&cli).await
}
