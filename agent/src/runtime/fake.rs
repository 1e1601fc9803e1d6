//! An in-memory runtime for fast tests of the engine. It records every call, so tests assert on
//! what the engine asked for, and lets a test make containers exit.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::Mutex;

use futures_util::{Stream, StreamExt};
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;

use super::{
    AttachedExecRequest, AttachedInput, AttachedOutput, CreateRequest, ExecOutcome, ExecRequest,
    ExitEvent, ListedContainer, ProcessState, Runtime, RuntimeError,
};

/// A fake image's digest: stable per name, shaped as containerd's.
pub fn fake_digest(image: &str) -> String {
    use sha2::{Digest, Sha256};
    format!("sha256:{:x}", Sha256::digest(image.as_bytes()))
}

pub struct FakeRuntime {
    inner: Mutex<Inner>,
    exits: broadcast::Sender<ExitEvent>,
}

#[derive(Default)]
struct Inner {
    images: HashSet<String>,
    containers: HashMap<String, (Option<String>, ProcessState)>,
    calls: Vec<String>,
    /// Containers that exit as soon as they get this signal, with 128 + signal.
    obeys_sigterm: HashSet<String>,
    /// What an exec in a container returns (None: it times out); 0 when not set.
    exec_results: HashMap<String, Option<i32>>,
}

impl FakeRuntime {
    pub fn new(images: &[&str]) -> Self {
        let (exits, _) = broadcast::channel(1024);
        Self {
            inner: Mutex::new(Inner {
                images: images.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            }),
            exits,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panicking test thread must not hide the state from the next assertion.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }

    pub fn state_of(&self, id: &str) -> Option<ProcessState> {
        self.lock().containers.get(id).map(|(_, s)| *s)
    }

    pub fn container_ids(&self) -> Vec<String> {
        let mut ids: Vec<_> = self.lock().containers.keys().cloned().collect();
        ids.sort();
        ids
    }

    pub fn obey_sigterm(&self, id: &str) {
        self.lock().obeys_sigterm.insert(id.to_string());
    }

    /// What execs (health checks) in container `id` return from now on; None times out.
    pub fn set_exec_result(&self, id: &str, exit_code: Option<i32>) {
        self.lock().exec_results.insert(id.to_string(), exit_code);
    }

    /// Makes a running container exit with `code`, as its process would.
    pub fn exit(&self, id: &str, code: i32) {
        let mut inner = self.lock();
        if let Some((_, state)) = inner.containers.get_mut(id) {
            if *state == ProcessState::Running {
                *state = ProcessState::Stopped { exit_code: code };
                let _ = self.exits.send(ExitEvent {
                    runtime_id: id.to_string(),
                    exit_code: code,
                });
            }
        }
    }
}

impl Runtime for FakeRuntime {
    async fn exec(&self, req: &ExecRequest) -> Result<ExecOutcome, RuntimeError> {
        let mut inner = self.lock();
        inner.calls.push(format!("exec {}", req.runtime_id));
        match inner.containers.get(&req.runtime_id) {
            Some((_, ProcessState::Running)) => {}
            _ => {
                return Err(RuntimeError::Io(format!(
                    "container {} is not running",
                    req.runtime_id
                )))
            }
        }
        let exit_code = inner
            .exec_results
            .get(&req.runtime_id)
            .copied()
            .unwrap_or(Some(0));
        Ok(ExecOutcome {
            exit_code,
            output: format!("exit {exit_code:?}\n"),
        })
    }

