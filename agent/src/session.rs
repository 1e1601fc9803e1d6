//! The control-plane session: registration, then one long-lived stream that carries payloads
//! in and state changes out, kept alive with heartbeats and re-established with jittered
//! exponential backoff. Wire types stop here (`crate::wire` converts).
//!
//! Delivery: reports are sent from the durable outbox in sequence order; the control plane acks
//! each, and tells us in `Welcome` the highest it has applied, so after any reconnect the agent
//! resends exactly what is missing (at least once on the wire, deduplicated by sequence there).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use berth_proto::v1 as pb;
use berth_proto::v1::agent_service_client::AgentServiceClient;
use pb::agent_message::Msg as Out;
use pb::control_message::Msg as In;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tracing::{debug, info, info_span, warn, Instrument};

use crate::engine::Engine;
use crate::exec::{ExecQuery, ExecReport, ExecService};
use crate::host::Registration;
use crate::logs::serve::{Chunk, LogQuery, LogService, Sink};
use crate::runtime::Runtime;
use crate::store::{Credential, Store, StoreError};
use crate::wire;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The control plane said no, and saying the same again will not help.
    #[error("the control plane refused this agent: {0}")]
    Refused(String),
    #[error("no instance credential is stored and no activation code is configured: set activation_code (or BERTH_ACTIVATION_CODE) for the first registration")]
    NoActivationCode,
    #[error("control plane unreachable: {0}")]
    Transport(String),
    #[error("control plane session: {0}")]
    Protocol(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A shutdown was asked for before the session could begin.
    #[error("shutting down before the control plane was reached")]
    ShuttingDown,
}

impl SessionError {
    fn is_fatal(&self) -> bool {
        matches!(self, Self::Refused(_) | Self::NoActivationCode)
    }
}

fn status_error(s: tonic::Status) -> SessionError {
    use tonic::Code::*;
    match s.code() {
        Unauthenticated | PermissionDenied | InvalidArgument | NotFound | FailedPrecondition => {
            SessionError::Refused(s.message().to_string())
        }
        _ => SessionError::Transport(format!("{}: {}", s.code(), s.message())),
    }
}

#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub endpoint: String,
    pub cluster: String,
    pub activation_code: Option<String>,
}

/// Exponential backoff with full jitter: many agents losing one control plane do not come
/// back in lock-step.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(max: Duration) -> Self {
        Self {
            next: Duration::from_millis(250),
            max,
        }
    }

    pub fn reset(&mut self) {
        self.next = Duration::from_millis(250);
    }

    /// The delay to wait now: uniformly random in [delay/2, delay].
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        let half = d.as_millis() as u64 / 2;
        Duration::from_millis(half + fastrand::u64(0..=half))
    }
}

async fn connect(endpoint: &str) -> Result<AgentServiceClient<Channel>, SessionError> {
    let ep = Endpoint::from_shared(endpoint.to_string())
        .map_err(|e| SessionError::Transport(format!("endpoint {endpoint:?}: {e}")))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_keepalive(Some(Duration::from_secs(30)));
    let channel = ep
        .connect()
        .await
        .map_err(|e| SessionError::Transport(format!("{endpoint}: {e}")))?;
    Ok(AgentServiceClient::new(channel))
}

