//! The real runtime: containerd's gRPC API through containerd-client. One connection shared by
//! every call; the namespace header and a deadline on every call (a hung containerd must never
//! wedge a task worker, the session or heartbeats).

use std::collections::HashMap;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::{Duration, SystemTime};

use containerd_client::events::TaskExit;
use containerd_client::services::v1::snapshots::{
    PrepareSnapshotRequest, RemoveSnapshotRequest, StatSnapshotRequest,
};
use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::{
    container::Runtime as ContainerRuntime, Container, CreateContainerRequest, CreateTaskRequest,
    DeleteContainerRequest, DeleteProcessRequest, DeleteTaskRequest, ExecProcessRequest,
    GetContainerRequest, GetImageRequest, GetRequest, KillRequest, ListContainersRequest,
    ListPidsRequest, PublishRequest, ReadContentRequest, StartRequest, SubscribeRequest,
    WaitRequest,
};
use containerd_client::services::v1::{
    CreateRequest as LeaseCreateRequest, DeleteRequest as LeaseDeleteRequest,
    ListRequest as LeaseListRequest,
};
use containerd_client::tonic::transport::Channel;
use containerd_client::types::v1::Status as ProcStatus;
use containerd_client::types::Mount;
use containerd_client::Client;
use futures_util::{Stream, StreamExt};
use prost::Message;
use tonic::Request;

use super::image::{self, ResolvedImage};
use super::{
    AttachedExecRequest, AttachedInput, AttachedOutput, CreateRequest, ExecOutcome, ExecRequest,
    ExitEvent, ListedContainer, ProcessState, Runtime, RuntimeError,
};
use crate::health;
use crate::model::rfc3339;

pub const LABEL_TASK_ARN: &str = "berth.task-arn";
pub const LABEL_CONTAINER_NAME: &str = "berth.container-name";
const SPEC_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
const RUNC_V2: &str = "io.containerd.runc.v2";
const TOPIC_EXIT: &str = "/tasks/exit";
/// Published by the agent to itself; see `exits`.
const TOPIC_SUBSCRIBED: &str = "/berth/subscribed";

#[derive(Debug, Clone)]
pub struct ContainerdConfig {
    pub socket: String,
    pub namespace: String,
    pub snapshotter: String,
    /// Deadline of each unary call.
    pub call_timeout: Duration,
}

pub struct Containerd {
    pub(super) client: Client,
    pub(super) cfg: ContainerdConfig,
    /// Each checked container's process spec for execs, read once: a container's spec never
    /// changes, and health checks would otherwise fetch and parse it every few seconds.
    /// Dropped when the container is removed (and so before an id is reused).
    exec_templates: std::sync::Mutex<HashMap<String, std::sync::Arc<ExecTemplate>>>,
    /// Images resolved, by the digest their record points at: content is immutable, so a
    /// digest seen once needs no more reads of its manifest and config (two calls per launch).
    /// Bounded by [`RESOLVED_CACHE_MAX`].
    resolved: std::sync::Mutex<HashMap<String, ResolvedImage>>,
}

/// Distinct image digests remembered; the cache starts afresh beyond it.
const RESOLVED_CACHE_MAX: usize = 64;

impl Containerd {
    /// Connects lazily: the channel reconnects by itself when containerd restarts.
    pub async fn connect(cfg: ContainerdConfig) -> Result<Self, RuntimeError> {
        let channel: Channel =
            containerd_client::connect(&cfg.socket)
                .await
                .map_err(|e| RuntimeError::Connect {
                    socket: cfg.socket.clone(),
                    message: e.to_string(),
                })?;
        Ok(Self {
            client: Client::from(channel),
            cfg,
            exec_templates: Default::default(),
            resolved: Default::default(),
        })
    }

    pub(super) fn req<T>(&self, msg: T) -> Request<T> {
        let mut req = Request::new(msg);
        req.set_timeout(self.cfg.call_timeout);
        // The namespace is validated by our config: it always parses as a header value.
        if let Ok(ns) = self.cfg.namespace.parse() {
            req.metadata_mut().insert("containerd-namespace", ns);
        }
        req
    }

    /// Runs one call with the configured deadline, mapping its error.
    pub(super) async fn call<T, F>(&self, name: &'static str, fut: F) -> Result<T, RuntimeError>
    where
        F: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let started = std::time::Instant::now();
        let result = tokio::time::timeout(self.cfg.call_timeout, fut).await;
        // Where a launch's time goes, call by call (`berth_agent::runtime=trace`).
        tracing::trace!(
            call = name,
            us = started.elapsed().as_micros() as u64,
            "containerd"
        );
        match result {
            Ok(Ok(resp)) => Ok(resp.into_inner()),
            Ok(Err(status)) => Err(RuntimeError::Containerd {
                call: name,
                status: Box::new(status),
            }),
            Err(_) => Err(RuntimeError::Timeout {
                call: name,
                secs: self.cfg.call_timeout.as_secs(),
            }),
        }
    }

    async fn read_blob(&self, digest: &str) -> Result<Vec<u8>, RuntimeError> {
        let mut content = self.client.content();
        let req = self.req(ReadContentRequest {
            digest: digest.to_string(),
            offset: 0,
            size: 0,
        });
        let mut stream = self.call("Content.Read", content.read(req)).await?;
        let mut buf = Vec::new();
        loop {
            let next = tokio::time::timeout(self.cfg.call_timeout, stream.next()).await;
            match next {
                Ok(Some(Ok(chunk))) => buf.extend_from_slice(&chunk.data),
                Ok(Some(Err(status))) => {
                    return Err(RuntimeError::Containerd {
                        call: "Content.Read",
                        status: Box::new(status),
                    })
                }
                Ok(None) => return Ok(buf),
                Err(_) => {
                    return Err(RuntimeError::Timeout {
                        call: "Content.Read",
                        secs: self.cfg.call_timeout.as_secs(),
                    })
                }
            }
        }
    }

