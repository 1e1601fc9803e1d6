//! Carries out the task state machine: one worker (a tokio task, not a thread) per task, which
//! runs one action at a time against the runtime, folds the outcome back into the state, and
//! persists state and reports together before anything is sent.
//!
//! Exits reach workers through one subscription to the runtime's exit events; when that
//! subscription is re-established every worker re-checks its containers, so no exit is missed.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::{mpsc, Notify};
use tracing::{debug, info, info_span, warn, Instrument};

use crate::cgroups::{self, TaskCgroups};
use crate::health::{self, CheckResult};
use crate::images::ImageProvider;
use crate::manifest::{self, AgentTasks, ManifestTracker};
use crate::metrics::AgentMetrics;
use crate::model::{ContainerStatus, StopCode, TaskSpec, TaskStatus};
use crate::network::{Allocator, DynNetworkDriver, NetworkConfig, TaskNetwork};
use crate::resources::{self, Needs};
use crate::runtime::{CreateRequest, ExecRequest, ProcessState, Runtime, Stage};
use crate::store::{Store, StoreError};
use crate::task_metadata;
use crate::task_state::{Action, Event, Report, TaskState};

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Container logs go to `<logs_dir>/<task id>/<container name>.log`.
    pub logs_dir: PathBuf,
    /// Task-scoped volumes live in `<volumes_dir>/<task id>/<volume name>`.
    pub volumes_dir: PathBuf,
    /// How long a stopped task's containers, snapshots, volumes and logs are kept, for
    /// inspection, before they are removed (ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION).
    pub task_cleanup_wait: Duration,
    /// Task cgroups are `<cgroup_root>/<task id>`.
    pub cgroup_root: String,
    pub cpu_period_us: u64,
    pub pids_limit: Option<u64>,
    /// What the agent registered: tasks beyond it are refused.
    pub registered: Needs,
    pub network: NetworkConfig,
    /// Health checks' output files live here while a check runs.
    pub health_dir: PathBuf,
    /// Health checks running at once, over all containers: a bound on the execs (and so the
    /// processes and containerd calls) that checks cost, however many containers there are.
    pub max_concurrent_checks: usize,
    /// How long the control plane's task manifest and the agent may disagree about a task
    /// before the agent acts on it (see `manifest.rs`).
    pub manifest_grace: Duration,
    /// Whether bridge and awsvpc containers get the task metadata endpoint's URIs (the agent
    /// serves it on the bridge and gateway addresses, see `task_metadata`).
    pub task_metadata: bool,
}

/// How long one network setup or teardown may take before it counts as failed.
const NETWORK_CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Teardowns tried before a task's network is given up as leaked (and logged as such), so a
/// broken host cannot keep a task from ever reporting STOPPED.
const TEARDOWN_ATTEMPTS: u32 = 5;

/// The networks that tasks in `states` hold: what the allocator and the driver start from.
pub fn active_networks(states: &[TaskState]) -> Vec<TaskNetwork> {
    states
        .iter()
        .filter(|s| s.holds_network())
        .filter_map(|s| s.network.clone())
        .collect()
}

#[derive(Debug)]
enum WorkerMsg {
    Exited {
        runtime_id: String,
        exit_code: i32,
    },
    StopRequested,
    /// The exit subscription was re-established: look at the runtime again.
    Recheck,
    /// A container's health check ended.
    Health {
        container: String,
        result: CheckResult,
    },
}

pub struct Engine<R: Runtime> {
    runtime: Arc<R>,
    /// Gets containers' images into containerd (pull policy, registries).
    images: Arc<dyn ImageProvider>,
    cgroups: Arc<dyn TaskCgroups>,
    /// None when the host's networking could not be initialised: bridge and awsvpc tasks then
    /// fail with the reason kept in `network_unavailable`.
    network: Option<Arc<dyn DynNetworkDriver>>,
    network_unavailable: Option<String>,
    /// Addresses and host ports; seeded from the store in `start`.
    allocator: Mutex<Allocator>,
    store: Arc<Store>,
    cfg: EngineConfig,
    workers: Mutex<HashMap<String, mpsc::UnboundedSender<WorkerMsg>>>,
    /// runtime id -> task ARN, for routing exits.
    routes: Mutex<HashMap<String, String>>,
    /// Woken whenever reports are queued; the session sends them.
    pub outbox_ready: Arc<Notify>,
    /// Set on shutdown: workers start no new action.
    draining: AtomicBool,
    /// Actions being carried out now. containerd 1.6 ties a call's clean-up to the caller's
    /// connection, so an agent that exits mid-delete can leave a shim behind: shutdown waits for
    /// these to finish.
    in_flight: AtomicUsize,
    settled: Notify,
    check_slots: Arc<tokio::sync::Semaphore>,
    manifest: Mutex<ManifestTracker>,
    /// Launch and stop latencies are recorded here.
    metrics: Arc<AgentMetrics>,
}

/// A task as the control plane sent it, already converted from the wire.
#[derive(Debug, Clone)]
pub struct IncomingTask {
    pub spec: TaskSpec,
    pub desired: TaskStatus,
    /// Why the agent refuses to run the task, if it does: the task is recorded and stops at
    /// once with this reason.
    pub rejection: Option<String>,
    /// The service that started the task, if one did.
    pub service_name: Option<String>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl<R: Runtime> Engine<R> {
    /// `network` is the initialised network driver, or why there is none.
    pub fn new(
        runtime: Arc<R>,
        images: Arc<dyn ImageProvider>,
        cgroups: Arc<dyn TaskCgroups>,
        network: Result<Arc<dyn DynNetworkDriver>, String>,
        store: Arc<Store>,
        cfg: EngineConfig,
    ) -> Arc<Self> {
        let (network, network_unavailable) = match network {
            Ok(n) => (Some(n), None),
            Err(why) => (None, Some(why)),
        };
        let check_slots = Arc::new(tokio::sync::Semaphore::new(
            cfg.max_concurrent_checks.max(1),
        ));
        let manifest = Mutex::new(ManifestTracker::new(cfg.manifest_grace.as_millis() as u64));
        Arc::new(Self {
            runtime,
            images,
            cgroups,
            network,
            network_unavailable,
            allocator: Mutex::new(Allocator::new(&cfg.network, &[])),
            store,
            cfg,
            workers: Mutex::new(HashMap::new()),
            routes: Mutex::new(HashMap::new()),
            outbox_ready: Arc::new(Notify::new()),
            draining: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            settled: Notify::new(),
            check_slots,
            manifest,
            metrics: Arc::new(AgentMetrics::new()),
        })
    }

    pub fn metrics(&self) -> &Arc<AgentMetrics> {
        &self.metrics
    }

    /// Stops starting actions and waits, at most `limit`, for those under way to finish.
    /// Containers are left as they are: they belong to containerd.
    pub async fn drain(&self, limit: Duration) {
        self.draining.store(true, Ordering::SeqCst);
        let deadline = tokio::time::Instant::now() + limit;
        while self.in_flight.load(Ordering::SeqCst) > 0 {
            let settled = self.settled.notified();
            if self.in_flight.load(Ordering::SeqCst) == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, settled).await.is_err() {
                warn!(
                    actions = self.in_flight.load(Ordering::SeqCst),
                    "leaving with runtime actions still under way"
                );
                return;
            }
        }
    }

    pub fn runtime(&self) -> &R {
        &self.runtime
    }

    /// Starts the exit watcher and a worker for every unfinished task in the store: after an
    /// agent restart this adopts the running containers, it never restarts them.
    pub async fn start(self: &Arc<Self>) -> Result<(), StoreError> {
        let (subscribed_tx, mut subscribed_rx) = mpsc::channel(1);
        tokio::spawn(Arc::clone(self).watch_exits(subscribed_tx));
        // Workers may start containers only once exits are being watched; if the runtime is
        // down the watcher keeps trying and workers' recheck covers the gap.
        let _ = tokio::time::timeout(Duration::from_secs(5), subscribed_rx.recv()).await;
        let states = self.store.unfinished_tasks()?;
        // Leases and ports survive restarts because they are part of each task's state.
        *self.allocator_lock() = Allocator::new(&self.cfg.network, &active_networks(&states));
        for state in states {
            info!(task.arn = %state.spec.arn, "recovering task");
            self.spawn_worker(state, false);
        }
        tokio::spawn(Arc::clone(self).prune_finished_tasks());
        // What is on disk now, before any new task can create anything.
        let leftovers = self.task_dirs_and_cgroups();
        tokio::spawn(Arc::clone(self).sweep_orphans(leftovers));
        Ok(())
    }

    /// Forgets finished tasks a day after they finished (hourly): the store stays the size of
    /// what runs, not of everything that ever ran.
    async fn prune_finished_tasks(self: Arc<Self>) {
        const RETENTION_MS: u64 = 24 * 3600 * 1000;
        let mut every = tokio::time::interval(Duration::from_secs(3600));
        loop {
            every.tick().await;
            let before = now_ms().saturating_sub(RETENTION_MS) as i64;
            match self.store.prune_finished(before) {
                Ok(0) => {}
                Ok(n) => info!(tasks = n, "forgot finished tasks"),
                Err(e) => warn!(error = %e, "cannot prune finished tasks"),
            }
        }
    }

