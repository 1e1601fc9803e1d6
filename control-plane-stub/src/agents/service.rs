//! The agent-facing gRPC service (berth.agent.v1): registration and the session stream.
//! Errors become tonic statuses here and nowhere else.

use std::pin::Pin;
use std::sync::Arc;

use berth_proto::v1 as pb;
use berth_proto::v1::agent_service_server::AgentService;
use futures_util::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use super::{wire, Agents};
use crate::domain::instance::{check_reported_attributes, Refusal};
use crate::state::{ChangeOutcome, StoreError};

pub struct AgentApi {
    agents: Arc<Agents>,
}

impl AgentApi {
    pub fn new(agents: Arc<Agents>) -> Self {
        Self { agents }
    }
}

fn refusal_status(r: Refusal) -> Status {
    match r {
        Refusal::InstanceRevoked | Refusal::CodeRevoked | Refusal::WrongCluster { .. } => {
            Status::permission_denied(r.to_string())
        }
        _ => Status::unauthenticated(r.to_string()),
    }
}

fn internal(e: StoreError) -> Status {
    tracing::error!("internal error: {e}");
    Status::internal(e.to_string())
}

fn control(msg: pb::control_message::Msg) -> Result<pb::ControlMessage, Status> {
    Ok(pb::ControlMessage { msg: Some(msg) })
}

type SessionStream = Pin<Box<dyn Stream<Item = Result<pb::ControlMessage, Status>> + Send>>;

#[tonic::async_trait]
impl AgentService for AgentApi {
    async fn register(
        &self,
        request: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        let req = request.into_inner();
        if req.cluster.is_empty() {
            return Err(Status::invalid_argument("cluster is required"));
        }
        let info = wire::instance_info(&req);
        check_reported_attributes(&info.attributes).map_err(Status::invalid_argument)?;
        let outcome = match &req.auth {
            None => {
                return Err(Status::invalid_argument(
                    "activation_code or credential is required",
                ))
            }
            Some(pb::register_request::Auth::ActivationCode(code)) => {
                self.agents.register_with_code(&req.cluster, code, info)
            }
            Some(pb::register_request::Auth::Credential(c)) => self
                .agents
                .register_with_credential(&req.cluster, &c.instance_id, &c.secret, info),
        }
        .map_err(internal)?;
        match outcome {
            Err(refusal) => {
                tracing::warn!(cluster = %req.cluster, hostname = %req.hostname, "registration refused: {refusal}");
                Err(refusal_status(refusal))
            }
            Ok(reg) => {
                tracing::info!(instance.id = %reg.instance_id, cluster = %req.cluster, hostname = %req.hostname, first = reg.secret.is_some(), "instance registered");
                Ok(Response::new(pb::RegisterResponse {
                    container_instance_arn: self
                        .agents
                        .container_instance_arn(&req.cluster, &reg.instance_id),
                    instance_id: reg.instance_id,
                    secret: reg.secret.unwrap_or_default(),
                    heartbeat_interval_ms: self.agents.heartbeat_interval_ms,
                }))
            }
        }
    }

    type SessionStream = SessionStream;