    /// Image record -> (index ->) manifest -> config, and the chain id of its layers.
    pub(super) async fn resolve(&self, name: &str) -> Result<ResolvedImage, RuntimeError> {
        let bad = |message: String| RuntimeError::BadImage {
            image: name.to_string(),
            message,
        };
        let mut images = self.client.images();
        let got = self
            .call(
                "Images.Get",
                images.get(self.req(GetImageRequest {
                    name: name.to_string(),
                })),
            )
            .await
            .map_err(|e| {
                if e.is_not_found() {
                    RuntimeError::ImageNotFound(name.to_string())
                } else {
                    e
                }
            })?;
        let target = got
            .image
            .and_then(|i| i.target)
            .ok_or_else(|| bad("the image record has no target".into()))?;
        let cached = self.resolved_lock().get(&target.digest).cloned();
        let resolved = match cached {
            Some(resolved) => resolved,
            None => {
                let mut manifest_digest = target.digest.clone();
                if image::is_index(&target.media_type) {
                    let index = self.read_blob(&manifest_digest).await?;
                    manifest_digest =
                        image::select_manifest(&index, image::host_arch()).map_err(bad)?;
                }
                let manifest = self.read_blob(&manifest_digest).await?;
                let config_digest = image::config_digest(&manifest).map_err(bad)?;
                let config = self.read_blob(&config_digest).await?;
                let mut resolved = image::parse_config(&config).map_err(bad)?;
                resolved.digest = target.digest.clone();
                let mut cache = self.resolved_lock();
                if cache.len() >= RESOLVED_CACHE_MAX {
                    cache.clear();
                }
                cache.insert(target.digest, resolved.clone());
                resolved
            }
        };
        // The layers must be unpacked for our snapshotter; pulling and unpacking is the
        // image-pull module's job, so here a missing snapshot is a clear error.
        let mut snapshots = self.client.snapshots();
        self.call(
            "Snapshots.Stat",
            snapshots.stat(self.req(StatSnapshotRequest {
                snapshotter: self.cfg.snapshotter.clone(),
                key: resolved.chain_id.clone(),
            })),
        )
        .await
        .map_err(|e| {
            if e.is_not_found() {
                bad(format!(
                    "not unpacked for the {} snapshotter",
                    self.cfg.snapshotter
                ))
            } else {
                e
            }
        })?;
        Ok(resolved)
    }

    /// A lease holds what a launch creates until the container references it: without one, a
    /// garbage collection (another namespace's deletions trigger one) may take the fresh
    /// snapshot while we read the image's users from it. The lease expires by itself, so a
    /// crash mid-launch leaks nothing for long.
    async fn create_lease(&self, id: &str) -> Result<String, RuntimeError> {
        let expire = SystemTime::now() + Duration::from_secs(3600);
        let mut leases = self.client.leases();
        let resp = self
            .call(
                "Leases.Create",
                leases.create(self.req(LeaseCreateRequest {
                    id: format!("{}{:08x}", launch_lease_prefix(id), fastrand::u32(..)),
                    labels: HashMap::from([(
                        "containerd.io/gc.expire".to_string(),
                        rfc3339(expire),
                    )]),
                })),
            )
            .await?;
        resp.lease
            .map(|l| l.id)
            .ok_or_else(|| RuntimeError::Io("Leases.Create returned no lease".into()))
    }

    /// Deletes the launch leases of container `id` that a crash mid-launch left behind, so
    /// their snapshot does not outlive the container by the lease's hour.
    async fn delete_launch_leases(&self, id: &str) -> Result<(), RuntimeError> {
        let prefix = launch_lease_prefix(id);
        let mut leases = self.client.leases();
        let listed = self
            .call(
                "Leases.List",
                leases.list(self.req(LeaseListRequest { filters: vec![] })),
            )
            .await?
            .leases;
        for lease in listed.into_iter().filter(|l| l.id.starts_with(&prefix)) {
            self.delete_lease(&lease.id).await;
        }
        Ok(())
    }

    async fn delete_lease(&self, lease: &str) {
        let mut leases = self.client.leases();
        let deleted = self
            .call(
                "Leases.Delete",
                leases.delete(self.req(LeaseDeleteRequest {
                    id: lease.to_string(),
                    sync: false,
                })),
            )
            .await;
        if let Err(e) = deleted {
            // It expires on its own; nothing is lost but an hour of a snapshot's protection.
            tracing::warn!(lease, error = %e, "cannot delete a launch lease");
        }
    }

    /// A request that works under `lease`.
    pub(super) fn leased<T>(&self, msg: T, lease: &str) -> Request<T> {
        let mut req = self.req(msg);
        if let Ok(v) = lease.parse() {
            req.metadata_mut().insert("containerd-lease", v);
        }
        req
    }

    async fn prepare_snapshot(
        &self,
        key: &str,
        parent: &str,
        lease: &str,
    ) -> Result<Vec<Mount>, RuntimeError> {
        let mut snapshots = self.client.snapshots();
        self.call(
            "Snapshots.Prepare",
            snapshots.prepare(self.leased(
                PrepareSnapshotRequest {
                    snapshotter: self.cfg.snapshotter.clone(),
                    key: key.to_string(),
                    parent: parent.to_string(),
                    labels: HashMap::new(),
                },
                lease,
            )),
        )
        .await
        .map(|resp| resp.mounts)
    }

    pub(super) async fn remove_snapshot(&self, key: &str) -> Result<(), RuntimeError> {
        let mut snapshots = self.client.snapshots();
        ignore_not_found(
            self.call(
                "Snapshots.Remove",
                snapshots.remove(self.req(RemoveSnapshotRequest {
                    snapshotter: self.cfg.snapshotter.clone(),
                    key: key.to_string(),
                })),
            )
            .await,
        )
    }

    /// The snapshot and the container record of a launch, created under `lease`.
    async fn create_under_lease(
        &self,
        req: &CreateRequest,
        resolved: &ResolvedImage,
        lease: &str,
    ) -> Result<Vec<Mount>, RuntimeError> {
        let id = req.runtime_id.as_str();
        let mounts = self.prepare_snapshot(id, &resolved.chain_id, lease).await?;
        // The spec needs the snapshot: user names are looked up in the image's own files.
        let spec = match super::facts::build(req, &resolved.config, &mounts) {
            Ok(spec) => spec,
            Err(e) => {
                let _ = self.remove_snapshot(id).await;
                return Err(e);
            }
        };
        // dockerLabels first, then ours: berth.* labels are the agent's to set.
        let mut labels: HashMap<String, String> = req
            .container
            .extra
            .labels
            .iter()
            .filter(|(k, _)| !k.starts_with("berth."))
            .cloned()
            .collect();
        labels.insert(LABEL_TASK_ARN.to_string(), req.task_arn.clone());
        labels.insert(LABEL_CONTAINER_NAME.to_string(), req.container.name.clone());
        let container = Container {
            id: id.to_string(),
            labels,
            image: req.container.image.clone(),
            runtime: Some(ContainerRuntime {
                name: RUNC_V2.to_string(),
                options: None,
            }),
            spec: Some(prost_types::Any {
                type_url: SPEC_TYPE_URL.to_string(),
                value: serde_json::to_vec(&spec)
                    .map_err(|e| RuntimeError::InvalidSpec(e.to_string()))?,
            }),
            snapshotter: self.cfg.snapshotter.clone(),
            snapshot_key: id.to_string(),
            ..Default::default()
        };
        let mut containers = self.client.containers();
        if let Err(e) = self
            .call(
                "Containers.Create",
                containers.create(self.leased(
                    CreateContainerRequest {
                        container: Some(container),
                    },
                    lease,
                )),
            )
            .await
        {
            let _ = self.remove_snapshot(id).await;
            return Err(e);
        }
        Ok(mounts)
    }

