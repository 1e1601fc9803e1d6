//! Serving the control plane's log requests: each runs on a blocking thread of its own (reading
//! files, then polling the live file when following), at most [`MAX_CONCURRENT`] at a time, and
//! hands its chunks to a [`Sink`] the session provides. It never runs on the session loop.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, Semaphore};
use tracing::debug;

use super::reader::{self, ReadError};
use crate::model::ContainerStatus;
use crate::store::Store;

pub const MAX_CONCURRENT: usize = 16;
const CHUNK: usize = 64 * 1024;
const POLL: Duration = Duration::from_millis(200);
/// How long a stopped container's log is still read, for what its logger had not yet written.
const DRAIN_AFTER_STOP: Duration = Duration::from_millis(1000);

/// A log request, converted from the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogQuery {
    pub request_id: String,
    pub task_arn: String,
    /// Empty: the task's only container.
    pub container: String,
    pub tail_lines: usize,
    pub follow: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Chunk {
    pub data: Vec<u8>,
    pub eof: bool,
    pub error: String,
}

/// Where a request's chunks go. `send` blocks while the session is backed up and returns false
/// once the session is gone; `closed` tells the same without sending.
pub struct Sink {
    pub send: Box<dyn Fn(Chunk) -> bool + Send>,
    pub closed: Box<dyn Fn() -> bool + Send>,
}

pub struct LogService {
    store: Arc<Store>,
    logs_dir: PathBuf,
    permits: Arc<Semaphore>,
    cancels: Arc<Mutex<HashMap<String, oneshot::Sender<()>>>>,
}

impl LogService {
    pub fn new(store: Arc<Store>, logs_dir: PathBuf) -> Arc<Self> {
        Arc::new(Self {
            store,
            logs_dir,
            permits: Arc::new(Semaphore::new(MAX_CONCURRENT)),
            cancels: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// Ends a following request (a no-op if it already ended).
    pub fn cancel(&self, request_id: &str) {
        let sender = self
            .cancels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(request_id);
        if let Some(tx) = sender {
            let _ = tx.send(());
        }
    }

    /// Starts serving `q` in the background; returns at once. Chunks are only ever sent from
    /// the request's own blocking thread, so `sink.send` may block.
    pub fn start(self: &Arc<Self>, q: LogQuery, sink: Sink) {
        let (cancel_tx, cancel_rx) = oneshot::channel();
        self.cancels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(q.request_id.clone(), cancel_tx);
        let this = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let id = q.request_id.clone();
            match Arc::clone(&this.permits).try_acquire_owned() {
                Ok(_permit) => this.serve(q, &sink, cancel_rx),
                Err(_) => {
                    (sink.send)(Chunk {
                        eof: true,
                        error: format!(
                            "this agent is already serving {MAX_CONCURRENT} log requests; try again later"
                        ),
                        ..Chunk::default()
                    });
                }
            }
            this.cancels
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
        });
    }

    fn serve(&self, q: LogQuery, sink: &Sink, mut cancel: oneshot::Receiver<()>) {
        let fail = |error: String| {
            (sink.send)(Chunk {
                eof: true,
                error,
                ..Chunk::default()
            });
        };
        let (task_id, container) = match self.resolve(&q) {
            Ok(x) => x,
            Err(e) => return fail(e),
        };
        let path = super::log_path(&self.logs_dir, &task_id, &container);
        let mut opened = match reader::open(&path, q.tail_lines) {
            Ok(o) => o,
            Err(ReadError::Missing) => {
                return fail(format!(
                    "container {container:?} of task {} has no log yet",
                    q.task_arn
                ))
            }
            Err(ReadError::Io(e)) => return fail(format!("reading {}: {e}", path.display())),
        };
        // Always one chunk first, even an empty one: the caller learns the request is good.
        let mut first = true;
        for buf in opened.initial.drain(..) {
            for piece in buf.chunks(CHUNK) {
                first = false;
                if !(sink.send)(data(piece.to_vec())) {
                    return;
                }
            }
        }
        if first && !(sink.send)(data(Vec::new())) {
            return;
        }
        if !q.follow {
            (sink.send)(Chunk {
                eof: true,
                ..Chunk::default()
            });
            return;
        }
        let mut stopped_at: Option<Instant> = None;
        let mut last_check = Instant::now();
        loop {
            if cancel.try_recv() != Err(oneshot::error::TryRecvError::Empty) || (sink.closed)() {
                debug!(request = %q.request_id, "log follow ended by the caller");
                return;
            }
            let more = match reader::read_more(&path, &mut opened.live, CHUNK) {
                Ok(b) => b,
                Err(e) => return fail(format!("reading {}: {e}", path.display())),
            };
            if !more.is_empty() {
                if !(sink.send)(data(more)) {
                    return;
                }
                continue;
            }
            if last_check.elapsed() >= Duration::from_secs(1) || stopped_at.is_some() {
                last_check = Instant::now();
                if stopped_at.is_none() && !self.running(&q.task_arn, &container) {
                    stopped_at = Some(Instant::now());
                }
                if stopped_at.is_some_and(|t| t.elapsed() >= DRAIN_AFTER_STOP) {
                    (sink.send)(Chunk {
                        eof: true,
                        ..Chunk::default()
                    });
                    return;
                }
            }
            std::thread::sleep(POLL);
        }
    }

    /// The task's id and the container's name, or why the request cannot be served.
    fn resolve(&self, q: &LogQuery) -> Result<(String, String), String> {
        let state = self
            .store
            .task(&q.task_arn)
            .map_err(|e| format!("reading the agent's state: {e}"))?
            .ok_or_else(|| format!("task {} is not known to this agent", q.task_arn))?;
        let names = state.container_names();
        let container = match (q.container.as_str(), names.as_slice()) {
            ("", [only]) => only.to_string(),
            ("", _) => {
                return Err(format!(
                    "task {} has {} containers ({}): name one",
                    q.task_arn,
                    names.len(),
                    names.join(", ")
                ))
            }
            (name, _) if names.contains(&name) => name.to_string(),
            (name, _) => return Err(state.no_such_container(name)),
        };
        Ok((state.spec.id().to_string(), container))
    }

    /// Whether the container may still write to its log.
    fn running(&self, task_arn: &str, container: &str) -> bool {
        match self.store.task(task_arn) {
            Ok(Some(state)) => state
                .container(container)
                .is_some_and(|c| c.known != ContainerStatus::Stopped),
            Ok(None) => false,
            // Unsure: keep following; the caller can always cancel.
            Err(_) => true,
        }
    }
}

fn data(data: Vec<u8>) -> Chunk {
    Chunk {
        data,
        ..Chunk::default()
    }
}