    /// Echoes: the args as one line, then stdin as it comes, on stdout; exits 0 at
    /// end-of-file, 137 when killed.
    async fn exec_attached(
        &self,
        req: &AttachedExecRequest,
        mut input: tokio::sync::mpsc::UnboundedReceiver<AttachedInput>,
        output: tokio::sync::mpsc::Sender<AttachedOutput>,
    ) -> Result<i32, RuntimeError> {
        {
            let mut inner = self.lock();
            inner
                .calls
                .push(format!("exec_attached {}", req.runtime_id));
            if !matches!(
                inner.containers.get(&req.runtime_id),
                Some((_, ProcessState::Running))
            ) {
                return Err(RuntimeError::Io(format!(
                    "container {} is not running",
                    req.runtime_id
                )));
            }
        }
        let send = |o| {
            let output = output.clone();
            async move { output.send(o).await.is_ok() }
        };
        send(AttachedOutput::Started).await;
        send(AttachedOutput::Stdout(
            format!("{}\n", req.args.join(" ")).into_bytes(),
        ))
        .await;
        while let Some(i) = input.recv().await {
            match i {
                AttachedInput::Stdin(b) => {
                    if !send(AttachedOutput::Stdout(b)).await {
                        return Ok(137);
                    }
                }
                AttachedInput::StdinEof => return Ok(0),
                AttachedInput::Resize { .. } => {}
                AttachedInput::Kill => return Ok(137),
            }
        }
        Ok(137)
    }

    async fn version(&self) -> Result<String, RuntimeError> {
        Ok("fake".into())
    }

    async fn resolve_image(&self, image: &str) -> Result<String, RuntimeError> {
        let mut inner = self.lock();
        inner.calls.push(format!("resolve {image}"));
        if inner.images.contains(image) {
            Ok(fake_digest(image))
        } else {
            Err(RuntimeError::ImageNotFound(image.to_string()))
        }
    }

    async fn create(&self, req: &CreateRequest) -> Result<(), RuntimeError> {
        let mut inner = self.lock();
        inner.calls.push(format!("create {}", req.runtime_id));
        inner.containers.insert(
            req.runtime_id.clone(),
            (Some(req.task_arn.clone()), ProcessState::Created),
        );
        Ok(())
    }

    async fn start(&self, runtime_id: &str) -> Result<(), RuntimeError> {
        let mut inner = self.lock();
        inner.calls.push(format!("start {runtime_id}"));
        match inner.containers.get_mut(runtime_id) {
            Some((_, state)) => {
                *state = ProcessState::Running;
                Ok(())
            }
            None => Err(RuntimeError::Io(format!("no container {runtime_id}"))),
        }
    }

    async fn restart(
        &self,
        runtime_id: &str,
        _log_path: &std::path::Path,
    ) -> Result<(), RuntimeError> {
        let mut inner = self.lock();
        inner.calls.push(format!("restart {runtime_id}"));
        match inner.containers.get_mut(runtime_id) {
            Some((_, state)) => {
                *state = ProcessState::Running;
                Ok(())
            }
            None => Err(RuntimeError::Io(format!("no container {runtime_id}"))),
        }
    }

    async fn signal(&self, runtime_id: &str, signal: i32) -> Result<(), RuntimeError> {
        let obeys = {
            let mut inner = self.lock();
            inner.calls.push(format!("signal {runtime_id} {signal}"));
            signal == libc::SIGKILL || inner.obeys_sigterm.contains(runtime_id)
        };
        if obeys {
            self.exit(runtime_id, 128 + signal);
        }
        Ok(())
    }

    async fn state(&self, runtime_id: &str) -> Result<ProcessState, RuntimeError> {
        Ok(self.state_of(runtime_id).unwrap_or(ProcessState::Missing))
    }

    async fn remove(&self, runtime_id: &str) -> Result<(), RuntimeError> {
        let mut inner = self.lock();
        inner.calls.push(format!("remove {runtime_id}"));
        inner.containers.remove(runtime_id);
        Ok(())
    }

    async fn list(&self) -> Result<Vec<ListedContainer>, RuntimeError> {
        Ok(self
            .lock()
            .containers
            .iter()
            .map(|(id, (arn, _))| ListedContainer {
                runtime_id: id.clone(),
                task_arn: arn.clone(),
            })
            .collect())
    }

    async fn exits(&self) -> Result<Pin<Box<dyn Stream<Item = ExitEvent> + Send>>, RuntimeError> {
        let rx = self.exits.subscribe();
        Ok(Box::pin(
            BroadcastStream::new(rx).filter_map(|r| std::future::ready(r.ok())),
        ))
    }
}