    async fn delete_task(&self, id: &str) -> Result<(), RuntimeError> {
        // containerd refuses to delete a running process: kill it first. Only leftovers and
        // never-started containers get here running; a task's own stop goes through signal().
        if self.state(id).await? == ProcessState::Running {
            self.signal(id, libc::SIGKILL).await?;
            let deadline = tokio::time::Instant::now() + self.cfg.call_timeout;
            while self.state(id).await? == ProcessState::Running {
                if tokio::time::Instant::now() > deadline {
                    return Err(RuntimeError::Timeout {
                        call: "waiting for a killed process",
                        secs: self.cfg.call_timeout.as_secs(),
                    });
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let mut tasks = self.client.tasks();
        ignore_not_found(
            self.call(
                "Tasks.Delete",
                tasks.delete(self.req(DeleteTaskRequest {
                    container_id: id.to_string(),
                })),
            )
            .await,
        )
    }

    /// The snapshot and container record of a launch, under a lease of their own.
    async fn create_leased(
        &self,
        req: &CreateRequest,
        resolved: &ResolvedImage,
    ) -> Result<Vec<Mount>, RuntimeError> {
        let lease = self.create_lease(&req.runtime_id).await?;
        let result = self.create_under_lease(req, resolved, &lease).await;
        self.delete_lease(&lease).await;
        result
    }

    /// One launch attempt: the snapshot and container record under a lease, then the task.
    async fn create_once(&self, req: &CreateRequest) -> Result<(), RuntimeError> {
        let id = req.runtime_id.as_str();
        let resolved = self.resolve(&req.container.image).await?;
        if let Some(dir) = req.log_path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| RuntimeError::Io(format!("creating {}: {e}", dir.display())))?;
        }
        // A leftover of an earlier attempt (the agent may have crashed mid-launch) shows as an
        // existing snapshot or container: replace it. Looking for one only when it is there
        // keeps five calls off every ordinary launch.
        let mounts = match self.create_leased(req, &resolved).await {
            Err(RuntimeError::Containerd { status, .. })
                if status.code() == tonic::Code::AlreadyExists =>
            {
                tracing::info!(runtime_id = id, "replacing a leftover of an earlier launch");
                self.remove(id).await?;
                self.create_leased(req, &resolved).await?
            }
            result => result?,
        };
        // The shim (or the logger it starts) writes the log: the agent never holds a pipe.
        let log_uri = crate::logs::stdio_uri(&req.log_path);
        let mut tasks = self.client.tasks();
        let created = self
            .call(
                "Tasks.Create",
                tasks.create(self.req(CreateTaskRequest {
                    container_id: id.to_string(),
                    rootfs: mounts,
                    stdout: log_uri.clone(),
                    stderr: log_uri,
                    ..Default::default()
                })),
            )
            .await;
        if let Err(e) = created {
            let _ = self.remove(id).await;
            return Err(e);
        }
        Ok(())
    }

    async fn publish_marker(&self) -> Result<(), RuntimeError> {
        let mut events = self.client.events();
        self.call(
            "Events.Publish",
            events.publish(self.req(PublishRequest {
                topic: TOPIC_SUBSCRIBED.to_string(),
                event: Some(prost_types::Any {
                    type_url: "containerd.events.TaskExit".to_string(),
                    value: TaskExit::default().encode_to_vec(),
                }),
            })),
        )
        .await
        .map(|_| ())
    }
}

/// The runc shim's details of a process (containerd.runc.v1.ProcessDetails), as
/// Tasks.ListPids returns them for exec processes.
#[derive(Clone, PartialEq, prost::Message)]
struct ProcessDetails {
    #[prost(string, tag = "1")]
    exec_id: String,
}

/// Every launch lease of a container starts with this; the rest is random.
fn launch_lease_prefix(runtime_id: &str) -> String {
    format!("berth-launch-{runtime_id}-")
}

fn ignore_not_found<T>(r: Result<T, RuntimeError>) -> Result<(), RuntimeError> {
    match r {
        Ok(_) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
}

/// The type of an exec's process spec, as containerd's Go client registers it.
const PROCESS_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";

/// A container's process, as execs in it run: its user, environment, working directory,
/// capabilities, rlimits... without a terminal; only the args change from exec to exec.
pub(super) type ExecTemplate = serde_json::Map<String, serde_json::Value>;

fn exec_template(container_spec: &[u8]) -> Result<ExecTemplate, String> {
    let mut spec: serde_json::Value = serde_json::from_slice(container_spec)
        .map_err(|e| format!("the container's OCI spec is not JSON: {e}"))?;
    let mut process = match spec.get_mut("process").map(serde_json::Value::take) {
        Some(serde_json::Value::Object(p)) => p,
        _ => return Err("the container's OCI spec has no process".into()),
    };
    process.insert("terminal".into(), serde_json::Value::Bool(false));
    // The size of a terminal the exec does not have; a Windows-only command line.
    process.remove("consoleSize");
    process.remove("commandLine");
    Ok(process)
}

/// The process spec of an exec of `args`.
fn exec_process_spec(template: &ExecTemplate, args: &[String]) -> Result<Vec<u8>, String> {
    let mut process = template.clone();
    process.insert("args".into(), serde_json::json!(args));
    serde_json::to_vec(&process).map_err(|e| e.to_string())
}

#[cfg(test)]
fn exec_process(container_spec: &[u8], args: &[String]) -> Result<Vec<u8>, String> {
    exec_process_spec(&exec_template(container_spec)?, args)
}

/// Where an exec's stdout and stderr go: one file under two names.
///
/// Not a `file://` URI: for that scheme the runc shim writes stdout and stderr through one
/// shared descriptor that the first copier to finish closes for both (containerd 1.6
/// `pkg/process/io.go`, `countingWriteCloser`): when the process has exited before the shim
/// starts copying - a quick check, a loaded host - whatever it wrote to stderr is lost. Given
/// plain paths of existing regular files the shim opens each on its own (`O_APPEND`), so
/// stdout and stderr are appended to the same file, in the order the shim copies them.
#[derive(Debug, Clone)]
struct ExecOutput {
    path: PathBuf,
    /// A hard link to `path` for stderr.
    stderr: PathBuf,
}

impl ExecOutput {
    fn new(path: &Path) -> Result<Self, RuntimeError> {
        let text = path.to_str().unwrap_or_default();
        // The shim parses the paths as URLs (to find their scheme): absolute, so that there is
        // none, and nothing url.Parse rejects.
        if !path.is_absolute() || text.contains('%') || text.contains(char::is_control) {
            return Err(RuntimeError::InvalidSpec(format!(
                "exec output path {} must be absolute, UTF-8, without '%' or control characters",
                path.display()
            )));
        }
        let mut stderr = path.as_os_str().to_owned();
        stderr.push(".stderr");
        Ok(Self {
            path: path.to_path_buf(),
            stderr: stderr.into(),
        })
    }

    /// Creates the file afresh (the shim appends: a leftover must not add to the output) and
    /// its second name.
    fn prepare(&self) -> Result<(), RuntimeError> {
        let io_err = |what: &str, p: &Path, e: std::io::Error| {
            RuntimeError::Io(format!("{what} {}: {e}", p.display()))
        };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| io_err("creating", dir, e))?;
        }
        self.remove();
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&self.path)
            .map_err(|e| io_err("creating", &self.path, e))?;
        std::fs::hard_link(&self.path, &self.stderr).map_err(|e| {
            self.remove();
            io_err("linking", &self.stderr, e)
        })
    }

    fn stdout_uri(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }

    fn stderr_uri(&self) -> String {
        self.stderr.to_string_lossy().into_owned()
    }

    fn remove(&self) {
        for p in [&self.path, &self.stderr] {
            if let Err(e) = std::fs::remove_file(p) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(path = %p.display(), error = %e, "cannot remove an exec's output");
                }
            }
        }
    }

    /// The start of the output; the file is removed.
    async fn take(&self) -> String {
        use tokio::io::AsyncReadExt;
        let mut bytes = Vec::new();
        if let Ok(file) = tokio::fs::File::open(&self.path).await {
            let _ = file
                .take(health::MAX_OUTPUT_BYTES as u64)
                .read_to_end(&mut bytes)
                .await;
        }
        self.remove();
        health::truncate_output(&bytes)
    }
}