/// Registers (activation code on first contact, stored credential afterwards), retrying
/// transient failures until `shutdown`.
pub async fn register(
    cfg: &SessionConfig,
    store: &Store,
    host: &Registration,
    containerd_version: &str,
    mut shutdown: watch::Receiver<bool>,
) -> Result<Credential, SessionError> {
    let mut backoff = Backoff::new(Duration::from_secs(15));
    loop {
        match register_once(cfg, store, host, containerd_version).await {
            Ok(c) => return Ok(c),
            Err(e) if e.is_fatal() => return Err(e),
            Err(e) => warn!(error = %e, "registration failed; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff.next_delay()) => {}
            _ = shutdown.changed() => return Err(SessionError::ShuttingDown),
        }
    }
}

async fn register_once(
    cfg: &SessionConfig,
    store: &Store,
    host: &Registration,
    containerd_version: &str,
) -> Result<Credential, SessionError> {
    let stored = store.credential()?;
    let auth = match (&stored, &cfg.activation_code) {
        (Some(c), _) => pb::register_request::Auth::Credential(pb::InstanceCredential {
            instance_id: c.instance_id.clone(),
            secret: c.secret.clone(),
        }),
        (None, Some(code)) => pb::register_request::Auth::ActivationCode(code.clone()),
        (None, None) => return Err(SessionError::NoActivationCode),
    };
    let mut client = connect(&cfg.endpoint).await?;
    let req = wire::register_request(&cfg.cluster, auth, host, containerd_version);
    let resp = client
        .register(req)
        .await
        .map_err(status_error)?
        .into_inner();
    let credential = match stored {
        Some(c) => Credential {
            container_instance_arn: resp.container_instance_arn,
            ..c
        },
        None => {
            if resp.secret.is_empty() {
                return Err(SessionError::Protocol(
                    "first registration returned no credential".into(),
                ));
            }
            Credential {
                instance_id: resp.instance_id,
                secret: resp.secret,
                container_instance_arn: resp.container_instance_arn,
            }
        }
    };
    store.set_credential(&credential)?;
    info!(instance = %credential.container_instance_arn, "registered");
    Ok(credential)
}

/// Keeps a session up until `shutdown` turns true; returns early only on a fatal refusal.
pub async fn run<R: Runtime>(
    cfg: SessionConfig,
    credential: Credential,
    engine: Arc<Engine<R>>,
    store: Arc<Store>,
    logs: Arc<LogService>,
    execs: Arc<ExecService<R>>,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), SessionError> {
    let mut backoff = Backoff::new(Duration::from_secs(15));
    loop {
        let span = info_span!("session", instance.id = %credential.instance_id);
        let mut s = Session {
            engine: Arc::clone(&engine),
            store: Arc::clone(&store),
            logs: Arc::clone(&logs),
            execs: Arc::clone(&execs),
            alive: Arc::new(AtomicBool::new(true)),
            credential: credential.clone(),
            welcomed: false,
        };
        let result = s
            .run_once(&cfg.endpoint, &mut shutdown)
            .instrument(span)
            .await;
        if s.welcomed {
            backoff.reset();
        }
        match result {
            Ok(()) => return Ok(()),
            Err(e) if e.is_fatal() => return Err(e),
            Err(e) => warn!(error = %e, "session lost; reconnecting"),
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff.next_delay()) => {}
            _ = shutdown.changed() => return Ok(()),
        }
    }
}

struct Session<R: Runtime> {
    engine: Arc<Engine<R>>,
    store: Arc<Store>,
    logs: Arc<LogService>,
    execs: Arc<ExecService<R>>,
    /// Cleared when this session ends, so log requests still reading stop sending into it.
    alive: Arc<AtomicBool>,
    credential: Credential,
    welcomed: bool,
}

impl<R: Runtime> Drop for Session<R> {
    fn drop(&mut self) {
        self.alive.store(false, Ordering::Relaxed);
        if self.welcomed {
            self.engine.metrics().session_down();
        }
    }
}

const OUTBOX_BATCH: usize = 100;

