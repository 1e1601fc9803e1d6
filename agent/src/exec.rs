//! Serving the control plane's exec requests (ExecuteCommand sessions): each runs the user's
//! command in one of this agent's running containers through the runtime's attached exec, off
//! the session loop, at most [`MAX_CONCURRENT`] at a time. The control plane has checked that
//! the task allows it (enableExecuteCommand); the agent checks that the task and container are
//! its own and running.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{mpsc, Semaphore};
use tracing::{debug, info, info_span, Instrument};

use crate::model::ContainerStatus;
use crate::runtime::attached::EXEC_PREFIX;
use crate::runtime::{AttachedExecRequest, AttachedInput, AttachedOutput, Runtime};
use crate::store::Store;

pub const MAX_CONCURRENT: usize = 16;

/// An exec request, converted from the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecQuery {
    pub exec_id: String,
    pub task_arn: String,
    pub container: String,
    pub command: Vec<String>,
    /// Some((rows, cols)): on a pseudo-terminal.
    pub terminal: Option<(u16, u16)>,
}

/// What the control plane hears about an exec, in order: its output (`Started` first), then
/// `Exited` or `Failed`, last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecReport {
    Output(AttachedOutput),
    Exited(i32),
    Failed(String),
}

pub struct ExecService<R: Runtime> {
    runtime: Arc<R>,
    store: Arc<Store>,
    fifo_dir: PathBuf,
    permits: Arc<Semaphore>,
    /// The running execs' inputs, by exec id.
    inputs: Mutex<HashMap<String, mpsc::UnboundedSender<AttachedInput>>>,
}

/// Exec ids come from the control plane and name a directory and a containerd process.
fn valid_exec_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl<R: Runtime> ExecService<R> {
    pub fn new(runtime: Arc<R>, store: Arc<Store>, fifo_dir: PathBuf) -> Arc<Self> {
        Arc::new(Self {
            runtime,
            store,
            fifo_dir,
            permits: Arc::new(Semaphore::new(MAX_CONCURRENT)),
            inputs: Mutex::new(HashMap::new()),
        })
    }

    fn inputs(&self) -> MutexGuard<'_, HashMap<String, mpsc::UnboundedSender<AttachedInput>>> {
        self.inputs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts `q`; everything about it goes to `reports`, which ends with its last report.
    /// Dropping the receiver kills the process.
    pub fn start(self: &Arc<Self>, q: ExecQuery, reports: mpsc::Sender<ExecReport>) {
        let span = info_span!("exec", exec.id = %q.exec_id, task.arn = %q.task_arn, container.name = %q.container);
        let this = Arc::clone(self);
        tokio::spawn(
            async move {
                let outcome = this.run(&q, &reports).await;
                this.inputs().remove(&q.exec_id);
                let last = match outcome {
                    Ok(code) => {
                        info!(exit_code = code, "exec ended");
                        ExecReport::Exited(code)
                    }
                    Err(e) => {
                        info!(error = %e, "exec failed");
                        ExecReport::Failed(e)
                    }
                };
                let _ = reports.send(last).await;
            }
            .instrument(span),
        );
    }

    async fn run(&self, q: &ExecQuery, reports: &mpsc::Sender<ExecReport>) -> Result<i32, String> {
        if !valid_exec_id(&q.exec_id) {
            return Err(format!(
                "exec id {:?} is not 1-64 letters, digits, - or _",
                q.exec_id
            ));
        }
        if q.command.is_empty() {
            return Err("no command to run".into());
        }
        let runtime_id = self.resolve(q)?;
        let Ok(_permit) = Arc::clone(&self.permits).try_acquire_owned() else {
            return Err(format!(
                "this agent already runs {MAX_CONCURRENT} execs: try again later"
            ));
        };
        let (input_tx, input_rx) = mpsc::unbounded_channel();
        if self.inputs().insert(q.exec_id.clone(), input_tx).is_some() {
            return Err(format!("exec {} is already running", q.exec_id));
        }
        let req = AttachedExecRequest {
            runtime_id,
            exec_id: format!("{EXEC_PREFIX}{}", q.exec_id),
            args: q.command.clone(),
            terminal: q.terminal,
            fifo_dir: self.fifo_dir.clone(),
        };
        info!(command = ?q.command, terminal = q.terminal.is_some(), "exec starting");
        // The runtime's output, as reports: a forwarder ends with either side.
        let (output_tx, mut output_rx) = mpsc::channel(16);
        let forward = {
            let reports = reports.clone();
            async move {
                while let Some(o) = output_rx.recv().await {
                    if reports.send(ExecReport::Output(o)).await.is_err() {
                        return;
                    }
                }
            }
        };
        let run = self.runtime.exec_attached(&req, input_rx, output_tx);
        let closed = reports.closed();
        tokio::pin!(run, closed, forward);
        let mut forwarding = true;
        loop {
            tokio::select! {
                outcome = &mut run => {
                    // What the runtime sent before it returned goes first.
                    if forwarding {
                        (&mut forward).await;
                    }
                    return outcome.map_err(|e| e.to_string());
                }
                _ = &mut forward, if forwarding => forwarding = false,
                _ = &mut closed => {
                    debug!("the control plane went away: killing the exec");
                    if let Some(tx) = self.inputs().get(&q.exec_id) {
                        let _ = tx.send(AttachedInput::Kill);
                    }
                    return (&mut run).await.map_err(|e| e.to_string());
                }
            }
        }
    }

    /// Input for a running exec; input for an exec that has ended is dropped.
    pub fn input(&self, exec_id: &str, input: AttachedInput) {
        if let Some(tx) = self.inputs().get(exec_id) {
            let _ = tx.send(input);
        }
    }

    /// The runtime id of the query's container, which must be running.
    fn resolve(&self, q: &ExecQuery) -> Result<String, String> {
        let state = self
            .store
            .task(&q.task_arn)
            .map_err(|e| format!("reading the agent's state: {e}"))?
            .ok_or_else(|| format!("task {} is not known to this agent", q.task_arn))?;
        let c = state
            .container(&q.container)
            .ok_or_else(|| state.no_such_container(&q.container))?;
        if c.known != ContainerStatus::Running || c.runtime_id.is_empty() {
            return Err(format!(
                "container {} of task {} is not running ({:?})",
                q.container, q.task_arn, c.known
            ));
        }
        Ok(c.runtime_id.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_ids_are_path_and_containerd_safe() {
        assert!(valid_exec_id("0f3a9c2e4b5d4e6f8a9b0c1d2e3f4a5b"));
        assert!(valid_exec_id("a-b_c"));
        for bad in ["", "../x", "a/b", "a b", &"x".repeat(65)] {
            assert!(!valid_exec_id(bad), "{bad:?}");
        }
    }
}