/// A host process, told apart from a later one that reuses its pid by its start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct HostProcess {
    pid: i32,
    start_time: u64,
}

impl HostProcess {
    pub(super) fn find(pid: u32) -> Option<Self> {
        let pid = i32::try_from(pid).ok().filter(|p| *p > 0)?;
        Some(Self {
            pid,
            start_time: start_time(pid)?,
        })
    }

    fn alive(&self) -> bool {
        start_time(self.pid) == Some(self.start_time)
    }
}

fn start_time(pid: i32) -> Option<u64> {
    parse_start_time(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Field 22 of /proc/<pid>/stat; the command name before it may hold spaces and parentheses.
fn parse_start_time(stat: &str) -> Option<u64> {
    stat_field(stat, 22)?.parse().ok()
}

/// Field `n` (from 1, as in proc(5)) of /proc/<pid>/stat, for n > 2.
fn stat_field(stat: &str, n: usize) -> Option<&str> {
    let (_, after_comm) = stat.rsplit_once(')')?;
    after_comm.split_whitespace().nth(n.checked_sub(3)?)
}

/// Whether a process is stopped, or dead, or gone: nothing it does can change any more.
fn settled(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    matches!(
        stat_field(&stat, 3),
        Some("T" | "t" | "Z" | "X" | "x") | None
    )
}

/// The pids in a /proc/<pid>/task/<tid>/children file.
fn parse_pids(text: &str) -> impl Iterator<Item = i32> + '_ {
    text.split_whitespace().filter_map(|p| p.parse().ok())
}

/// The children of every thread of `pid`.
fn children_of(pid: i32) -> Vec<i32> {
    let Ok(threads) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut children = Vec::new();
    for thread in threads.flatten() {
        if let Ok(text) = std::fs::read_to_string(thread.path().join("children")) {
            children.extend(parse_pids(&text));
        }
    }
    children
}

/// Visits `root` and everything below it, parents before their children (`visit` returns a
/// process's children); pids not yet in `found` are appended to it in that order.
fn walk_tree(root: i32, found: &mut Vec<i32>, mut visit: impl FnMut(i32) -> Vec<i32>) {
    let mut visited = std::collections::HashSet::new();
    let mut stack = vec![root];
    while let Some(pid) = stack.pop() {
        if !visited.insert(pid) {
            continue;
        }
        if !found.contains(&pid) {
            found.push(pid);
        }
        let mut children = visit(pid);
        // Popped in their order.
        children.reverse();
        stack.extend(children);
    }
}

fn send_signal(pid: i32, signal: i32) {
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    let _ = unsafe { libc::kill(pid, signal) };
}

/// Kills `root` and every process it started that is still below it (blocking, for a few
/// milliseconds). The tree is stopped first, top-down, each process before its children are
/// read, and walked again until a walk finds nothing new and every process found has stopped:
/// then none is in the middle of a fork and the children lists are final, so that no process
/// escapes by being orphaned (the container's init would inherit it). Then all are killed,
/// children first. Returns how many processes were killed.
fn kill_tree(root: HostProcess) -> usize {
    if !root.alive() {
        return 0;
    }
    let mut tree = Vec::new();
    for _ in 0..50 {
        let before = tree.len();
        walk_tree(root.pid, &mut tree, |pid| {
            send_signal(pid, libc::SIGSTOP);
            children_of(pid)
        });
        if tree.len() == before && tree.iter().all(|&pid| settled(pid)) {
            break;
        }
        // A process in uninterruptible sleep stops when it wakes; one that never does is
        // killed anyway after the last walk.
        std::thread::sleep(Duration::from_millis(2));
    }
    for &pid in tree.iter().rev() {
        send_signal(pid, libc::SIGKILL);
    }
    tree.len()
}

/// One exec process, with what it takes to run and remove it. Owned (the channel is shared)
/// so that the removal can outlive a dropped `exec` call: see [`ExecCleanup`].
#[derive(Clone)]
pub(super) struct ExecProcess {
    pub(super) tasks: TasksClient<Channel>,
    pub(super) namespace: String,
    pub(super) call_timeout: Duration,
    pub(super) container_id: String,
    pub(super) exec_id: String,
}

impl ExecProcess {
    pub(super) fn req<T>(&self, msg: T, deadline: Duration) -> Request<T> {
        let mut req = Request::new(msg);
        req.set_timeout(deadline);
        if let Ok(ns) = self.namespace.parse() {
            req.metadata_mut().insert("containerd-namespace", ns);
        }
        req
    }

    pub(super) async fn call<T, F>(&self, name: &'static str, fut: F) -> Result<T, RuntimeError>
    where
        F: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        match tokio::time::timeout(self.call_timeout, fut).await {
            Ok(Ok(resp)) => Ok(resp.into_inner()),
            Ok(Err(status)) => Err(RuntimeError::Containerd {
                call: name,
                status: Box::new(status),
            }),
            Err(_) => Err(RuntimeError::Timeout {
                call: name,
                secs: self.call_timeout.as_secs(),
            }),
        }
    }

    async fn create(&self, process: Vec<u8>, output: &ExecOutput) -> Result<(), RuntimeError> {
        let mut tasks = self.tasks.clone();
        self.call(
            "Tasks.Exec",
            tasks.exec(self.req(
                ExecProcessRequest {
                    container_id: self.container_id.clone(),
                    exec_id: self.exec_id.clone(),
                    stdin: String::new(),
                    stdout: output.stdout_uri(),
                    stderr: output.stderr_uri(),
                    terminal: false,
                    spec: Some(prost_types::Any {
                        type_url: PROCESS_TYPE_URL.to_string(),
                        value: process,
                    }),
                },
                self.call_timeout,
            )),
        )
        .await
        .map(|_| ())
    }

    pub(super) async fn start(&self) -> Result<u32, RuntimeError> {
        let mut tasks = self.tasks.clone();
        self.call(
            "Tasks.Start",
            tasks.start(self.req(
                StartRequest {
                    container_id: self.container_id.clone(),
                    exec_id: self.exec_id.clone(),
                },
                self.call_timeout,
            )),
        )
        .await
        .map(|r| r.pid)
    }

    /// The exit status, or None if the process still runs after `within`.
    pub(super) async fn wait(&self, within: Duration) -> Result<Option<i32>, RuntimeError> {
        let mut tasks = self.tasks.clone();
        // containerd's deadline a little past ours: our timer decides.
        let req = self.req(
            WaitRequest {
                container_id: self.container_id.clone(),
                exec_id: self.exec_id.clone(),
            },
            within + self.call_timeout,
        );
        match tokio::time::timeout(within, tasks.wait(req)).await {
            Ok(Ok(resp)) => Ok(Some(resp.into_inner().exit_status as i32)),
            Ok(Err(status)) => Err(RuntimeError::Containerd {
                call: "Tasks.Wait",
                status: Box::new(status),
            }),
            Err(_) => Ok(None),
        }
    }

    /// Kills the process and everything below it; containerd's kill of the process itself
    /// covers a pid we could not see.
    pub(super) async fn kill(&self, pid: Option<HostProcess>) {
        if let Some(pid) = pid {
            if let Ok(killed) = tokio::task::spawn_blocking(move || kill_tree(pid)).await {
                tracing::debug!(exec_id = %self.exec_id, killed, "killed an exec's processes");
            }
        }
        let mut tasks = self.tasks.clone();
        let _ = self
            .call(
                "Tasks.Kill",
                tasks.kill(self.req(
                    KillRequest {
                        container_id: self.container_id.clone(),
                        exec_id: self.exec_id.clone(),
                        signal: libc::SIGKILL as u32,
                        all: false,
                    },
                    self.call_timeout,
                )),
            )
            .await;
    }

    async fn delete_once(&self) -> Result<(), RuntimeError> {
        let mut tasks = self.tasks.clone();
        ignore_not_found(
            self.call(
                "Tasks.DeleteProcess",
                tasks.delete_process(self.req(
                    DeleteProcessRequest {
                        container_id: self.container_id.clone(),
                        exec_id: self.exec_id.clone(),
                    },
                    self.call_timeout,
                )),
            )
            .await,
        )
    }

    /// Removes the process from containerd, killing it first if it may still run (`kill`)
    /// or if containerd refuses to delete it (it still runs), for about `patience`. The shim
    /// waits for the output to be copied before the delete returns.
    pub(super) async fn delete(
        &self,
        pid: Option<HostProcess>,
        kill: bool,
        patience: Duration,
    ) -> Result<(), RuntimeError> {
        if kill {
            self.kill(pid).await;
            let _ = self.wait(Duration::from_secs(2)).await;
        }
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            match self.delete_once().await {
                Ok(()) => return Ok(()),
                Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
                Err(e) => {
                    tracing::debug!(exec_id = %self.exec_id, error = %e, "deleting an exec again");
                    self.kill(pid).await;
                    let _ = self.wait(Duration::from_millis(500)).await;
                }
            }
        }
    }

    /// Runs the created process to its end or for at most `timeout`; its pid goes to `pid` as
    /// soon as it is known.
    async fn run(
        &self,
        timeout: Duration,
        pid: &mut Option<HostProcess>,
    ) -> Result<Option<i32>, RuntimeError> {
        let host_pid = self.start().await?;
        *pid = HostProcess::find(host_pid);
        if let Some(code) = self.wait(timeout).await? {
            return Ok(Some(code));
        }
        self.kill(*pid).await;
        if let Err(e) = self.wait(self.call_timeout).await {
            tracing::warn!(exec_id = %self.exec_id, error = %e, "waiting for a killed exec");
        }
        Ok(None)
    }
}