impl<R: Runtime> Session<R> {
    async fn run_once(
        &mut self,
        endpoint: &str,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), SessionError> {
        let mut client = connect(endpoint).await?;
        let (tx, rx) = mpsc::channel::<pb::AgentMessage>(OUTBOX_BATCH * 2);
        let send = |tx: &mpsc::Sender<pb::AgentMessage>, msg: Out| {
            let tx = tx.clone();
            async move {
                tx.send(pb::AgentMessage { msg: Some(msg) })
                    .await
                    .map_err(|_| SessionError::Transport("session stream closed".into()))
            }
        };
        send(
            &tx,
            Out::Hello(pb::Hello {
                credential: Some(pb::InstanceCredential {
                    instance_id: self.credential.instance_id.clone(),
                    secret: self.credential.secret.clone(),
                }),
                last_payload_seq: self.store.last_payload_seq()?,
                agent_version: env!("CARGO_PKG_VERSION").into(),
            }),
        )
        .await?;
        let mut inbound = client
            .session(ReceiverStream::new(rx))
            .await
            .map_err(status_error)?
            .into_inner();

        let welcome = match tokio::time::timeout(Duration::from_secs(10), inbound.message()).await {
            Ok(Ok(Some(pb::ControlMessage {
                msg: Some(In::Welcome(w)),
            }))) => w,
            Ok(Ok(other)) => {
                return Err(SessionError::Protocol(format!(
                    "expected Welcome, got {other:?}"
                )))
            }
            Ok(Err(s)) => return Err(status_error(s)),
            Err(_) => return Err(SessionError::Transport("no Welcome within 10s".into())),
        };
        self.welcomed = true;
        self.engine.metrics().session_up();
        let heartbeat_every = Duration::from_millis(u64::from(
            welcome.heartbeat_interval_ms.clamp(1_000, 300_000),
        ));
        info!(
            last_applied = welcome.last_state_change_seq,
            "session established"
        );
        if let Some(renumbered) = self.store.rebase_outbox(welcome.last_state_change_seq)? {
            warn!(
                last_applied = welcome.last_state_change_seq,
                renumbered,
                "this agent's store is behind the control plane (restored from a backup?): \
                 its reports now follow what the control plane applied"
            );
        }
        self.store.ack_outbox(welcome.last_state_change_seq)?;
        let mut sent_upto = welcome.last_state_change_seq;
        let outbox_ready = Arc::clone(&self.engine.outbox_ready);
        let mut heartbeat = tokio::time::interval(heartbeat_every);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let silence_limit = heartbeat_every * 3;
        let probe = RuntimeProbe::default();
        let mut last_heard = tokio::time::Instant::now();

        loop {
            // Send whatever the outbox holds beyond what this stream already carried.
            loop {
                let batch = self.store.outbox_after(sent_upto, OUTBOX_BATCH)?;
                if batch.is_empty() {
                    break;
                }
                for entry in batch {
                    sent_upto = entry.seq;
                    send(&tx, Out::StateChange(wire::state_change(entry))).await?;
                }
            }
            tokio::select! {
                msg = inbound.message() => {
                    last_heard = tokio::time::Instant::now();
                    match msg {
                        Ok(Some(m)) => self.handle(m, &tx).await?,
                        Ok(None) => return Err(SessionError::Transport("the control plane closed the session".into())),
                        Err(s) => return Err(status_error(s)),
                    }
                }
                _ = outbox_ready.notified() => {}
                _ = heartbeat.tick() => {
                    if last_heard.elapsed() > silence_limit {
                        return Err(SessionError::Transport(format!(
                            "nothing heard from the control plane for {}s", silence_limit.as_secs()
                        )));
                    }
                    send(&tx, Out::Heartbeat(pb::Heartbeat {
                        sent_at_ms: now_ms(),
                        running_tasks: self.engine.running_tasks() as u32,
                        containerd_healthy: probe.healthy(),
                    })).await?;
                    probe.start(&self.engine);
                }
                _ = shutdown.changed() => {
                    self.flush(&mut inbound, &tx, sent_upto).await;
                    return Ok(());
                }
            }
        }
    }