    /// The task ids that have a logs dir, a volumes dir or a cgroup.
    fn task_dirs_and_cgroups(&self) -> std::collections::BTreeSet<String> {
        // Only names shaped like task ids: the cgroup root may be shared with others.
        let mut ids: std::collections::BTreeSet<String> = self
            .cgroups
            .children(&self.cfg.cgroup_root)
            .into_iter()
            .filter(|n| n.len() >= 16 && n.bytes().all(|b| b.is_ascii_hexdigit()))
            .collect();
        for dir in [&self.cfg.logs_dir, &self.cfg.volumes_dir] {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                ids.insert(e.file_name().to_string_lossy().into_owned());
            }
        }
        ids
    }

    /// Removes containers of this namespace that carry our task label but belong to no task
    /// that still needs them: tasks the store does not know, or whose cleanup is recorded as
    /// done. Record-then-act makes them rare (a cleanup that an operator or a restore
    /// undid, a store restored from a backup), but a leftover would hold a snapshot and a
    /// cgroup forever. Containers without our label are not ours to touch.
    ///
    /// Then the task cgroups, logs and volumes dirs of tasks that own nothing any more (in
    /// `candidates`, listed before any new task started, plus the orphan containers' tasks):
    /// a task's own cleanup removes them, but not when its record is gone.
    async fn sweep_orphans(self: Arc<Self>, mut candidates: std::collections::BTreeSet<String>) {
        let listed = match self.runtime.list().await {
            Ok(l) => l,
            Err(e) => {
                warn!(error = %e, "cannot list containers to sweep orphans");
                return;
            }
        };
        for c in listed {
            let Some(arn) = c.task_arn else { continue };
            let owned = match self.store.task(&arn) {
                Ok(Some(state)) => !state.cleaned_up,
                Ok(None) => false,
                Err(e) => {
                    warn!(error = %e, "cannot read the store; orphan sweep stopped");
                    return;
                }
            };
            if owned {
                continue;
            }
            info!(runtime_id = %c.runtime_id, task.arn = %arn, "removing an orphan container");
            match self.runtime.remove(&c.runtime_id).await {
                Ok(()) => {
                    candidates.insert(arn.rsplit('/').next().unwrap_or(&arn).to_owned());
                }
                Err(e) => {
                    warn!(runtime_id = %c.runtime_id, error = %e, "cannot remove an orphan container");
                    // Its cgroup cannot go while it lives.
                    candidates.remove(arn.rsplit('/').next().unwrap_or(&arn));
                }
            }
        }
        let owned: std::collections::HashSet<String> = match self.store.unfinished_tasks() {
            Ok(states) => states
                .iter()
                .filter(|s| !s.cleaned_up)
                .map(|s| s.spec.id().to_owned())
                .collect(),
            Err(e) => {
                warn!(error = %e, "cannot read the store; orphan sweep stopped");
                return;
            }
        };
        for id in candidates.iter().filter(|id| !owned.contains(*id)) {
            info!(task.id = %id, "removing an orphan task's cgroup, logs and volumes");
            let cgroup = cgroups::task_cgroup_path(&self.cfg.cgroup_root, id);
            if let Err(e) = self.cgroups.remove(&cgroup) {
                warn!(cgroup = %cgroup, error = %e, "cannot remove an orphan task cgroup");
            }
            for dir in [&self.cfg.logs_dir, &self.cfg.volumes_dir] {
                let path = dir.join(id);
                if let Err(e) = std::fs::remove_dir_all(&path) {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        warn!(path = %path.display(), error = %e, "cannot remove an orphan task dir");
                    }
                }
            }
        }
    }

    /// Records a payload and hands its tasks to workers. Returns once everything is durable:
    /// only then may the session ack the payload.
    pub fn accept_payload(
        self: &Arc<Self>,
        seq: u64,
        tasks: Vec<IncomingTask>,
        stops: Vec<(String, String)>,
    ) -> Result<(), StoreError> {
        // What running tasks hold: a new task must fit beside them (and beside the new tasks
        // of this payload accepted before it).
        let mut used = Needs::default();
        for s in self.store.unfinished_tasks()? {
            if s.known != TaskStatus::Stopped {
                let n = resources::needs(&s.spec);
                used.cpu += n.cpu;
                used.memory_mib += n.memory_mib;
            }
        }
        let mut states = Vec::with_capacity(tasks.len());
        for t in tasks {
            let now = now_ms();
            let known = self.store.task(&t.spec.arn)?.is_some();
            let mut state = TaskState::new(t.spec, t.desired, now);
            state.service_name = t.service_name;
            // Recorded before the worker creates it, so cleanup finds it after any crash.
            state.cgroup = Some(cgroups::task_cgroup_path(
                &self.cfg.cgroup_root,
                state.spec.id(),
            ));
            let mut refusal = t.rejection.map(|r| format!("invalid task: {r}"));
            if refusal.is_none() && !known && state.desired == TaskStatus::Running {
                let n = resources::needs(&state.spec);
                refusal = resources::refusal(n, used, self.cfg.registered);
                if refusal.is_none() {
                    used.cpu += n.cpu;
                    used.memory_mib += n.memory_mib;
                }
            }
            if let Some(reason) = refusal {
                let first = state.containers.first().map(|c| c.name.clone());
                state.apply(
                    Event::Failed {
                        container: first.unwrap_or_default(),
                        reason,
                    },
                    now,
                );
            }
            states.push(state);
        }
        let touched = self
            .store
            .record_payload(seq, &states, &stops, now_ms() as i64)?;
        self.tell_workers(touched)
    }

    /// Hands tasks whose record changed to their workers (a stop request), or to new workers.
    fn tell_workers(self: &Arc<Self>, touched: Vec<String>) -> Result<(), StoreError> {
        for arn in touched {
            let sender = self.workers_lock().get(&arn).cloned();
            match sender {
                Some(tx) => {
                    let _ = tx.send(WorkerMsg::StopRequested);
                }
                None => {
                    if let Some(state) = self.store.task(&arn)? {
                        if !state.is_finished() {
                            let fresh = state.known == TaskStatus::Pending;
                            self.spawn_worker(state, fresh);
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Folds in a task manifest from the control plane: stops the tasks it has stopped
    /// listing and reports STOPPED the tasks it lists that this agent never received, each
    /// once the disagreement has outlasted the grace period. Durable before it returns.
    pub fn reconcile_manifest(self: &Arc<Self>, listed: &[String]) -> Result<(), StoreError> {
        let stopping: std::collections::HashSet<String> =
            self.store.stop_requested_arns()?.into_iter().collect();
        let mut agent = AgentTasks {
            known: self.store.task_arns()?.into_iter().collect(),
            ..AgentTasks::default()
        };
        for s in self.store.unfinished_tasks()? {
            if s.desired == TaskStatus::Running
                && s.known != TaskStatus::Stopped
                && !stopping.contains(&s.spec.arn)
            {
                agent.active.insert(s.spec.arn);
            }
        }
        let decisions = self
            .manifest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .observe(listed, &agent, now_ms());
        let mut touched = Vec::new();
        for arn in decisions.stop {
            warn!(task.arn = %arn, "the control plane no longer lists this task: stopping it");
            if self.store.request_stop(&arn, manifest::STOP_REASON)? {
                touched.push(arn);
            }
        }
        for arn in decisions.report_missing {
            warn!(task.arn = %arn, "the control plane lists a task this agent never received: reporting it STOPPED");
            let (state, reports) =
                TaskState::never_received(&arn, manifest::MISSING_REASON, now_ms());
            if self
                .store
                .record_finished_task(&state, reports, now_ms() as i64)?
            {
                self.outbox_ready.notify_one();
            }
        }
        self.tell_workers(touched)
    }

    pub fn running_tasks(&self) -> usize {
        self.workers_lock().len()
    }

    fn workers_lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, mpsc::UnboundedSender<WorkerMsg>>> {
        self.workers.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn allocator_lock(&self) -> std::sync::MutexGuard<'_, Allocator> {
        self.allocator.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn routes_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.routes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `fresh`: the task has just arrived, so its launch is timed.
    fn spawn_worker(self: &Arc<Self>, mut state: TaskState, fresh: bool) {
        let arn = state.spec.arn.clone();
        for c in &mut state.containers {
            if c.metadata_endpoint_id.is_empty() {
                // Kept with the task from its first persist on.
                c.metadata_endpoint_id = task_metadata::new_endpoint_id();
            }
        }
        let (tx, rx) = mpsc::unbounded_channel();
        {
            let mut workers = self.workers_lock();
            if workers.contains_key(&arn) {
                return;
            }
            workers.insert(arn.clone(), tx);
        }
        for c in &state.containers {
            self.routes_lock().insert(c.runtime_id.clone(), arn.clone());
        }
        let span = info_span!("task", task.id = %state.spec.id(), task.family = %state.spec.family);
        let engine = Arc::clone(self);
        tokio::spawn(
            async move {
                let worker = Worker {
                    engine: Arc::clone(&engine),
                    state,
                    rx,
                    teardown_failures: 0,
                    saved: None,
                    checkers: HashMap::new(),
                    launch_started: fresh.then(Instant::now),
                    stop_started: None,
                };
                worker.run().await;
                let mut workers = engine.workers_lock();
                workers.remove(&arn);
                drop(workers);
                engine.routes_lock().retain(|_, a| a != &arn);
            }
            .instrument(span),
        );
    }

    async fn watch_exits(self: Arc<Self>, subscribed: mpsc::Sender<()>) {
        let mut backoff = Duration::from_millis(200);
        loop {
            match self.runtime.exits().await {
                Ok(mut stream) => {
                    backoff = Duration::from_millis(200);
                    let _ = subscribed.try_send(());
                    // Anything that exited while we were not subscribed is found by a recheck.
                    for tx in self.workers_lock().values() {
                        let _ = tx.send(WorkerMsg::Recheck);
                    }
                    while let Some(exit) = stream.next().await {
                        let arn = self.routes_lock().get(&exit.runtime_id).cloned();
                        let Some(arn) = arn else {
                            debug!(runtime_id = %exit.runtime_id, "exit of a container we do not track");
                            continue;
                        };
                        if let Some(tx) = self.workers_lock().get(&arn) {
                            let _ = tx.send(WorkerMsg::Exited {
                                runtime_id: exit.runtime_id,
                                exit_code: exit.exit_code,
                            });
                        }
                    }
                    warn!("the runtime's event stream ended; resubscribing");
                }
                Err(e) => warn!(error = %e, "cannot subscribe to runtime exits; retrying"),
            }
            tokio::time::sleep(backoff).await;
            // Capped low: the first attempt after containerd returns decides how late the
            // exits it kept are seen, and a refused connect on a unix socket costs nothing.
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }
}

struct Worker<R: Runtime> {
    engine: Arc<Engine<R>>,
    state: TaskState,
    rx: mpsc::UnboundedReceiver<WorkerMsg>,
    teardown_failures: u32,
    /// The health checker of each checked container that is running.
    checkers: HashMap<String, tokio::task::JoinHandle<()>>,
    /// The state as last written to the store: an unchanged state is not written again.
    saved: Option<TaskState>,
    /// When this agent received the task, until it is RUNNING (for the launch metric).
    launch_started: Option<Instant>,
    /// When a running task was told to stop, until it is STOPPED (for the stop metric).
    stop_started: Option<Instant>,
}

impl<R: Runtime> Drop for Worker<R> {
    fn drop(&mut self) {
        for (_, checker) in self.checkers.drain() {
            checker.abort();
        }
    }
}

impl<R: Runtime> Worker<R> {
    async fn run(mut self) {
        // What containerd has first: a stop applied to a container recorded as created, but
        // started just before a crash, would count it as never started and lose its exit.
        self.recheck().await;
        self.check_stop_request();
        self.remove_stale_checks().await;
        loop {
            if let Err(e) = self.persist() {
                // Without the store we cannot promise anything: keep the task as it is and
                // retry, rather than act on state we could not record.
                warn!(error = %e, "cannot persist task state; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            self.sync_checkers();
            if self.state.is_finished() {
                info!(
                    stop_code = ?self.state.stop_code,
                    reason = self.state.stopped_reason.as_deref().unwrap_or(""),
                    "task finished"
                );
                return;
            }
            if let Some(action) = self
                .state
                .plan(now_ms(), self.cleanup_wait_ms())
                .into_iter()
                .next()
            {
                if self.engine.draining.load(Ordering::SeqCst) {
                    // Shutting down: the next agent picks the task up from the store.
                    std::future::pending::<()>().await;
                }
                self.engine.in_flight.fetch_add(1, Ordering::SeqCst);
                let event = self.execute(action).await;
                if let Some(event) = event {
                    self.state.apply(event, now_ms());
                }
                // Recorded before the action counts as done: a shutdown waits for in-flight
                // actions and then sends what they reported.
                if let Err(e) = self.persist() {
                    warn!(error = %e, "cannot persist task state; retrying");
                }
                self.engine.in_flight.fetch_sub(1, Ordering::SeqCst);
                self.engine.settled.notify_waiters();
                continue;
            }
            self.wait().await;
        }
    }

    fn cleanup_wait_ms(&self) -> u64 {
        self.engine.cfg.task_cleanup_wait.as_millis() as u64
    }

    fn persist(&mut self) -> Result<(), StoreError> {
        if self.state.desired == TaskStatus::Stopped
            && self.state.known == TaskStatus::Running
            && self.stop_started.is_none()
        {
            self.stop_started = Some(Instant::now());
        }
        let mut next = self.state.clone();
        let reports = next.take_reports();
        self.time_transitions(&reports);
        let had_reports = !reports.is_empty();
        if !had_reports && self.saved.as_ref() == Some(&next) {
            return Ok(());
        }
        self.engine
            .store
            .save_task(&next, reports, now_ms() as i64)?;
        self.saved = Some(next.clone());
        self.state = next;
        if had_reports {
            self.engine.outbox_ready.notify_one();
        }
        Ok(())
    }

    /// Launch and stop latencies, from the task's RUNNING and STOPPED reports.
    fn time_transitions(&mut self, reports: &[Report]) {
        for report in reports {
            match report {
                Report::Task {
                    status: TaskStatus::Running,
                    ..
                } => {
                    if let Some(started) = self.launch_started.take() {
                        self.engine.metrics.task_launched(started.elapsed());
                    }
                }
                Report::Task {
                    status: TaskStatus::Stopped,
                    ..
                } => {
                    // A task that never ran has no launch to time.
                    self.launch_started = None;
                    if let Some(started) = self.stop_started.take() {
                        self.engine.metrics.task_stopped(started.elapsed());
                    }
                }
                _ => {}
            }
        }
    }

    fn check_stop_request(&mut self) {
        match self.engine.store.stop_request(&self.state.spec.arn) {
            Ok(Some(stop)) => self.state.apply(
                Event::StopRequested {
                    code: StopCode::UserInitiated,
                    reason: stop.reason,
                },
                now_ms(),
            ),
            Ok(None) => {}
            Err(e) => warn!(error = %e, "cannot read the task's stop request"),
        }
    }

    /// Removes health checks and users' execs that a previous agent left running in this
    /// task's containers (it died mid-check or mid-session): a hanging check would run for
    /// ever and hold a pids slot, and an exec's user is gone with the old session. Before the
    /// checkers start, so only leftovers can be found.
    async fn remove_stale_checks(&mut self) {
        let running: Vec<(String, String, bool)> = self
            .state
            .containers
            .iter()
            .filter(|c| c.known == ContainerStatus::Running)
            .map(|c| (c.name.clone(), c.runtime_id.clone(), c.health.is_some()))
            .collect();
        for (name, id, checked) in running {
            let mut prefixes = vec![crate::runtime::attached::EXEC_PREFIX];
            if checked {
                prefixes.push(health::EXEC_PREFIX);
            }
            for prefix in prefixes {
                match self.engine.runtime.remove_execs(&id, prefix).await {
                    Ok(0) => {}
                    Ok(n) => {
                        info!(container.name = %name, removed = n, prefix, "removed execs a previous agent left running")
                    }
                    Err(e) => {
                        warn!(container.name = %name, error = %e, prefix, "cannot remove leftover execs")
                    }
                }
            }
        }
    }

    /// Compares what the state expects with what the runtime has: exits that happened while
    /// nobody watched, and containers that are gone.
    async fn recheck(&mut self) {
        let expected: Vec<(String, String, ContainerStatus)> = self
            .state
            .containers
            .iter()
            .filter(|c| matches!(c.known, ContainerStatus::Created | ContainerStatus::Running))
            .map(|c| (c.name.clone(), c.runtime_id.clone(), c.known))
            .collect();
        for (name, id, known) in expected {
            match self.engine.runtime.state(&id).await {
                Ok(ProcessState::Stopped { exit_code }) if known == ContainerStatus::Running => {
                    self.exited(name, &id, exit_code)
                }
                // The agent died between Tasks.Start and recording it: the process is the one
                // it started, so adopt it rather than start (or fail) it again. A process that
                // was never started is Created, not Stopped.
                Ok(ProcessState::Running) if known == ContainerStatus::Created => {
                    info!(container.name = %name, "adopting a container started before a restart");
                    self.state
                        .apply(Event::Started { container: name }, now_ms());
                }
                Ok(ProcessState::Stopped { exit_code }) if known == ContainerStatus::Created => {
                    info!(container.name = %name, exit_code, "a container started before a restart has exited");
                    self.state.apply(
                        Event::Started {
                            container: name.clone(),
                        },
                        now_ms(),
                    );
                    self.exited(name, &id, exit_code)
                }
                Ok(ProcessState::Missing) => self
                    .state
                    .apply(Event::Vanished { container: name }, now_ms()),
                Ok(_) => {}
                Err(e) => warn!(container.name = %name, error = %e, "cannot check container"),
            }
        }
    }

    async fn wait(&mut self) {
        let now = now_ms();
        // A container that got SIGKILL but never reported an exit is polled, not trusted.
        let poll_killed = self
            .state
            .containers
            .iter()
            .any(|c| c.known == ContainerStatus::Running && c.kill_sent);
        let deadline = self
            .state
            .next_deadline_ms(self.cleanup_wait_ms())
            .map(|d| d.saturating_sub(now))
            .or(poll_killed.then_some(2000))
            .unwrap_or(3_600_000);
        let msg = tokio::select! {
            msg = self.rx.recv() => msg,
            _ = tokio::time::sleep(Duration::from_millis(deadline)) => {
                if poll_killed {
                    self.recheck().await;
                }
                return;
            }
        };
        match msg {
            Some(WorkerMsg::Exited {
                runtime_id,
                exit_code,
            }) => {
                let name = self
                    .state
                    .containers
                    .iter()
                    .find(|c| c.runtime_id == runtime_id)
                    .map(|c| c.name.clone());
                if let Some(name) = name {
                    // Exits are matched by container id, and an id outlives its processes: a
                    // launch retried after a crash deletes the created process and starts a
                    // new one, and the old one's exit can arrive after the new one started.
                    // containerd's current state decides.
                    let exit_code = match self.engine.runtime.state(&runtime_id).await {
                        Ok(ProcessState::Running) | Ok(ProcessState::Created) => {
                            info!(container.name = %name, exit_code, "ignoring the exit of a process that was replaced");
                            return;
                        }
                        Ok(ProcessState::Stopped { exit_code }) => exit_code,
                        Ok(ProcessState::Missing) | Err(_) => exit_code,
                    };
                    info!(container.name = %name, exit_code, "container exited");
                    self.exited(name, &runtime_id, exit_code);
                }
            }
            Some(WorkerMsg::StopRequested) => self.check_stop_request(),
            Some(WorkerMsg::Recheck) => self.recheck().await,
            Some(WorkerMsg::Health { container, result }) => {
                let before = self.health_of(&container);
                self.state.apply(
                    Event::HealthChecked {
                        container: container.clone(),
                        result,
                    },
                    now_ms(),
                );
                let after = self.health_of(&container);
                if before != after {
                    let last = self
                        .state
                        .container(&container)
                        .and_then(|c| c.health.as_ref())
                        .and_then(|h| h.last.as_ref());
                    info!(
                        container.name = %container,
                        health = after.map_or("", |h| h.as_str()),
                        exit_code = ?last.and_then(|l| l.exit_code),
                        output = last.map_or("", |l| l.output.as_str()),
                        "health changed"
                    );
                }
            }
            // The engine is going away (agent shutdown): leave everything as it is.
            None => std::future::pending::<()>().await,
        }
    }

    /// An exit, with ECS's OOM reason when the kernel's OOM killer caused it: a SIGKILL (137)
    /// and an oom_kill counted in the container's own cgroup, which runc keeps until the
    /// container's process is deleted.
    fn exited(&mut self, name: String, runtime_id: &str, exit_code: i32) {
        if exit_code == 128 + libc::SIGKILL {
            if let Some(cg) = &self.state.cgroup {
                if self
                    .engine
                    .cgroups
                    .oom_killed(&format!("{cg}/{runtime_id}"))
                {
                    info!(container.name = %name, "container was killed by the OOM killer");
                    self.state.apply(
                        Event::OutOfMemory {
                            container: name.clone(),
                        },
                        now_ms(),
                    );
                }
            }
        }
        self.state.apply(
            Event::Exited {
                container: name,
                exit_code,
            },
            now_ms(),
        );
    }

    /// Creates the task's cgroup and writes its limits; idempotent, so it runs before every
    /// container's create (the first one creates it, also after an agent restart).
    fn ensure_task_cgroup(&self) -> Result<(), cgroups::CgroupError> {
        let Some(path) = &self.state.cgroup else {
            return Ok(());
        };
        let cfg = &self.engine.cfg;
        let limits = cgroups::task_limits(&self.state.spec, cfg.cpu_period_us, cfg.pids_limit);
        self.engine.cgroups.create(path, &limits)
    }

    async fn execute(&mut self, action: Action) -> Option<Event> {
        let runtime = &self.engine.runtime;
        match action {
            Action::ResolveImage(name) => {
                let spec = self.spec_of(&name)?;
                let (image, auth) = (spec.image.clone(), spec.extra.registry_auth.clone());
                let span = info_span!("container", container.name = %name);
                let images = Arc::clone(&self.engine.images);
                let resolve_started = now_ms();
                match images.ensure(&image, auth.as_ref()).instrument(span).await {
                    Ok(ensured) => {
                        // ECS's imageDigest: what the name points to now that it is here. A
                        // failure here fails the create that follows, with its own reason.
                        let digest = runtime.resolve_image(&image).await.ok();
                        info!(container.name = %name, "{}", ensured.summary);
                        // ECS shows pullStartedAt/pullStoppedAt for every task (its agent pulls
                        // by default); a cached image's are the time its lookup took.
                        let (started_at_ms, stopped_at_ms) =
                            ensured.pulled.unwrap_or((resolve_started, now_ms()));
                        self.state.apply(
                            Event::ImageReady {
                                container: name.clone(),
                                summary: ensured.summary,
                                pulled: Some(crate::task_state::PullTimes {
                                    started_at_ms,
                                    stopped_at_ms,
                                }),
                                digest,
                            },
                            now_ms(),
                        );
                        Some(Event::ImageResolved { container: name })
                    }
                    Err(e) => Some(Event::Failed {
                        container: name,
                        reason: format!("CannotPullContainerError: {e}"),
                    }),
                }
            }
            Action::Create(name) => {
                if let Err(e) = self.ensure_task_cgroup() {
                    return Some(Event::Failed {
                        container: name,
                        reason: format!("CannotCreateContainerError: task cgroup: {e}"),
                    });
                }
                let req = self.create_request(&name)?;
                let span = info_span!("container", container.name = %name);
                match runtime.create(&req).instrument(span).await {
                    Ok(()) => Some(Event::Created { container: name }),
                    Err(e) => Some(Event::Failed {
                        container: name,
                        reason: Stage::Create.reason(&e),
                    }),
                }
            }
            Action::Start(name) => {
                let id = self.state.container(&name)?.runtime_id.clone();
                let span = info_span!("container", container.name = %name);
                match runtime.start(&id).instrument(span).await {
                    Ok(()) => {
                        info!(container.name = %name, runtime_id = %id, "container started");
                        Some(Event::Started { container: name })
                    }
                    Err(e) => Some(Event::Failed {
                        container: name,
                        reason: Stage::Start.reason(&e),
                    }),
                }
            }
            Action::Restart(name) => {
                let id = self.state.container(&name)?.runtime_id.clone();
                let log_path = self.log_path(&name);
                let span = info_span!("container", container.name = %name);
                match runtime.restart(&id, &log_path).instrument(span).await {
                    Ok(()) => {
                        info!(container.name = %name, "container restarted by its restart policy");
                        Some(Event::Restarted { container: name })
                    }
                    Err(e) => Some(Event::RestartFailed {
                        container: name,
                        reason: Stage::Start.reason(&e),
                    }),
                }
            }
            Action::Fail { container, reason } => {
                warn!(container.name = %container, %reason, "container cannot start");
                Some(Event::Failed { container, reason })
            }
            Action::Stop {
                container,
                timeout_secs,
            } => {
                let id = self.state.container(&container)?.runtime_id.clone();
                info!(container.name = %container, timeout_secs, "stopping container");
                if let Err(e) = runtime.signal(&id, libc::SIGTERM).await {
                    warn!(container.name = %container, error = %e, "SIGTERM failed; SIGKILL follows after the timeout");
                }
                Some(Event::StopSignalSent { container })
            }
            Action::Kill(container) => {
                let id = self.state.container(&container)?.runtime_id.clone();
                info!(container.name = %container, "stop timeout elapsed; killing container");
                if let Err(e) = runtime.signal(&id, libc::SIGKILL).await {
                    warn!(container.name = %container, error = %e, "SIGKILL failed");
                }
                Some(Event::KillSent { container })
            }
            Action::PlanNetwork => Some(self.plan_network()),
            Action::SetupNetwork => {
                let net = self.state.network.clone()?;
                Some(self.setup_network(&net).await)
            }
            Action::TeardownNetwork => {
                let net = self.state.network.clone()?;
                self.teardown_network(&net).await
            }
            Action::Cleanup => {
                let ids: Vec<String> = self
                    .state
                    .containers
                    .iter()
                    .map(|c| c.runtime_id.clone())
                    .collect();
                for id in ids {
                    if let Err(e) = runtime.remove(&id).await {
                        warn!(runtime_id = %id, error = %e, "cleanup failed; retrying");
                        tokio::time::sleep(Duration::from_secs(2)).await;
                        return None;
                    }
                }
                // The containers' cgroups went with them; the task's own is the agent's.
                if let Some(cg) = &self.state.cgroup {
                    if let Err(e) = self.engine.cgroups.remove(cg) {
                        warn!(cgroup = %cg, error = %e, "cannot remove the task's cgroup");
                    }
                }
                // The logs go with the containers: the wait was the time to read them.
                let logs = self.engine.cfg.logs_dir.join(self.state.spec.id());
                if let Err(e) = std::fs::remove_dir_all(&logs) {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        warn!(path = %logs.display(), error = %e, "cannot remove the task's logs");
                    }
                }
                // Task-scoped volumes live exactly as long as the task's containers.
                let volumes = self.engine.cfg.volumes_dir.join(self.state.spec.id());
                if let Err(e) = std::fs::remove_dir_all(&volumes) {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        warn!(path = %volumes.display(), error = %e, "cannot remove the task's volumes");
                    }
                }
                Some(Event::CleanedUp)
            }
        }
    }

    fn health_of(&self, container: &str) -> Option<health::HealthStatus> {
        self.state
            .container(container)
            .and_then(|c| c.health.as_ref())
            .map(|h| h.status)
    }

    /// One checker for each running container with a healthCheck, none for the others.
    fn sync_checkers(&mut self) {
        let mut wanted = Vec::new();
        for c in &self.state.containers {
            let running = c.known == ContainerStatus::Running && c.restart_pending.is_none();
            let check = self
                .spec_of(&c.name)
                .and_then(|s| s.extra.health_check.clone());
            if let (true, Some(check)) =
                (running && self.state.desired == TaskStatus::Running, check)
            {
                wanted.push((c.name.clone(), c.runtime_id.clone(), check));
            }
        }
        self.checkers.retain(|name, handle| {
            let keep = wanted.iter().any(|(n, _, _)| n == name) && !handle.is_finished();
            if !keep {
                handle.abort();
            }
            keep
        });
        for (name, runtime_id, check) in wanted {
            if self.checkers.contains_key(&name) {
                continue;
            }
            let Some(tx) = self
                .engine
                .workers_lock()
                .get(&self.state.spec.arn)
                .map(|tx| tx.downgrade())
            else {
                continue;
            };
            let engine = Arc::clone(&self.engine);
            let span = info_span!("container", container.name = %name);
            let handle = tokio::spawn(
                run_checks(engine, tx, name.clone(), runtime_id, check).instrument(span),
            );
            self.checkers.insert(name, handle);
        }
    }

    /// Decides the task's network and reserves its address and ports; the worker persists
    /// the decision before anything is created.
    fn plan_network(&self) -> Event {
        let spec = &self.state.spec;
        if spec.network_mode.has_task_netns() {
            if let Some(why) = &self.engine.network_unavailable {
                return Event::NetworkFailed {
                    reason: format!(
                        "network mode {} is unavailable on this instance: {why}",
                        spec.network_mode.as_str()
                    ),
                };
            }
        }
        match self.engine.allocator_lock().allocate(spec) {
            Ok(network) => {
                if let Some(n) = &network {
                    info!(address = ?n.address, bindings = n.bindings.len(), "network planned");
                }
                Event::NetworkPlanned { network }
            }
            Err(e) => Event::NetworkFailed {
                reason: e.to_string(),
            },
        }
    }

    async fn setup_network(&self, net: &TaskNetwork) -> Event {
        let Some(driver) = &self.engine.network else {
            // Host mode without a driver: its ports are reservations only.
            return Event::NetworkUp;
        };
        match tokio::time::timeout(NETWORK_CALL_TIMEOUT, driver.setup(net)).await {
            Ok(Ok(())) => {
                info!(netns = ?net.netns, address = ?net.address, "network up");
                Event::NetworkUp
            }
            Ok(Err(e)) => Event::NetworkFailed {
                reason: e.to_string(),
            },
            Err(_) => Event::NetworkFailed {
                reason: format!("setup timed out after {}s", NETWORK_CALL_TIMEOUT.as_secs()),
            },
        }
    }

    /// Removes the network and frees its address and ports. A failure is retried; after
    /// [`TEARDOWN_ATTEMPTS`] the network is given up (logged) rather than keep the task from
    /// stopping.
    async fn teardown_network(&mut self, net: &TaskNetwork) -> Option<Event> {
        let result = match &self.engine.network {
            Some(driver) => tokio::time::timeout(NETWORK_CALL_TIMEOUT, driver.teardown(net))
                .await
                .unwrap_or_else(|_| {
                    Err(crate::network::NetworkError::Io(format!(
                        "teardown timed out after {}s",
                        NETWORK_CALL_TIMEOUT.as_secs()
                    )))
                }),
            None => Ok(()),
        };
        if let Err(e) = result {
            self.teardown_failures += 1;
            if self.teardown_failures < TEARDOWN_ATTEMPTS {
                warn!(error = %e, attempt = self.teardown_failures, "network teardown failed; retrying");
                tokio::time::sleep(Duration::from_secs(2)).await;
                return None;
            }
            warn!(error = %e, netns = ?net.netns, veth = ?net.host_veth,
                "network teardown keeps failing; giving up, these may be left behind until the agent restarts");
        } else {
            info!("network released");
        }
        self.engine.allocator_lock().release(net);
        Some(Event::NetworkReleased)
    }

    fn log_path(&self, name: &str) -> PathBuf {
        crate::logs::log_path(&self.engine.cfg.logs_dir, self.state.spec.id(), name)
    }

    fn spec_of(&self, name: &str) -> Option<&crate::model::ContainerSpec> {
        self.state.spec.containers.iter().find(|c| c.name == name)
    }

    fn create_request(&self, name: &str) -> Option<CreateRequest> {
        let mut spec = self.spec_of(name)?.clone();
        let c = self.state.container(name)?;
        let task_id = self.state.spec.id().to_string();
        if self.engine.cfg.task_metadata {
            task_metadata::add_uris(
                &mut spec.environment,
                self.state.spec.network_mode,
                &c.metadata_endpoint_id,
            );
        }
        Some(CreateRequest {
            runtime_id: c.runtime_id.clone(),
            task_arn: self.state.spec.arn.clone(),
            log_path: self.log_path(name),
            task_volumes_dir: self.engine.cfg.volumes_dir.join(&task_id),
            task_id,
            network_mode: self.state.spec.network_mode,
            netns_path: self
                .state
                .network
                .as_ref()
                .and_then(|n| n.netns_path(&self.engine.cfg.network)),
            address: self.state.network.as_ref().and_then(|n| n.address),
            container: spec,
            task: self.state.spec.clone(),
            cgroup_parent: self.state.cgroup.clone(),
        })
    }
}

/// Checks one container for as long as it runs: first within its first interval (jittered,
/// so containers started together do not check together), then every interval after the end
/// of the previous check. Each check waits for one of the engine's check slots.
async fn run_checks<R: Runtime>(
    engine: Arc<Engine<R>>,
    worker: mpsc::WeakUnboundedSender<WorkerMsg>,
    container: String,
    runtime_id: String,
    check: crate::model::HealthCheck,
) {
    let interval = Duration::from_secs(u64::from(check.interval_secs.max(1)));
    let mut delay = health::first_delay(&check, fastrand::f64());
    let mut n: u64 = 0;
    loop {
        tokio::time::sleep(delay).await;
        delay = interval;
        let Ok(_slot) = Arc::clone(&engine.check_slots).acquire_owned().await else {
            return;
        };
        if engine.draining.load(Ordering::SeqCst) {
            return;
        }
        n += 1;
        let exec_id = format!("{}{n}-{:08x}", health::EXEC_PREFIX, fastrand::u32(..));
        let req = ExecRequest {
            output_path: engine
                .cfg
                .health_dir
                .join(format!("{runtime_id}.{exec_id}.out")),
            runtime_id: runtime_id.clone(),
            exec_id,
            args: check.args.clone(),
            timeout: Duration::from_secs(u64::from(check.timeout_secs.max(1))),
        };
        engine.in_flight.fetch_add(1, Ordering::SeqCst);
        let outcome = engine.runtime.exec(&req).await;
        engine.in_flight.fetch_sub(1, Ordering::SeqCst);
        engine.settled.notify_waiters();
        let result = match outcome {
            Ok(o) => CheckResult {
                exit_code: o.exit_code,
                output: o.output,
                ended_at_ms: now_ms(),
            },
            // A check that cannot even start (no such command, say) is a failed check.
            Err(e) => CheckResult {
                exit_code: Some(-1),
                output: health::truncate_output(e.to_string().as_bytes()),
                ended_at_ms: now_ms(),
            },
        };
        debug!(exit_code = ?result.exit_code, "health check");
        let Some(tx) = worker.upgrade() else {
            return;
        };
        if tx
            .send(WorkerMsg::Health {
                container: container.clone(),
                result,
            })
            .is_err()
        {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ContainerSpec, NetworkMode};
    use crate::runtime::fake::FakeRuntime;
    use crate::store::StoredReport;

    struct Harness {
        engine: Arc<Engine<FakeRuntime>>,
        cgroups: Arc<crate::cgroups::FakeCgroups>,
        network: Arc<crate::network::FakeNetwork>,
        store: Arc<Store>,
        dir: PathBuf,
    }

    impl Drop for Harness {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn harness(images: &[&str]) -> Harness {
        harness_with_wait(images, Duration::ZERO)
    }

    fn harness_with_wait(images: &[&str], task_cleanup_wait: Duration) -> Harness {
        let dir = std::env::temp_dir().join(format!("berth-engine-{}", fastrand::u64(..)));
        std::fs::create_dir_all(&dir).unwrap();
        let store = Arc::new(Store::open(&dir.join("agent.db")).unwrap());
        let cgroups = Arc::new(crate::cgroups::FakeCgroups::default());
        let network = Arc::new(crate::network::FakeNetwork::default());
        let runtime = Arc::new(FakeRuntime::new(images));
        let engine = Engine::new(
            Arc::clone(&runtime),
            Arc::new(crate::images::PresentOnly(runtime)),
            Arc::clone(&cgroups) as Arc<dyn TaskCgroups>,
            Ok(Arc::clone(&network) as Arc<dyn DynNetworkDriver>),
            Arc::clone(&store),
            EngineConfig {
                logs_dir: dir.join("logs"),
                volumes_dir: dir.join("volumes"),
                task_cleanup_wait,
                cgroup_root: "/berth".into(),
                cpu_period_us: 100_000,
                pids_limit: Some(64),
                registered: Needs {
                    cpu: 4096,
                    memory_mib: 1024,
                },
                network: NetworkConfig::default(),
                health_dir: dir.join("health"),
                max_concurrent_checks: 2,
                manifest_grace: Duration::from_millis(100),
                task_metadata: true,
            },
        );
        Harness {
            engine,
            cgroups,
            network,
            store,
            dir,
        }
    }

    fn container(name: &str, image: &str, essential: bool) -> ContainerSpec {
        ContainerSpec {
            name: name.into(),
            image: image.into(),
            essential,
            entry_point: None,
            command: None,
            environment: vec![],
            working_directory: None,
            user: None,
            cpu: 0,
            memory_mib: 0,
            memory_reservation_mib: 0,
            stop_timeout_secs: 1,
            extra: Default::default(),
        }
    }

    fn task(id: &str, containers: Vec<ContainerSpec>) -> IncomingTask {
        IncomingTask {
            spec: TaskSpec {
                arn: format!("arn:aws:ecs:r:a:task/c/{id}"),
                family: "fam".into(),
                revision: 1,
                network_mode: NetworkMode::None,
                cpu: 0,
                memory_mib: 0,
                containers,
                volumes: vec![],
                ingress: None,
            },
            desired: TaskStatus::Running,
            rejection: None,
            service_name: None,
        }
    }

    async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
        for _ in 0..500 {
            if f() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}");
    }

    fn task_reports(store: &Store) -> Vec<StoredReport> {
        store
            .outbox_after(0, 1000)
            .unwrap()
            .into_iter()
            .map(|e| e.report)
            .collect()
    }

    #[tokio::test]
    async fn essential_exit_stops_the_task_and_cleans_up() {
        let h = harness(&["img"]);
        h.engine.start().await.unwrap();
        let t = task(
            "t1",
            vec![
                container("main", "img", true),
                container("side", "img", false),
            ],
        );
        h.engine.accept_payload(1, vec![t], vec![]).unwrap();
        let rt = h.engine.runtime();
        eventually("both running", || {
            rt.state_of("t1-main") == Some(ProcessState::Running)
                && rt.state_of("t1-side") == Some(ProcessState::Running)
        })
        .await;
        rt.exit("t1-main", 3);
        // "side" ignores SIGTERM: SIGKILL after its 1 s stop timeout.
        eventually("task finished", || {
            h.store
                .task("arn:aws:ecs:r:a:task/c/t1")
                .unwrap()
                .is_some_and(|s| s.is_finished())
        })
        .await;
        let s = h.store.task("arn:aws:ecs:r:a:task/c/t1").unwrap().unwrap();
        assert_eq!(s.stop_code, Some(StopCode::EssentialContainerExited));
        assert_eq!(s.container("main").unwrap().exit_code, Some(3));
        assert_eq!(s.container("side").unwrap().exit_code, Some(137));
        assert!(rt.container_ids().is_empty(), "{:?}", rt.container_ids());
        let calls = rt.calls();
        assert!(calls.contains(&format!("signal t1-side {}", libc::SIGTERM)));
        assert!(calls.contains(&format!("signal t1-side {}", libc::SIGKILL)));
        // Every container report from PULLED on carries the image's digest (imageDigest).
        let digest = crate::runtime::fake::fake_digest("img");
        let reports = task_reports(&h.store);
        let digests: Vec<_> = reports
            .iter()
            .filter_map(|r| match r {
                StoredReport::Container {
                    status,
                    image_digest,
                    ..
                } if *status >= ContainerStatus::Pulled => Some(image_digest.as_deref()),
                _ => None,
            })
            .collect();
        assert!(!digests.is_empty());
        assert!(
            digests.iter().all(|d| *d == Some(digest.as_str())),
            "{digests:?}"
        );
        let last = reports.last().cloned().unwrap();
        assert!(matches!(
            last,
            StoredReport::Task {
                status: TaskStatus::Stopped,
                stop_code: Some(StopCode::EssentialContainerExited),
                ..
            }
        ));
    }

    #[tokio::test]
    async fn a_bridge_task_gets_its_network_first_and_gives_it_back_before_stopped() {
        let h = harness(&["img"]);
        h.engine.start().await.unwrap();
        let mut web = container("web", "img", true);
        web.extra.port_mappings = vec![crate::model::PortMapping {
            container_port: Some(80),
            host_port: Some(0),
            protocol: crate::network::Protocol::Tcp,
            container_port_range: None,
        }];
        let mut t = task("t1", vec![web]);
        t.spec.network_mode = NetworkMode::Bridge;
        h.engine.accept_payload(1, vec![t], vec![]).unwrap();
        let rt = h.engine.runtime();
        eventually("running", || {
            rt.state_of("t1-web") == Some(ProcessState::Running)
        })
        .await;
        assert_eq!(h.network.calls(), vec!["setup t1"]);
        let s = h.store.task("arn:aws:ecs:r:a:task/c/t1").unwrap().unwrap();
        let net = s.network.clone().expect("the network is recorded");
        assert_eq!(net.netns.as_deref(), Some("bth-t1"));
        assert_eq!(net.bindings.len(), 1);
        assert!(net.bindings[0].host_port >= 49153);
        // The address and port are held: the same task again would get others.
        assert!(h.engine.allocator_lock().is_leased(net.address.unwrap()));
        rt.exit("t1-web", 0);
        eventually("task finished", || {
            h.store
                .task("arn:aws:ecs:r:a:task/c/t1")
                .unwrap()
                .is_some_and(|s| s.is_finished())
        })
        .await;
        assert_eq!(h.network.calls(), vec!["setup t1", "teardown t1"]);
        assert!(!h.engine.allocator_lock().is_leased(net.address.unwrap()));
        let last = task_reports(&h.store).pop().unwrap();
        assert!(
            matches!(&last, StoredReport::Task { status: TaskStatus::Stopped, network: Some(n), .. } if n.address == net.address),
            "{last:?}"
        );
    }

    #[tokio::test]
    async fn a_network_setup_failure_stops_the_task_with_a_reason_and_cleans_up() {
        let h = harness(&["img"]);
        *h.network.fail_setup.lock().unwrap() = Some("no such device".into());
        h.engine.start().await.unwrap();
        let mut t = task("t2", vec![container("web", "img", true)]);
        t.spec.network_mode = NetworkMode::Awsvpc;
        h.engine.accept_payload(1, vec![t], vec![]).unwrap();
        eventually("task finished", || {
            h.store
                .task("arn:aws:ecs:r:a:task/c/t2")
                .unwrap()
                .is_some_and(|s| s.is_finished())
        })
        .await;
        let s = h.store.task("arn:aws:ecs:r:a:task/c/t2").unwrap().unwrap();
        assert_eq!(s.stop_code, Some(StopCode::TaskFailedToStart));
        let reason = s.stopped_reason.unwrap();
        assert!(
            reason.starts_with("ResourceInitializationError"),
            "{reason}"
        );
        assert!(reason.contains("no such device"), "{reason}");
        assert_eq!(h.network.calls(), vec!["setup t2", "teardown t2"]);
        assert!(h.engine.runtime().container_ids().is_empty());
    }

    async fn wait_for(what: &str, secs: u64, mut f: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        while !f() {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn health_reports(store: &Store, name: &str) -> Vec<health::HealthStatus> {
        task_reports(store)
            .into_iter()
            .filter_map(|r| match r {
                StoredReport::Container {
                    name: n,
                    health: Some(h),
                    ..
                } if n == name => Some(h.status),
                _ => None,
            })
            .collect()
    }

    /// Health checks start with the container, each change is reported at once (and only a
    /// change), an UNHEALTHY essential container leaves a standalone task running, and a
    /// HEALTHY dependency gates its dependent's create.
    #[tokio::test]
    async fn health_changes_are_reported_and_gate_healthy_dependents() {
        use health::HealthStatus::{Healthy, Unhealthy, Unknown};
        let h = harness(&["img"]);
        h.engine.start().await.unwrap();
        let mut db = container("db", "img", true);
        db.extra.health_check = Some(crate::model::HealthCheck {
            args: vec!["true".into()],
            interval_secs: 5,
            timeout_secs: 2,
            retries: 1,
            start_period_secs: 0,
        });
        let mut app = container("app", "img", false);
        app.extra.depends_on = vec![crate::model::Dependency {
            container_name: "db".into(),
            condition: crate::model::DependencyCondition::Healthy,
        }];
        let rt = h.engine.runtime();
        h.engine
            .accept_payload(1, vec![task("t1", vec![db, app])], vec![])
            .unwrap();
        let arn = "arn:aws:ecs:r:a:task/c/t1";
        let status = |name: &str| {
            h.store
                .task(arn)
                .unwrap()
                .and_then(|s| s.container(name).and_then(|c| c.health.clone()))
                .map(|h| h.status)
        };
        wait_for("db healthy", 10, || status("db") == Some(Healthy)).await;
        wait_for("app running", 5, || {
            rt.state_of("t1-app") == Some(ProcessState::Running)
        })
        .await;
        let calls = rt.calls();
        let first_exec = calls.iter().position(|c| c == "exec t1-db").unwrap();
        let app_create = calls.iter().position(|c| c == "create t1-app").unwrap();
        assert!(first_exec < app_create, "{calls:?}");
        assert_eq!(status("app"), None, "app has no healthCheck");

        rt.set_exec_result("t1-db", Some(1));
        wait_for("db unhealthy", 10, || status("db") == Some(Unhealthy)).await;
        let s = h.store.task(arn).unwrap().unwrap();
        assert_eq!(s.known, TaskStatus::Running, "status only, as on ECS");
        let last = s
            .container("db")
            .unwrap()
            .health
            .clone()
            .unwrap()
            .last
            .unwrap();
        assert_eq!(last.exit_code, Some(1));
        assert_eq!(last.output, "exit Some(1)\n");
        assert_eq!(
            health_reports(&h.store, "db"),
            vec![Unknown, Healthy, Unhealthy]
        );

        // Checks stop with the container.
        rt.exit("t1-db", 0);
        wait_for("task finished", 10, || {
            h.store.task(arn).unwrap().is_some_and(|s| s.is_finished())
        })
        .await;
        let execs = rt.calls().iter().filter(|c| *c == "exec t1-db").count();
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert_eq!(
            rt.calls().iter().filter(|c| *c == "exec t1-db").count(),
            execs
        );
    }

    #[tokio::test]
    async fn a_draining_engine_starts_no_new_action() {
        let h = harness(&["img"]);
        h.engine.start().await.unwrap();
        // Nothing under way: drain returns at once.
        tokio::time::timeout(
            Duration::from_secs(1),
            h.engine.drain(Duration::from_secs(5)),
        )
        .await
        .unwrap();
        h.engine
            .accept_payload(
                1,
                vec![task("t9", vec![container("a", "img", true)])],
                vec![],
            )
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            h.engine.runtime().calls().is_empty(),
            "{:?}",
            h.engine.runtime().calls()
        );
        // The task is recorded, for the next agent to run.
        assert!(h.store.task("arn:aws:ecs:r:a:task/c/t9").unwrap().is_some());
    }

    #[tokio::test]
    async fn missing_image_fails_the_task_with_a_reason() {
        let h = harness(&[]);
        h.engine.start().await.unwrap();
        h.engine
            .accept_payload(
                1,
                vec![task("t2", vec![container("a", "nope", true)])],
                vec![],
            )
            .unwrap();
        eventually("task finished", || {
            h.store
                .task("arn:aws:ecs:r:a:task/c/t2")
                .unwrap()
                .is_some_and(|s| s.is_finished())
        })
        .await;
        let s = h.store.task("arn:aws:ecs:r:a:task/c/t2").unwrap().unwrap();
        assert_eq!(s.stop_code, Some(StopCode::TaskFailedToStart));
        assert!(s
            .stopped_reason
            .unwrap()
            .starts_with("CannotPullContainerError"));
    }

    #[tokio::test]
    async fn stop_request_stops_with_sigterm_and_a_redelivered_payload_does_not_rerun() {
        let h = harness(&["img"]);
        h.engine.start().await.unwrap();
        let t = task("t3", vec![container("a", "img", true)]);
        h.engine.accept_payload(1, vec![t.clone()], vec![]).unwrap();
        let rt = h.engine.runtime();
        eventually("running", || {
            rt.state_of("t3-a") == Some(ProcessState::Running)
        })
        .await;
        rt.obey_sigterm("t3-a");
        h.engine
            .accept_payload(2, vec![], vec![(t.spec.arn.clone(), "by test".into())])
            .unwrap();
        eventually("finished", || {
            h.store
                .task(&t.spec.arn)
                .unwrap()
                .is_some_and(|s| s.is_finished())
        })
        .await;
        let s = h.store.task(&t.spec.arn).unwrap().unwrap();
        assert_eq!(s.stop_code, Some(StopCode::UserInitiated));
        assert_eq!(
            s.container("a").unwrap().exit_code,
            Some(128 + libc::SIGTERM)
        );
        let creates_before = rt
            .calls()
            .iter()
            .filter(|c| c.starts_with("create"))
            .count();
        h.engine.accept_payload(1, vec![t], vec![]).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let creates_after = rt
            .calls()
            .iter()
            .filter(|c| c.starts_with("create"))
            .count();
        assert_eq!(creates_before, creates_after);
    }

    #[tokio::test]
    async fn the_task_manifest_stops_unlisted_tasks_and_reports_unreceived_ones() {
        let h = harness(&["img"]);
        h.engine.start().await.unwrap();
        let kept = task("kept", vec![container("a", "img", true)]);
        let ghost = task("ghost", vec![container("a", "img", true)]);
        h.engine
            .accept_payload(1, vec![kept.clone(), ghost.clone()], vec![])
            .unwrap();
        let rt = h.engine.runtime();
        eventually("both running", || {
            rt.state_of("kept-a") == Some(ProcessState::Running)
                && rt.state_of("ghost-a") == Some(ProcessState::Running)
        })
        .await;
        rt.obey_sigterm("ghost-a");
        let lost = "arn:aws:ecs:us-east-1:000000000000:task/c/lost".to_string();
        let manifest = vec![kept.spec.arn.clone(), lost.clone()];
        // One manifest never decides; the grace period (100 ms here) must pass as well.
        h.engine.reconcile_manifest(&manifest).unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(rt.state_of("ghost-a"), Some(ProcessState::Running));
        assert!(h.store.task(&lost).unwrap().is_none());
        h.engine.reconcile_manifest(&manifest).unwrap();
        eventually("ghost finished", || {
            h.store
                .task(&ghost.spec.arn)
                .unwrap()
                .is_some_and(|s| s.is_finished())
        })
        .await;
        let s = h.store.task(&ghost.spec.arn).unwrap().unwrap();
        assert_eq!(s.stopped_reason.as_deref(), Some(manifest::STOP_REASON));
        assert_eq!(rt.state_of("kept-a"), Some(ProcessState::Running));
        // The unreceived task is recorded finished, with one STOPPED report...
        let l = h.store.task(&lost).unwrap().unwrap();
        assert!(l.is_finished());
        let reports: Vec<StoredReport> = h
            .store
            .outbox_after(0, 1000)
            .unwrap()
            .into_iter()
            .filter(|e| e.task_arn == lost)
            .map(|e| e.report)
            .collect();
        assert_eq!(reports.len(), 1, "{reports:?}");
        assert!(matches!(
            &reports[0],
            StoredReport::Task { status: TaskStatus::Stopped, stop_code: Some(StopCode::TaskFailedToStart), stopped_reason: Some(r), .. } if r == manifest::MISSING_REASON
        ));
        // ...and a late payload for it runs nothing.
        let mut late = task("lost", vec![container("a", "img", true)]);
        late.spec.arn = lost.clone();
        h.engine.accept_payload(2, vec![late], vec![]).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(rt.state_of("lost-a"), None);
        // Later manifests that agree change nothing.
        h.engine
            .reconcile_manifest(std::slice::from_ref(&kept.spec.arn))
            .unwrap();
        tokio::time::sleep(Duration::from_millis(150)).await;
        h.engine
            .reconcile_manifest(std::slice::from_ref(&kept.spec.arn))
            .unwrap();
        assert_eq!(rt.state_of("kept-a"), Some(ProcessState::Running));
    }

    #[tokio::test]
    async fn a_restarted_engine_adopts_running_containers_and_sees_exits_it_missed() {
        let h = harness(&["img"]);
        let t = task(
            "t4",
            vec![container("a", "img", true), container("b", "img", true)],
        );
        // What a previous agent left: both containers started and recorded RUNNING.
        let mut state = TaskState::new(t.spec.clone(), TaskStatus::Running, 0);
        let rt = h.engine.runtime();
        for c in ["a", "b"] {
            for e in [
                Event::ImageResolved {
                    container: c.into(),
                },
                Event::Created {
                    container: c.into(),
                },
                Event::Started {
                    container: c.into(),
                },
            ] {
                state.apply(e, 0);
            }
            let req = CreateRequest {
                runtime_id: format!("t4-{c}"),
                task_arn: t.spec.arn.clone(),
                task_id: "t4".into(),
                container: t.spec.containers[0].clone(),
                network_mode: NetworkMode::None,
                netns_path: None,
                address: None,
                log_path: h.dir.join("x.log"),
                task: t.spec.clone(),
                task_volumes_dir: h.dir.join("volumes"),
                cgroup_parent: None,
            };
            rt.create(&req).await.unwrap();
            rt.start(&format!("t4-{c}")).await.unwrap();
        }
        h.store
            .record_payload(1, std::slice::from_ref(&state), &[], 0)
            .unwrap();
        let reports = state.take_reports();
        h.store.save_task(&state, reports, 0).unwrap();
        // "a" exited while no agent was watching; "b" is still running.
        rt.exit("t4-a", 0);
        h.engine.start().await.unwrap();
        eventually("finished", || {
            h.store
                .task(&t.spec.arn)
                .unwrap()
                .is_some_and(|s| s.is_finished())
        })
        .await;
        let calls = rt.calls();
        let starts = calls.iter().filter(|c| c.starts_with("start")).count();
        assert_eq!(starts, 2, "no container may be started again: {calls:?}");
        let s = h.store.task(&t.spec.arn).unwrap().unwrap();
        assert_eq!(s.container("a").unwrap().exit_code, Some(0));
        assert_eq!(s.container("b").unwrap().exit_code, Some(137));
        assert_eq!(s.stop_code, Some(StopCode::EssentialContainerExited));
    }

    fn finished(h: &Harness, arn: &str) -> bool {
        h.store.task(arn).unwrap().is_some_and(|s| s.is_finished())
    }

    #[tokio::test]
    async fn a_success_dependency_is_waited_for_and_shutdown_is_in_reverse_order() {
        use crate::model::{Dependency, DependencyCondition};
        let h = harness(&["img"]);
        h.engine.start().await.unwrap();
        let mut app = container("app", "img", true);
        app.extra.depends_on = vec![
            Dependency {
                container_name: "init".into(),
                condition: DependencyCondition::Success,
            },
            Dependency {
                container_name: "db".into(),
                condition: DependencyCondition::Start,
            },
        ];
        let t = task(
            "d1",
            vec![
                app,
                container("init", "img", false),
                container("db", "img", true),
            ],
        );
        h.engine.accept_payload(1, vec![t.clone()], vec![]).unwrap();
        let rt = h.engine.runtime();
        eventually("init running", || {
            rt.state_of("d1-init") == Some(ProcessState::Running)
                && rt.state_of("d1-db") == Some(ProcessState::Running)
        })
        .await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(rt.state_of("d1-app"), None, "app waits for init to succeed");
        rt.exit("d1-init", 0);
        eventually("app running", || {
            rt.state_of("d1-app") == Some(ProcessState::Running)
        })
        .await;
        rt.obey_sigterm("d1-app");
        rt.obey_sigterm("d1-db");
        h.engine
            .accept_payload(2, vec![], vec![(t.spec.arn.clone(), "bye".into())])
            .unwrap();
        eventually("finished", || finished(&h, &t.spec.arn)).await;
        let calls = rt.calls();
        let at = |c: &str| {
            calls
                .iter()
                .position(|x| x == c)
                .unwrap_or_else(|| panic!("{c} not in {calls:?}"))
        };
        assert!(at("start d1-init") < at("create d1-app"));
        assert!(
            at(&format!("signal d1-app {}", libc::SIGTERM))
                < at(&format!("signal d1-db {}", libc::SIGTERM)),
            "{calls:?}"
        );
    }

    #[tokio::test]
    async fn a_failed_success_dependency_stops_the_task_before_the_dependent_starts() {
        use crate::model::{Dependency, DependencyCondition};
        let h = harness(&["img"]);
        h.engine.start().await.unwrap();
        let mut app = container("app", "img", true);
        app.extra.depends_on = vec![Dependency {
            container_name: "init".into(),
            condition: DependencyCondition::Success,
        }];
        let t = task("d2", vec![container("init", "img", false), app]);
        h.engine.accept_payload(1, vec![t.clone()], vec![]).unwrap();
        let rt = h.engine.runtime();
        eventually("init running", || {
            rt.state_of("d2-init") == Some(ProcessState::Running)
        })
        .await;
        rt.exit("d2-init", 2);
        eventually("finished", || finished(&h, &t.spec.arn)).await;
        let s = h.store.task(&t.spec.arn).unwrap().unwrap();
        assert_eq!(s.stop_code, Some(StopCode::TaskFailedToStart));
        let reason = s.stopped_reason.unwrap();
        assert!(
            reason.contains("init") && reason.contains("app") && reason.contains("SUCCESS"),
            "{reason}"
        );
        assert!(!rt.calls().contains(&"create d2-app".to_string()));
    }

    #[tokio::test]
    async fn a_restart_policy_restarts_in_place_and_reports_the_count() {
        use crate::model::RestartPolicy;
        let h = harness(&["img"]);
        h.engine.start().await.unwrap();
        let mut app = container("app", "img", true);
        // No attempt period, so the fake's instant exit qualifies (the control plane and the
        // ECS JSON parser enforce 60-1800 s).
        app.extra.restart_policy = Some(RestartPolicy {
            enabled: true,
            ignored_exit_codes: vec![0],
            restart_attempt_period_secs: 0,
        });
        let t = task("r1", vec![app]);
        h.engine.accept_payload(1, vec![t.clone()], vec![]).unwrap();
        let rt = h.engine.runtime();
        eventually("running", || {
            rt.state_of("r1-app") == Some(ProcessState::Running)
        })
        .await;
        rt.exit("r1-app", 1);
        eventually("restarted", || {
            rt.calls().contains(&"restart r1-app".to_string())
                && rt.state_of("r1-app") == Some(ProcessState::Running)
        })
        .await;
        eventually("count persisted", || {
            h.store
                .task(&t.spec.arn)
                .unwrap()
                .is_some_and(|s| s.container("app").unwrap().restart_count == 1)
        })
        .await;
        let s = h.store.task(&t.spec.arn).unwrap().unwrap();
        assert_eq!(s.desired, TaskStatus::Running);
        assert!(task_reports(&h.store).iter().any(|r| matches!(
            r,
            StoredReport::Container {
                restart_count: 1,
                status: ContainerStatus::Running,
                ..
            }
        )));
        // An ignored exit code is final.
        rt.exit("r1-app", 0);
        eventually("finished", || finished(&h, &t.spec.arn)).await;
        let s = h.store.task(&t.spec.arn).unwrap().unwrap();
        assert_eq!(s.stop_code, Some(StopCode::EssentialContainerExited));
        assert_eq!(s.container("app").unwrap().exit_code, Some(0));
    }

    #[tokio::test]
    async fn cleanup_waits_and_removes_the_logs_too() {
        let h = harness_with_wait(&["img"], Duration::from_millis(700));
        h.engine.start().await.unwrap();
        let t = task("c1", vec![container("a", "img", true)]);
        h.engine.accept_payload(1, vec![t.clone()], vec![]).unwrap();
        let rt = h.engine.runtime();
        eventually("running", || {
            rt.state_of("c1-a") == Some(ProcessState::Running)
        })
        .await;
        let logs = h.dir.join("logs").join("c1");
        std::fs::create_dir_all(&logs).unwrap();
        std::fs::write(logs.join("a.log"), "hello").unwrap();
        rt.exit("c1-a", 0);
        eventually("stopped", || {
            h.store
                .task(&t.spec.arn)
                .unwrap()
                .is_some_and(|s| s.known == TaskStatus::Stopped)
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            rt.container_ids(),
            vec!["c1-a".to_string()],
            "kept during the wait"
        );
        assert!(logs.exists());
        eventually("finished", || finished(&h, &t.spec.arn)).await;
        assert!(rt.container_ids().is_empty());
        assert!(!logs.exists());
    }

    #[tokio::test]
    async fn the_task_cgroup_comes_first_goes_last_and_an_oom_kill_is_named() {
        let h = harness(&["img"]);
        h.engine.start().await.unwrap();
        let mut a = container("a", "img", true);
        a.cpu = 256;
        a.memory_mib = 32;
        let mut t = task("m1", vec![a]);
        t.spec.memory_mib = 64;
        h.engine.accept_payload(1, vec![t.clone()], vec![]).unwrap();
        let rt = h.engine.runtime();
        eventually("running", || {
            rt.state_of("m1-a") == Some(ProcessState::Running)
        })
        .await;
        let calls = h.cgroups.calls();
        assert_eq!(calls.len(), 1, "{calls:?}");
        assert!(
            calls[0].starts_with("create /berth/m1 ")
                && calls[0].contains("cpu_shares: 256")
                && calls[0].contains("memory_bytes: Some(67108864)")
                && calls[0].contains("pids_max: Some(64)"),
            "{calls:?}"
        );
        h.cgroups
            .oom
            .lock()
            .unwrap()
            .push("/berth/m1/m1-a".to_string());
        rt.exit("m1-a", 137);
        eventually("finished", || finished(&h, &t.spec.arn)).await;
        let s = h.store.task(&t.spec.arn).unwrap().unwrap();
        let a = s.container("a").unwrap();
        assert_eq!(a.exit_code, Some(137));
        assert_eq!(a.reason.as_deref(), Some(crate::cgroups::OOM_REASON));
        assert_eq!(h.cgroups.calls().last().unwrap(), "remove /berth/m1");
    }

    #[tokio::test]
    async fn a_task_beyond_the_registered_resources_is_refused() {
        let h = harness(&["img"]);
        h.engine.start().await.unwrap();
        let mut big = container("a", "img", true);
        big.memory_mib = 768;
        let first = task("f1", vec![big.clone()]);
        let second = task("f2", vec![big]);
        h.engine
            .accept_payload(1, vec![first.clone(), second.clone()], vec![])
            .unwrap();
        eventually("the second finished", || finished(&h, &second.spec.arn)).await;
        let s = h.store.task(&second.spec.arn).unwrap().unwrap();
        assert_eq!(s.stop_code, Some(StopCode::TaskFailedToStart));
        assert_eq!(
            s.stopped_reason.as_deref(),
            Some("RESOURCE:MEMORY: needs 768 MiB, 256 MiB remaining")
        );
        let rt = h.engine.runtime();
        eventually("the first running", || {
            rt.state_of("f1-a") == Some(ProcessState::Running)
        })
        .await;
        assert_eq!(rt.state_of("f2-a"), None);
    }
}