/// Removes an exec process that its `exec` call could not remove: the call was dropped
/// half-way (a health checker aborted with its container), or containerd did not answer in
/// time. Killed, deleted and its output file removed, in a task of its own that keeps trying
/// for a while (a start that timed out on our side may still be going on in the shim).
pub(super) struct ExecCleanup {
    pub(super) process: Option<ExecProcess>,
    pub(super) pid: Option<HostProcess>,
    /// Removes what the exec's output went through (its files or FIFOs).
    pub(super) remove_files: Box<dyn Fn() + Send + Sync>,
}

impl ExecCleanup {
    /// The call removed the process itself.
    pub(super) fn disarm(&mut self) {
        self.process = None;
    }
}

impl Drop for ExecCleanup {
    fn drop(&mut self) {
        let Some(process) = self.process.take() else {
            return;
        };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let pid = self.pid;
        let remove_files = std::mem::replace(&mut self.remove_files, Box::new(|| {}));
        rt.spawn(async move {
            let patience = process.call_timeout * 5;
            if let Err(e) = process.delete(pid, true, patience).await {
                tracing::warn!(exec_id = %process.exec_id, error = %e, "cannot remove an abandoned exec");
            }
            remove_files();
        });
    }
}

impl Containerd {
    pub(super) async fn exec_template(
        &self,
        id: &str,
    ) -> Result<std::sync::Arc<ExecTemplate>, RuntimeError> {
        if let Some(t) = self.exec_templates_lock().get(id) {
            return Ok(std::sync::Arc::clone(t));
        }
        let mut containers = self.client.containers();
        let spec = self
            .call(
                "Containers.Get",
                containers.get(self.req(GetContainerRequest { id: id.to_string() })),
            )
            .await?
            .container
            .and_then(|c| c.spec)
            .ok_or_else(|| RuntimeError::InvalidSpec(format!("container {id} has no spec")))?;
        let template = std::sync::Arc::new(
            exec_template(&spec.value)
                .map_err(|e| RuntimeError::InvalidSpec(format!("container {id}: {e}")))?,
        );
        self.exec_templates_lock()
            .insert(id.to_string(), std::sync::Arc::clone(&template));
        Ok(template)
    }

