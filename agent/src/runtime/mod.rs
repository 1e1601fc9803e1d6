//! The container runtime boundary. The engine talks to this trait only; `containerd` is the real
//! implementation, `fake` a scripted one for tests of the engine without root.

pub mod attached;
pub mod containerd;
pub mod facts;
pub mod fake;
pub mod image;
pub mod mounts;
pub mod oci;
pub mod pull;
pub mod rootfs;

use std::future::Future;
use std::path::PathBuf;

use crate::model::{ContainerSpec, NetworkMode, TaskSpec};

/// Everything needed to create one container of a task.
#[derive(Debug, Clone)]
pub struct CreateRequest {
    pub runtime_id: String,
    pub task_arn: String,
    pub task_id: String,
    pub container: ContainerSpec,
    pub network_mode: NetworkMode,
    /// The task's network namespace, which the container joins (bridge, awsvpc).
    pub netns_path: Option<PathBuf>,
    /// The task's address, for the container's hosts file.
    pub address: Option<std::net::Ipv4Addr>,
    /// Where the shim writes the container's stdout and stderr.
    pub log_path: PathBuf,
    /// The whole task: volumes, and the mount points of containers named in volumesFrom.
    pub task: TaskSpec,
    /// This task's own directory for task-scoped volumes (`<dir>/<volume name>`), created by
    /// the runtime when needed and removed when the task is cleaned up.
    pub task_volumes_dir: PathBuf,
    /// The task's cgroup (`<root>/<task id>`, see `crate::cgroups`); the container's cgroup is
    /// created below it. None for tasks recorded by agents without task cgroups.
    pub cgroup_parent: Option<String>,
}

/// What a container's main process is doing, as containerd sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessState {
    /// No containerd task (never created, or deleted).
    Missing,
    Created,
    Running,
    Stopped {
        exit_code: i32,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitEvent {
    pub runtime_id: String,
    pub exit_code: i32,
}

/// One command run inside a running container (a health check).
#[derive(Debug, Clone)]
pub struct ExecRequest {
    pub runtime_id: String,
    /// Unique among the container's execs; the runtime removes the process when done.
    pub exec_id: String,
    pub args: Vec<String>,
    /// Past this the process and everything it started are killed.
    pub timeout: std::time::Duration,
    /// Where the process's stdout and stderr are written while it runs; removed afterwards.
    pub output_path: PathBuf,
}

/// A command a user runs in a running container (ExecuteCommand), attached to their terminal
/// or pipes for as long as it runs.
#[derive(Debug, Clone)]
pub struct AttachedExecRequest {
    pub runtime_id: String,
    /// Unique among the container's execs (and starts with [`attached::EXEC_PREFIX`]).
    pub exec_id: String,
    pub args: Vec<String>,
    /// Some((rows, cols)): on a pseudo-terminal of that size; stdout and stderr are one
    /// stream then.
    pub terminal: Option<(u16, u16)>,
    /// Its stdio FIFOs are made in here; removed afterwards.
    pub fifo_dir: PathBuf,
}

/// What the user sends to an attached exec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachedInput {
    Stdin(Vec<u8>),
    /// The process reads end-of-file.
    StdinEof,
    Resize {
        rows: u16,
        cols: u16,
    },
    /// The user went away: the process and all it started are killed.
    Kill,
}

/// What an attached exec sends back, in order: `Started` once, then its output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttachedOutput {
    Started,
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutcome {
    /// None: the process outlived the timeout and was killed.
    pub exit_code: Option<i32>,
    /// The start of its output, at most `health::MAX_OUTPUT_BYTES`.
    pub output: String,
}

/// A container found in the agent's containerd namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedContainer {
    pub runtime_id: String,
    pub task_arn: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("image {0} is not present in containerd")]
    ImageNotFound(String),
    #[error("image {image}: {message}")]
    BadImage { image: String, message: String },
    #[error("{0}")]
    InvalidSpec(String),
    #[error("containerd call {call} timed out after {secs}s")]
    Timeout { call: &'static str, secs: u64 },
    #[error("containerd {call}: {status}")]
    Containerd {
        call: &'static str,
        status: Box<tonic::Status>,
    },
    #[error("cannot connect to containerd at {socket}: {message}")]
    Connect { socket: String, message: String },
    #[error("{0}")]
    Io(String),
}

