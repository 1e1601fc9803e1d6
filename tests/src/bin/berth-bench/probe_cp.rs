//! The smallest control plane an agent accepts, for timing the agent alone: it registers
//! whoever asks, sends the payloads the benchmark gives it, acks every state change, and
//! hands each one to the benchmark with the instant it arrived. berth-cp's own work (the
//! API, placement, SQLite) is then outside what is measured: a payload leaves here and the
//! agent's RUNNING report arrives here, over loopback, on one clock.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use berth_proto::v1 as pb;
use pb::agent_service_server::{AgentService, AgentServiceServer};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status, Streaming};

/// berth-cp's default, so the agent's idle work is the same as in production.
const HEARTBEAT_INTERVAL_MS: u32 = 10_000;
const INSTANCE_ID: &str = "bench";

/// A state change as it arrived.
#[derive(Debug)]
pub struct Arrived {
    pub at: Instant,
    pub change: pb::state_change::Change,
}

#[derive(Default)]
struct Shared {
    /// The connected session's outbound half.
    session: Mutex<Option<mpsc::UnboundedSender<Result<pb::ControlMessage, Status>>>>,
    next_payload_seq: Mutex<u64>,
}

#[derive(Clone)]
struct Service {
    shared: Arc<Shared>,
    changes: mpsc::UnboundedSender<Arrived>,
    connected: mpsc::UnboundedSender<()>,
}

pub struct ProbeCp {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    changes: mpsc::UnboundedReceiver<Arrived>,
    connected: mpsc::UnboundedReceiver<()>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for ProbeCp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl ProbeCp {
    /// Listens on a free loopback port.
    pub async fn start() -> Result<ProbeCp> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the probe control plane")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let (changes_tx, changes) = mpsc::unbounded_channel();
        let (connected_tx, connected) = mpsc::unbounded_channel();
        let service = Service {
            shared: shared.clone(),
            changes: changes_tx,
            connected: connected_tx,
        };
        let server = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(AgentServiceServer::new(service))
                .serve_with_incoming(TcpIncoming::from(listener).with_nodelay(Some(true)))
                .await;
        });
        Ok(ProbeCp {
            addr,
            shared,
            changes,
            connected,
            server,
        })
    }

    /// Waits for an agent's session.
    pub async fn wait_connected(&mut self, limit: std::time::Duration) -> Result<()> {
        match tokio::time::timeout(limit, self.connected.recv()).await {
            Ok(Some(())) => Ok(()),
            _ => bail!("no agent connected to the probe control plane within {limit:?}"),
        }
    }

    /// Sends one payload; returns the instant it was handed to the session.
    pub fn send(&self, tasks: Vec<pb::TaskSpec>, stops: Vec<pb::StopTask>) -> Result<Instant> {
        let seq = {
            let mut next = self.shared.next_payload_seq.lock().expect("not poisoned");
            *next += 1;
            *next
        };
        let msg = pb::ControlMessage {
            msg: Some(pb::control_message::Msg::Payload(pb::TaskPayload {
                seq,
                tasks,
                stops,
            })),
        };
        let session = self.shared.session.lock().expect("not poisoned");
        let Some(tx) = session.as_ref() else {
            bail!("the agent is not connected");
        };
        let at = Instant::now();
        tx.send(Ok(msg))
            .map_err(|_| anyhow::anyhow!("the agent's session has ended"))?;
        Ok(at)
    }

    /// The next state change, or an error after `limit`.
    pub async fn next_change(&mut self, limit: std::time::Duration) -> Result<Arrived> {
        match tokio::time::timeout(limit, self.changes.recv()).await {
            Ok(Some(a)) => Ok(a),
            Ok(None) => bail!("the probe control plane has stopped"),
            Err(_) => bail!("no state change from the agent within {limit:?}"),
        }
    }
}

#[tonic::async_trait]
impl AgentService for Service {
    async fn register(
        &self,
        _request: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        Ok(Response::new(pb::RegisterResponse {
            instance_id: INSTANCE_ID.into(),
            container_instance_arn: format!(
                "arn:aws:ecs:us-east-1:000000000000:container-instance/bench/{INSTANCE_ID}"
            ),
            secret: "bench".into(),
            heartbeat_interval_ms: HEARTBEAT_INTERVAL_MS,
        }))
    }

    type SessionStream = Pin<Box<dyn Stream<Item = Result<pb::ControlMessage, Status>> + Send>>;

    async fn session(
        &self,
        request: Request<Streaming<pb::AgentMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        use pb::agent_message::Msg as In;
        use pb::control_message::Msg as Out;
        let mut inbound = request.into_inner();
        match inbound.next().await {
            Some(Ok(pb::AgentMessage {
                msg: Some(In::Hello(_)),
            })) => {}
            _ => {
                return Err(Status::invalid_argument(
                    "the first message must be a Hello",
                ))
            }
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let out = |m: Out| Ok(pb::ControlMessage { msg: Some(m) });
        let _ = tx.send(out(Out::Welcome(pb::Welcome {
            instance_id: INSTANCE_ID.into(),
            last_state_change_seq: 0,
            heartbeat_interval_ms: HEARTBEAT_INTERVAL_MS,
        })));
        *self.shared.session.lock().expect("not poisoned") = Some(tx.clone());
        let _ = self.connected.send(());
        let changes = self.changes.clone();
        tokio::spawn(async move {
            while let Some(Ok(msg)) = inbound.next().await {
                let at = Instant::now();
                match msg.msg {
                    Some(In::StateChange(sc)) => {
                        let _ =
                            tx.send(out(Out::StateChangeAck(pb::StateChangeAck { seq: sc.seq })));
                        if let Some(change) = sc.change {
                            let _ = changes.send(Arrived { at, change });
                        }
                    }
                    Some(In::Heartbeat(h)) => {
                        let _ = tx.send(out(Out::HeartbeatAck(pb::HeartbeatAck {
                            sent_at_ms: h.sent_at_ms,
                        })));
                    }
                    _ => {}
                }
            }
        });
        Ok(Response::new(Box::pin(UnboundedReceiverStream::new(rx))))
    }
}