    fn resolved_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ResolvedImage>> {
        self.resolved.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn exec_templates_lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, std::sync::Arc<ExecTemplate>>> {
        self.exec_templates
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }
}

impl Runtime for Containerd {
    async fn exec(&self, req: &ExecRequest) -> Result<ExecOutcome, RuntimeError> {
        let id = req.runtime_id.as_str();
        if req.args.is_empty() {
            return Err(RuntimeError::InvalidSpec("exec: no command".into()));
        }
        match self.state(id).await? {
            ProcessState::Running => {}
            state => {
                return Err(RuntimeError::Io(format!(
                    "container {id} is not running ({state:?})"
                )))
            }
        }
        let template = self.exec_template(id).await?;
        let process = exec_process_spec(&template, &req.args)
            .map_err(|e| RuntimeError::InvalidSpec(format!("container {id}: {e}")))?;

        let output = ExecOutput::new(&req.output_path)?;
        output.prepare()?;

        let exec = ExecProcess {
            tasks: self.client.tasks(),
            namespace: self.cfg.namespace.clone(),
            call_timeout: self.cfg.call_timeout,
            container_id: id.to_string(),
            exec_id: req.exec_id.clone(),
        };
        if let Err(e) = exec.create(process, &output).await {
            output.remove();
            return Err(e);
        }
        // From here on the process exists in containerd and is removed whatever happens,
        // also if this call is dropped.
        let mut cleanup = ExecCleanup {
            process: Some(exec.clone()),
            pid: None,
            remove_files: {
                let output = output.clone();
                Box::new(move || output.remove())
            },
        };
        let ran = match exec.run(req.timeout, &mut cleanup.pid).await {
            // containerd did not answer: the shim may still be starting the process (a 1.6
            // shim starts one process at a time). The cleanup waits for it in the background.
            Err(e @ RuntimeError::Timeout { .. }) => {
                tracing::warn!(runtime_id = id, exec_id = %req.exec_id, error = %e, "exec timed out");
                return Err(e);
            }
            ran => ran,
        };
        let pid = cleanup.pid;
        // Wait failed: the process may still run. A failed start never ran.
        let kill = ran.is_err() && pid.is_some();
        let deleted = exec.delete(pid, kill, self.cfg.call_timeout).await;
        let text = output.take().await;
        match deleted {
            Ok(()) => cleanup.disarm(),
            // Left to the cleanup, which keeps trying.
            Err(e) => {
                tracing::warn!(runtime_id = id, exec_id = %req.exec_id, error = %e, "cannot delete an exec process yet")
            }
        }
        match ran {
            Ok(exit_code) => Ok(ExecOutcome {
                exit_code,
                output: text,
            }),
            // containerd's message says what is wrong ("exec: \"x\": executable file not
            // found in $PATH"); the status around it would only be noise in a check's output.
            Err(RuntimeError::Containerd {
                call: "Tasks.Start",
                status,
            }) => Err(RuntimeError::Io(format!(
                "cannot run {:?} in {id}: {}",
                req.args[0],
                status.message()
            ))),
            Err(e) => Err(e),
        }
    }

    async fn exec_attached(
        &self,
        req: &AttachedExecRequest,
        input: tokio::sync::mpsc::UnboundedReceiver<AttachedInput>,
        output: tokio::sync::mpsc::Sender<AttachedOutput>,
    ) -> Result<i32, RuntimeError> {
        self.run_attached(req, input, output).await
    }

    async fn version(&self) -> Result<String, RuntimeError> {
        let mut v = self.client.version();
        let resp = self.call("Version", v.version(self.req(()))).await?;
        Ok(resp.version)
    }

    async fn resolve_image(&self, image: &str) -> Result<String, RuntimeError> {
        self.resolve(image).await.map(|r| r.digest)
    }

    async fn create(&self, req: &CreateRequest) -> Result<(), RuntimeError> {
        // A leftover of a launch whose caller died may still be in progress in containerd:
        // wait for it to end (each attempt removes what it left) rather than fail the task.
        let mut attempt = 0;
        loop {
            match self.create_once(req).await {
                Err(e) if e.is_leftover_in_progress() && attempt < 5 => {
                    attempt += 1;
                    tracing::info!(runtime_id = %req.runtime_id, attempt, error = %e, "an earlier launch is still in progress in containerd; retrying");
                    tokio::time::sleep(Duration::from_millis(300 * attempt)).await;
                }
                result => return result,
            }
        }
    }

    async fn start(&self, runtime_id: &str) -> Result<(), RuntimeError> {
        let mut tasks = self.client.tasks();
        self.call(
            "Tasks.Start",
            tasks.start(self.req(StartRequest {
                container_id: runtime_id.to_string(),
                exec_id: String::new(),
            })),
        )
        .await
        .map(|_| ())
    }

    async fn restart(
        &self,
        runtime_id: &str,
        log_path: &std::path::Path,
    ) -> Result<(), RuntimeError> {
        // After a crash mid-restart the new process may already run: nothing left to do.
        if self.state(runtime_id).await? == ProcessState::Running {
            return Ok(());
        }
        self.delete_task(runtime_id).await?;
        let mut snapshots = self.client.snapshots();
        let rootfs = self
            .call(
                "Snapshots.Mounts",
                snapshots.mounts(self.req(
                    containerd_client::services::v1::snapshots::MountsRequest {
                        snapshotter: self.cfg.snapshotter.clone(),
                        key: runtime_id.to_string(),
                    },
                )),
            )
            .await?
            .mounts;
        let log_uri = crate::logs::stdio_uri(log_path);
        let mut tasks = self.client.tasks();
        self.call(
            "Tasks.Create",
            tasks.create(self.req(CreateTaskRequest {
                container_id: runtime_id.to_string(),
                rootfs,
                stdout: log_uri.clone(),
                stderr: log_uri,
                ..Default::default()
            })),
        )
        .await?;
        self.start(runtime_id).await
    }

    async fn signal(&self, runtime_id: &str, signal: i32) -> Result<(), RuntimeError> {
        let mut tasks = self.client.tasks();
        ignore_not_found(
            self.call(
                "Tasks.Kill",
                tasks.kill(self.req(KillRequest {
                    container_id: runtime_id.to_string(),
                    exec_id: String::new(),
                    signal: signal as u32,
                    all: true,
                })),
            )
            .await,
        )
    }