impl RuntimeError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Containerd { status, .. } if status.code() == tonic::Code::NotFound)
    }

    /// containerd is still busy with an earlier call for the same container: a Tasks.Create
    /// whose caller died (an agent killed mid-launch) goes on in containerd, and until it
    /// ends a new one finds its bundle directory ("file exists") or its task. Worth retrying.
    pub fn is_leftover_in_progress(&self) -> bool {
        matches!(self, Self::Containerd { status, .. }
            if status.code() == tonic::Code::AlreadyExists
                || status.message().contains("file exists"))
    }
}

/// The reason ECS would show for a failure at each stage of a container's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Image,
    Create,
    Start,
}

impl Stage {
    pub fn reason(self, err: &RuntimeError) -> String {
        let prefix = match self {
            Stage::Image => "CannotPullContainerError",
            Stage::Create => "CannotCreateContainerError",
            Stage::Start => "CannotStartContainerError",
        };
        format!("{prefix}: {err}")
    }
}

/// The few things the engine asks of a container runtime. Every method is idempotent where it
/// can be, so that a retry after an agent crash does no harm.
pub trait Runtime: Send + Sync + 'static {
    /// The runtime's version, for the control plane and health.
    fn version(&self) -> impl Future<Output = Result<String, RuntimeError>> + Send;

    /// Checks that the container's image is present and usable; returns its digest (what its
    /// name points to in the runtime's image store).
    fn resolve_image(
        &self,
        image: &str,
    ) -> impl Future<Output = Result<String, RuntimeError>> + Send;

    /// Creates the container and its (not yet started) process. A leftover container with the
    /// same id that is not running is replaced.
    fn create(&self, req: &CreateRequest) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    fn start(&self, runtime_id: &str) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// Starts a new process in an existing container whose process has exited: same container,
    /// same snapshot, so the writable layer survives (ECS restart policies). Output goes on to
    /// `log_path`. A process that is already running again counts as restarted.
    fn restart(
        &self,
        runtime_id: &str,
        log_path: &std::path::Path,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// Sends a signal to every process of the container; a missing container is not an error.
    fn signal(
        &self,
        runtime_id: &str,
        signal: i32,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    fn state(
        &self,
        runtime_id: &str,
    ) -> impl Future<Output = Result<ProcessState, RuntimeError>> + Send;

    /// Deletes the process, the container and its snapshot; missing pieces are skipped.
    fn remove(&self, runtime_id: &str) -> impl Future<Output = Result<(), RuntimeError>> + Send;

    /// Runs a command in a running container with the container's user, environment and
    /// working directory, and waits for it at most `req.timeout`; a process that outlives it
    /// is killed with everything it started. Never leaves the exec process behind.
    fn exec(
        &self,
        req: &ExecRequest,
    ) -> impl Future<Output = Result<ExecOutcome, RuntimeError>> + Send;

    /// Runs a user's command in a running container as `exec` does, with its stdin, stdout
    /// and stderr (or terminal) connected to `input` and `output`, until it exits: returns its
    /// exit status once all its output was sent. A closed `input` or `output` (the user went
    /// away) kills it. Never leaves the exec process or its FIFOs behind.
    fn exec_attached(
        &self,
        req: &AttachedExecRequest,
        input: tokio::sync::mpsc::UnboundedReceiver<AttachedInput>,
        output: tokio::sync::mpsc::Sender<AttachedOutput>,
    ) -> impl Future<Output = Result<i32, RuntimeError>> + Send;

    /// Kills and deletes the exec processes of a running container whose exec id starts with
    /// `prefix`: after a crash, the checks the previous agent had running (a hanging one
    /// would run for ever). Returns how many it removed.
    fn remove_execs(
        &self,
        _runtime_id: &str,
        _prefix: &str,
    ) -> impl Future<Output = Result<usize, RuntimeError>> + Send {
        async { Ok(0) }
    }

    /// Containers in the agent's namespace, for recovery.
    fn list(&self) -> impl Future<Output = Result<Vec<ListedContainer>, RuntimeError>> + Send;

    /// Subscribes to exits of containers' main processes. The stream ends when the connection
    /// to the runtime is lost; the caller resubscribes and re-checks what it waits for.
    fn exits(
        &self,
    ) -> impl Future<
        Output = Result<
            std::pin::Pin<Box<dyn futures_util::Stream<Item = ExitEvent> + Send>>,
            RuntimeError,
        >,
    > + Send;
}