    async fn handle(
        &mut self,
        msg: pb::ControlMessage,
        tx: &mpsc::Sender<pb::AgentMessage>,
    ) -> Result<(), SessionError> {
        match msg.msg {
            Some(In::Payload(p)) => {
                let tasks = p.tasks.into_iter().map(wire::task_from_wire).collect();
                let stops = p
                    .stops
                    .into_iter()
                    .map(|s| (s.task_arn, s.reason))
                    .collect();
                // Recorded first, acked after: a crash in between means a redelivery, which
                // is harmless because payloads are idempotent.
                self.engine.accept_payload(p.seq, tasks, stops)?;
                debug!(seq = p.seq, "payload recorded");
                tx.send(pb::AgentMessage {
                    msg: Some(Out::PayloadAck(pb::PayloadAck { seq: p.seq })),
                })
                .await
                .map_err(|_| SessionError::Transport("session stream closed".into()))?;
            }
            Some(In::StateChangeAck(a)) => self.store.ack_outbox(a.seq)?,
            Some(In::Manifest(m)) => {
                debug!(tasks = m.task_arns.len(), "task manifest received");
                self.engine.reconcile_manifest(&m.task_arns)?;
            }
            Some(In::LogRequest(r)) => self.log_request(r, tx),
            Some(In::ExecStart(e)) => self.exec_start(e, tx),
            Some(In::ExecInput(i)) => {
                for input in wire::exec_inputs(&i) {
                    self.execs.input(&i.exec_id, input);
                }
            }
            Some(In::HeartbeatAck(_)) | Some(In::Welcome(_)) | None => {}
        }
        Ok(())
    }