    async fn state(&self, runtime_id: &str) -> Result<ProcessState, RuntimeError> {
        let mut tasks = self.client.tasks();
        let got = self
            .call(
                "Tasks.Get",
                tasks.get(self.req(GetRequest {
                    container_id: runtime_id.to_string(),
                    exec_id: String::new(),
                })),
            )
            .await;
        let process = match got {
            Ok(resp) => resp.process,
            Err(e) if e.is_not_found() => return Ok(ProcessState::Missing),
            Err(e) => return Err(e),
        };
        let Some(p) = process else {
            return Ok(ProcessState::Missing);
        };
        Ok(
            match ProcStatus::try_from(p.status).unwrap_or(ProcStatus::Unknown) {
                ProcStatus::Created => ProcessState::Created,
                ProcStatus::Stopped => ProcessState::Stopped {
                    exit_code: p.exit_status as i32,
                },
                ProcStatus::Unknown => ProcessState::Missing,
                _ => ProcessState::Running,
            },
        )
    }

    async fn remove(&self, runtime_id: &str) -> Result<(), RuntimeError> {
        self.exec_templates_lock().remove(runtime_id);
        self.delete_task(runtime_id).await?;
        let mut containers = self.client.containers();
        let exists = self
            .call(
                "Containers.Get",
                containers.get(self.req(GetContainerRequest {
                    id: runtime_id.to_string(),
                })),
            )
            .await;
        match exists {
            Ok(_) => ignore_not_found(
                self.call(
                    "Containers.Delete",
                    containers.delete(self.req(DeleteContainerRequest {
                        id: runtime_id.to_string(),
                    })),
                )
                .await,
            )?,
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
        self.remove_snapshot(runtime_id).await?;
        self.delete_launch_leases(runtime_id).await
    }

    async fn remove_execs(&self, runtime_id: &str, prefix: &str) -> Result<usize, RuntimeError> {
        let mut tasks = self.client.tasks();
        let listed = self
            .call(
                "Tasks.ListPids",
                tasks.list_pids(self.req(ListPidsRequest {
                    container_id: runtime_id.to_string(),
                })),
            )
            .await;
        let processes = match listed {
            Ok(resp) => resp.processes,
            Err(e) if e.is_not_found() => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut removed = 0;
        for p in processes {
            // The runc shim names the exec a pid belongs to; the main process has no details.
            let Some(exec_id) = p
                .info
                .as_ref()
                .and_then(|a| ProcessDetails::decode(a.value.as_slice()).ok())
                .map(|d| d.exec_id)
            else {
                continue;
            };
            if !exec_id.starts_with(prefix) {
                continue;
            }
            let process = ExecProcess {
                tasks: self.client.tasks(),
                namespace: self.cfg.namespace.clone(),
                call_timeout: self.cfg.call_timeout,
                container_id: runtime_id.to_string(),
                exec_id,
            };
            process
                .delete(HostProcess::find(p.pid), true, self.cfg.call_timeout)
                .await?;
            removed += 1;
        }
        Ok(removed)
    }

    async fn list(&self) -> Result<Vec<ListedContainer>, RuntimeError> {
        let mut containers = self.client.containers();
        let resp = self
            .call(
                "Containers.List",
                containers.list(self.req(ListContainersRequest { filters: vec![] })),
            )
            .await?;
        Ok(resp
            .containers
            .into_iter()
            .map(|c| ListedContainer {
                task_arn: c.labels.get(LABEL_TASK_ARN).cloned(),
                runtime_id: c.id,
            })
            .collect())
    }

    async fn exits(&self) -> Result<Pin<Box<dyn Stream<Item = ExitEvent> + Send>>, RuntimeError> {
        // containerd sends a subscription's response headers only with its first event, so
        // the call cannot complete until something is published. We publish a marker event
        // until it does: once the call returns, the subscription is live and no exit after
        // this point can be missed.
        let filters = [TOPIC_EXIT, TOPIC_SUBSCRIBED]
            .iter()
            .map(|t| format!("topic==\"{t}\",namespace=={}", self.cfg.namespace))
            .collect();
        let mut req = Request::new(SubscribeRequest { filters });
        if let Ok(ns) = self.cfg.namespace.parse() {
            req.metadata_mut().insert("containerd-namespace", ns);
        }
        let mut events = self.client.events();
        let subscribe = events.subscribe(req);
        tokio::pin!(subscribe);
        let deadline = tokio::time::Instant::now() + self.cfg.call_timeout;
        let stream = loop {
            tokio::select! {
                resp = &mut subscribe => break resp.map_err(|status| RuntimeError::Containerd {
                    call: "Events.Subscribe",
                    status: Box::new(status),
                })?.into_inner(),
                _ = tokio::time::sleep(Duration::from_millis(100)) => {
                    if tokio::time::Instant::now() > deadline {
                        return Err(RuntimeError::Timeout {
                            call: "Events.Subscribe",
                            secs: self.cfg.call_timeout.as_secs(),
                        });
                    }
                    self.publish_marker().await?;
                }
            }
        };
        let exits = stream
            .take_while(|item| std::future::ready(item.is_ok()))
            .filter_map(|item| {
                std::future::ready(item.ok().and_then(|env| {
                    if env.topic != TOPIC_EXIT {
                        return None;
                    }
                    let any = env.event?;
                    let exit = TaskExit::decode(any.value.as_slice()).ok()?;
                    // Exits of exec'd processes carry their exec id; only main processes count.
                    (exit.id == exit.container_id).then_some(ExitEvent {
                        runtime_id: exit.container_id,
                        exit_code: exit.exit_status as i32,
                    })
                }))
            });
        Ok(Box::pin(exits))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exec_runs_the_containers_process_with_other_args_and_no_terminal() {
        let spec = serde_json::json!({
            "ociVersion": "1.0.2",
            "process": {
                "terminal": true,
                "consoleSize": {"height": 24, "width": 80},
                "user": {"uid": 1000, "gid": 1000, "additionalGids": [10]},
                "args": ["nginx", "-g", "daemon off;"],
                "env": ["PATH=/bin", "A=b"],
                "cwd": "/srv",
                "capabilities": {"bounding": ["CAP_KILL"]},
                "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
                "noNewPrivileges": true,
                "apparmorProfile": "berth-default"
            },
            "root": {"path": "rootfs"}
        });
        let args = vec!["sh".to_string(), "-c".to_string(), "exit 3".to_string()];
        let got = exec_process(&serde_json::to_vec(&spec).unwrap(), &args).unwrap();
        let got: serde_json::Value = serde_json::from_slice(&got).unwrap();
        let mut want = spec["process"].clone();
        want["args"] = serde_json::json!(["sh", "-c", "exit 3"]);
        want["terminal"] = serde_json::json!(false);
        want.as_object_mut().unwrap().remove("consoleSize");
        assert_eq!(got, want);

        assert!(exec_process(b"{\"root\": {}}", &args)
            .unwrap_err()
            .contains("no process"));
        assert!(exec_process(b"not json", &args).is_err());
    }

    #[test]
    fn output_goes_to_one_file_under_two_names() {
        let out =
            ExecOutput::new(Path::new("/var/lib/berth/health/t1-app.health-1-0a.out")).unwrap();
        assert_eq!(
            out.stdout_uri(),
            "/var/lib/berth/health/t1-app.health-1-0a.out"
        );
        assert_eq!(
            out.stderr_uri(),
            "/var/lib/berth/health/t1-app.health-1-0a.out.stderr"
        );
        for bad in ["relative.out", "/tmp/100%.out", "/tmp/a\nb.out"] {
            assert!(ExecOutput::new(Path::new(bad)).is_err(), "{bad}");
        }

        let dir = std::env::temp_dir().join(format!("berth-exec-out-{:08x}", fastrand::u32(..)));
        let out = ExecOutput::new(&dir.join("sub/x.out")).unwrap();
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(&out.path, "leftover").unwrap();
        out.prepare().unwrap();
        let append = |p: &Path, text: &str| {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new().append(true).open(p).unwrap();
            f.write_all(text.as_bytes()).unwrap();
        };
        append(&out.path, "out\n");
        append(&out.stderr, "err\n");
        append(&out.path, "out again\n");
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        assert_eq!(rt.block_on(out.take()), "out\nerr\nout again\n");
        assert!(!out.path.exists() && !out.stderr.exists());
        // Preparing twice (a leftover link) works too.
        out.prepare().unwrap();
        out.prepare().unwrap();
        out.remove();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn start_times_are_read_past_any_command_name() {
        let stat = "4242 (we ird) (x) S 1 4242 4242 0 -1 4194560 150 0 0 0 0 0 0 0 20 0 1 0 \
                    987654 1863680 200 18446744073709551615";
        assert_eq!(parse_start_time(stat), Some(987654));
        assert_eq!(stat_field(stat, 3), Some("S"));
        assert_eq!(stat_field(stat, 4), Some("1"));
        assert_eq!(stat_field(stat, 2), None);
        assert_eq!(parse_start_time("4242 (sh) S 1 2"), None);
        assert_eq!(parse_start_time(""), None);
        let own = std::fs::read_to_string("/proc/self/stat").unwrap();
        assert!(parse_start_time(&own).is_some(), "{own}");
    }

    #[test]
    fn children_files_list_pids() {
        assert_eq!(parse_pids("12 345 6 \n").collect::<Vec<_>>(), [12, 345, 6]);
        assert_eq!(parse_pids("").count(), 0);
    }

    #[test]
    fn trees_are_walked_parents_first_and_each_pid_once() {
        let tree: HashMap<i32, Vec<i32>> = HashMap::from([
            (1, vec![2, 3]),
            (2, vec![4]),
            (3, vec![5, 6]),
            (4, vec![]),
            // A reused pid must not loop.
            (6, vec![1]),
        ]);
        let mut visits = Vec::new();
        let mut found = Vec::new();
        walk_tree(1, &mut found, |pid| {
            visits.push(pid);
            tree.get(&pid).cloned().unwrap_or_default()
        });
        assert_eq!(found, [1, 2, 4, 3, 5, 6]);
        assert_eq!(visits, [1, 2, 4, 3, 5, 6]);
        // A second walk visits everything again and appends only what is new.
        let mut found = vec![1, 2, 4];
        walk_tree(1, &mut found, |pid| {
            tree.get(&pid).cloned().unwrap_or_default()
        });
        assert_eq!(found, [1, 2, 4, 3, 5, 6]);
    }

    #[test]
    fn a_tree_is_killed_with_its_background_children() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 300 & sleep 300 & wait"])
            .spawn()
            .unwrap();
        let root = HostProcess::find(child.id()).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let sleeps = loop {
            let c = children_of(root.pid);
            if c.len() == 2 {
                break c;
            }
            assert!(std::time::Instant::now() < deadline, "{c:?}");
            std::thread::sleep(Duration::from_millis(20));
        };
        let sleeps: Vec<HostProcess> = sleeps
            .into_iter()
            .filter_map(|p| HostProcess::find(p as u32))
            .collect();
        assert_eq!(sleeps.len(), 2);
        assert_eq!(kill_tree(root), 3);
        let status = child.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(libc::SIGKILL)
        );
        assert!(!root.alive());
        // Orphaned, the killed sleeps are reaped by the host's init.
        for s in sleeps {
            while s.alive() {
                let state =
                    std::fs::read_to_string(format!("/proc/{}/stat", s.pid)).unwrap_or_default();
                let state = state.rsplit_once(')').map(|(_, r)| r.trim_start());
                // Dead, waiting to be reaped.
                if state.is_some_and(|r| r.starts_with('Z') || r.starts_with('X')) {
                    break;
                }
                assert!(std::time::Instant::now() < deadline, "{} lives", s.pid);
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        // A process that is gone is not killed again.
        assert_eq!(kill_tree(root), 0);
    }

    /// Live processes whose command line is exactly `args`.
    fn running(args: &[&str]) -> Vec<i32> {
        let want: Vec<u8> = args
            .iter()
            .flat_map(|a| [a.as_bytes(), b"\0"].concat())
            .collect();
        std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want))
            .collect()
    }

    #[test]
    fn a_forking_tree_is_killed_without_escapes() {
        // A shell starting sleeps, one every few milliseconds for several seconds, while it is
        // being killed: a kill that is not atomic over the tree leaves some of them running.
        let secs = format!("{}", 3000 + fastrand::u32(..1000));
        let script = format!(
            "i=0; while [ $i -lt 2000 ]; do sleep {secs} & sleep 0.002; i=$((i+1)); done; wait"
        );
        // Without our stdio: an escaped sleep must not hold the test harness's output open.
        let mut child = std::process::Command::new("sh")
            .args(["-c", &script])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let root = HostProcess::find(child.id()).unwrap();
        std::thread::sleep(Duration::from_millis(30));
        let killed = kill_tree(root);
        child.wait().unwrap();
        assert!(killed >= 1);
        // Orphans would live on under the host's init; killed ones are zombies (no command
        // line) until it reaps them.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let left = running(&["sleep", &secs]);
            if left.is_empty() {
                break;
            }
            if std::time::Instant::now() > deadline {
                for &pid in &left {
                    send_signal(pid, libc::SIGKILL);
                }
                panic!("escaped: {left:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