    async fn session(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let mut inbound = request.into_inner();
        let hello = match inbound.next().await {
            Some(Ok(pb::AgentMessage {
                msg: Some(pb::agent_message::Msg::Hello(h)),
            })) => h,
            Some(Err(e)) => return Err(e),
            _ => {
                return Err(Status::unauthenticated(
                    "the first session message must be a Hello",
                ))
            }
        };
        let cred = hello
            .credential
            .clone()
            .ok_or_else(|| Status::unauthenticated("Hello carries no credential"))?;
        let instance = self
            .agents
            .authenticate(&cred.instance_id, &cred.secret)
            .map_err(internal)?
            .map_err(refusal_status)?;

        let (tx, rx) = mpsc::unbounded_channel();
        // Welcome and manifest go first; attach then resends the outbox behind them.
        let _ = tx.send(control(pb::control_message::Msg::Welcome(pb::Welcome {
            instance_id: instance.id.clone(),
            last_state_change_seq: instance.last_state_change_seq,
            heartbeat_interval_ms: self.agents.heartbeat_interval_ms,
        })));
        let task_arns = self.agents.manifest(&instance.id).map_err(internal)?;
        let _ = tx.send(control(pb::control_message::Msg::Manifest(
            pb::TaskManifest { task_arns },
        )));
        let rebased = self
            .agents
            .rebase_payloads(&instance.id, hello.last_payload_seq)
            .map_err(internal)?;
        if let Some(n) = rebased {
            tracing::warn!(
                instance.id = %instance.id,
                agent_last = hello.last_payload_seq,
                renumbered = n,
                "this control plane's state is behind the agent (restored from a backup?): \
                 its payloads now follow what the agent recorded"
            );
        }
        let attached = self
            .agents
            .attach(&instance.id, hello.last_payload_seq, tx.clone())
            .map_err(internal)?;

        let span = tracing::info_span!("session", instance.id = %instance.id);
        span.in_scope(|| {
            tracing::info!(
                agent_version = %hello.agent_version,
                last_payload_seq = hello.last_payload_seq,
                "agent connected"
            )
        });
        let agents = self.agents.clone();
        let instance_id = instance.id.clone();
        let every = std::time::Duration::from_millis(u64::from(self.agents.manifest_interval_ms));
        tokio::spawn(
            async move {
                let mut replaced = attached.replaced;
                // A fresh manifest every interval after the first (sent above).
                let mut manifests =
                    tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                manifests.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let end = loop {
                    let msg = tokio::select! {
                        _ = &mut replaced => break "replaced by a newer session".to_string(),
                        _ = manifests.tick() => {
                            send_manifest(&agents, &instance_id, attached.session_id);
                            continue;
                        }
                        msg = inbound.next() => msg,
                    };
                    match msg {
                        None => break "agent closed the stream".to_string(),
                        Some(Err(e)) => break format!("stream error: {e}"),
                        Some(Ok(m)) => {
                            if let Err(status) = handle(&agents, &instance_id, m, &tx) {
                                let text = status.message().to_string();
                                let _ = tx.send(Err(status));
                                break text;
                            }
                        }
                    }
                };
                agents.sessions.detach(&instance_id, attached.session_id);
                agents.logs.session_ended(&instance_id, attached.session_id);
                agents
                    .execs
                    .session_ended(&instance_id, attached.session_id);
                tracing::info!("agent disconnected: {end}");
            }
            .instrument(span),
        );
        Ok(Response::new(
            Box::pin(UnboundedReceiverStream::new(rx)) as SessionStream
        ))
    }
}

use pb::AgentMessage;

/// A periodic manifest, read fresh from the store. A failure is logged and the session goes on:
/// the agent only acts on manifests it receives, so a missed one stops nothing.
fn send_manifest(agents: &Agents, instance_id: &str, session_id: u64) {
    match agents
        .sessions
        .send_manifest(instance_id, session_id, || agents.manifest(instance_id))
    {
        Ok(true) => tracing::debug!("task manifest sent"),
        Ok(false) => tracing::debug!("no manifest sent: the session is no longer live"),
        Err(e) => tracing::error!("cannot compute the task manifest: {e}"),
    }
}

/// One agent message. An Err ends the session with that status.
fn handle(
    agents: &Agents,
    instance_id: &str,
    m: AgentMessage,
    tx: &crate::agents::sessions::Outbound,
) -> Result<(), Status> {
    // Revocation takes effect at the instance's next message.
    if !agents.still_allowed(instance_id).map_err(internal)? {
        return Err(refusal_status(Refusal::InstanceRevoked));
    }
    let reply = match m.msg {
        None | Some(pb::agent_message::Msg::Hello(_)) => {
            tracing::warn!("ignoring an empty or repeated Hello");
            return Ok(());
        }
        Some(pb::agent_message::Msg::Heartbeat(h)) => {
            agents
                .heartbeat(instance_id, h.containerd_healthy)
                .map_err(internal)?;
            pb::control_message::Msg::HeartbeatAck(pb::HeartbeatAck {
                sent_at_ms: h.sent_at_ms,
            })
        }
        Some(pb::agent_message::Msg::PayloadAck(a)) => {
            agents.ack_payloads(instance_id, a.seq).map_err(internal)?;
            return Ok(());
        }
        Some(pb::agent_message::Msg::LogChunk(c)) => {
            agents.logs.deliver(instance_id, c);
            return Ok(());
        }
        Some(pb::agent_message::Msg::ExecOutput(o)) => {
            agents.execs.deliver(instance_id, o);
            return Ok(());
        }
        Some(pb::agent_message::Msg::StateChange(sc)) => {
            let seq = sc.seq;
            match wire::agent_change(&sc) {
                Err(e) => return Err(Status::invalid_argument(e.to_string())),
                Ok((seq, change)) => {
                    match agents
                        .apply_change(instance_id, seq, &change)
                        .map_err(internal)?
                    {
                        ChangeOutcome::Applied => {
                            tracing::debug!(
                                seq,
                                task.arn = change.task_arn(),
                                "state change applied"
                            )
                        }
                        ChangeOutcome::Duplicate => {
                            tracing::debug!(seq, "state change already applied")
                        }
                        ChangeOutcome::Ignored(why) => {
                            tracing::warn!(seq, "state change ignored: {why}")
                        }
                    }
                }
            }
            pb::control_message::Msg::StateChangeAck(pb::StateChangeAck { seq })
        }
    };
    let _ = tx.send(control(reply));
    Ok(())
}