    /// Starts an exec off the session loop; its reports go out on this session, and end it
    /// (the process is killed) when the session ends.
    fn exec_start(&self, e: pb::ExecStart, tx: &mpsc::Sender<pb::AgentMessage>) {
        let query: ExecQuery = wire::exec_query(e);
        let exec_id = query.exec_id.clone();
        let (reports_tx, mut reports) = mpsc::channel::<ExecReport>(16);
        self.execs.start(query, reports_tx);
        let tx = tx.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    report = reports.recv() => {
                        let Some(report) = report else { return };
                        let msg = pb::AgentMessage {
                            msg: Some(Out::ExecOutput(wire::exec_output(&exec_id, report))),
                        };
                        if tx.send(msg).await.is_err() {
                            return;
                        }
                    }
                    // Dropping `reports` kills the exec.
                    _ = tx.closed() => return,
                }
            }
        });
    }

    /// Starts serving a log request off the session loop, or cancels one that is following.
    fn log_request(&self, r: pb::LogRequest, tx: &mpsc::Sender<pb::AgentMessage>) {
        if r.cancel {
            debug!(request = %r.request_id, "log request cancelled");
            self.logs.cancel(&r.request_id);
            return;
        }
        debug!(request = %r.request_id, task.arn = %r.task_arn, container.name = %r.container_name, "log request");
        let request_id = r.request_id.clone();
        let (send_tx, closed_tx) = (tx.clone(), tx.clone());
        let (send_alive, closed_alive) = (Arc::clone(&self.alive), Arc::clone(&self.alive));
        let sink = Sink {
            // Not blocking_send: a stream nobody polls any more must not hold this thread.
            send: Box::new(move |c: Chunk| {
                let mut msg = pb::AgentMessage {
                    msg: Some(Out::LogChunk(pb::LogChunk {
                        request_id: request_id.clone(),
                        data: c.data,
                        eof: c.eof,
                        error: c.error,
                    })),
                };
                loop {
                    if !send_alive.load(Ordering::Relaxed) {
                        return false;
                    }
                    match send_tx.try_send(msg) {
                        Ok(()) => return true,
                        Err(mpsc::error::TrySendError::Full(m)) => {
                            msg = m;
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => return false,
                    }
                }
            }),
            closed: Box::new(move || {
                closed_tx.is_closed() || !closed_alive.load(Ordering::Relaxed)
            }),
        };
        self.logs.start(
            LogQuery {
                request_id: r.request_id,
                task_arn: r.task_arn,
                container: r.container_name,
                tail_lines: r.tail_lines as usize,
                follow: r.follow,
            },
            sink,
        );
    }

    /// On shutdown: let the runtime actions under way finish (they may produce reports), then
    /// send everything still queued and give the control plane a moment to ack it, so that
    /// the next agent has little to send twice. Nothing is lost either way: the outbox is
    /// durable.
    async fn flush(
        &mut self,
        inbound: &mut tonic::Streaming<pb::ControlMessage>,
        tx: &mpsc::Sender<pb::AgentMessage>,
        mut sent_upto: u64,
    ) {
        self.engine.drain(Duration::from_secs(5)).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        loop {
            let Ok(batch) = self.store.outbox_after(sent_upto, OUTBOX_BATCH) else {
                return;
            };
            for entry in batch {
                sent_upto = entry.seq;
                let msg = pb::AgentMessage {
                    msg: Some(Out::StateChange(wire::state_change(entry))),
                };
                if tokio::time::timeout_at(deadline, tx.send(msg))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            if self.store.outbox_len().unwrap_or(0) == 0 {
                info!("every state change acked by the control plane");
                return;
            }
            match tokio::time::timeout_at(deadline, inbound.message()).await {
                Ok(Ok(Some(pb::ControlMessage {
                    msg: Some(In::StateChangeAck(a)),
                }))) => {
                    let _ = self.store.ack_outbox(a.seq);
                }
                Ok(Ok(Some(_))) => {}
                _ => {
                    warn!(
                        queued = self.store.outbox_len().unwrap_or(0),
                        "leaving with state changes not yet acked; the next start sends them"
                    );
                    return;
                }
            }
        }
    }
}

/// containerd's health as heartbeats report it. The check runs beside the session loop, never
/// in it: a hung containerd must not keep the session from reading what the control plane
/// sends (acks, payloads), or the session itself would time out. A check that has not
/// answered within its deadline counts as unhealthy; heartbeats carry the latest result.
#[derive(Clone)]
struct RuntimeProbe {
    healthy: Arc<AtomicBool>,
    in_flight: Arc<AtomicBool>,
}

impl Default for RuntimeProbe {
    fn default() -> Self {
        Self {
            healthy: Arc::new(AtomicBool::new(true)),
            in_flight: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl RuntimeProbe {
    const DEADLINE: Duration = Duration::from_secs(2);

    fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Starts a check unless one is under way.
    fn start<R: Runtime>(&self, engine: &Arc<Engine<R>>) {
        if self.in_flight.swap(true, Ordering::AcqRel) {
            return;
        }
        let (probe, engine) = (self.clone(), Arc::clone(engine));
        tokio::spawn(async move {
            let ok = tokio::time::timeout(Self::DEADLINE, engine.runtime().version())
                .await
                .is_ok_and(|r| r.is_ok());
            if ok != probe.healthy() {
                if ok {
                    info!("containerd answers again");
                } else {
                    warn!("containerd does not answer: reporting the instance impaired");
                }
            }
            probe.healthy.store(ok, Ordering::Relaxed);
            probe.in_flight.store(false, Ordering::Release);
        });
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_up_to_the_cap() {
        let mut b = Backoff::new(Duration::from_secs(4));
        let delays: Vec<u128> = (0..8).map(|_| b.next_delay().as_millis()).collect();
        assert!((125..=250).contains(&delays[0]), "{delays:?}");
        assert!((250..=500).contains(&delays[1]), "{delays:?}");
        assert!(delays[7] <= 4000 && delays[7] >= 2000, "{delays:?}");
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(250));
    }

    #[test]
    fn refusals_are_fatal_and_outages_are_not() {
        assert!(status_error(tonic::Status::unauthenticated("activation code unknown")).is_fatal());
        assert!(!status_error(tonic::Status::unavailable("down")).is_fatal());
    }
}
