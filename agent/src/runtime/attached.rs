//! Attached execs: a user's command (ExecuteCommand) run in a running container with its
//! stdio connected to the user for as long as it runs, through FIFOs that containerd's shim
//! copies to and from the process (or its pseudo-terminal).
//!
//! Our ends of the FIFOs are opened read-write, so that opening never blocks or fails for want
//! of the shim's end and a read never sees end-of-file while the shim has not opened its end
//! yet. The end of the output is then not an end-of-file but the process's removal: the shim
//! has copied all of it into the FIFOs when DeleteProcess returns, so the readers drain what is
//! left and stop.

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use containerd_client::services::v1::{CloseIoRequest, ExecProcessRequest, ResizePtyRequest};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::{mpsc, watch};

use super::containerd::{Containerd, ExecCleanup, ExecProcess, ExecTemplate, HostProcess};
use super::{
    AttachedExecRequest, AttachedInput, AttachedOutput, ProcessState, Runtime, RuntimeError,
};

/// The exec ids of attached execs start with this: after a crash the agent removes those a
/// previous agent left running (their users are gone).
pub const EXEC_PREFIX: &str = "exec-";
/// The type of an exec's process spec, as containerd's Go client registers it.
const PROCESS_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";
const READ_CHUNK: usize = 32 * 1024;
/// Each wait for the exit is this long (a session may last for days); then it is waited again.
const WAIT_SLICE: Duration = Duration::from_secs(3600);

/// The process spec of an attached exec of `args`: the container's process with other args
/// and, on a terminal, the terminal's size and a TERM when the container sets none (as
/// `docker exec -t` does).
pub fn attached_process_spec(
    template: &ExecTemplate,
    args: &[String],
    terminal: Option<(u16, u16)>,
) -> Result<Vec<u8>, String> {
    let mut process = template.clone();
    process.insert("args".into(), serde_json::json!(args));
    if let Some((rows, cols)) = terminal {
        process.insert("terminal".into(), serde_json::Value::Bool(true));
        process.insert(
            "consoleSize".into(),
            serde_json::json!({"height": rows, "width": cols}),
        );
        let env = process
            .entry("env")
            .or_insert_with(|| serde_json::json!([]));
        if let Some(env) = env.as_array_mut() {
            let has_term = env
                .iter()
                .any(|e| e.as_str().is_some_and(|e| e.starts_with("TERM=")));
            if !has_term {
                env.push(serde_json::json!("TERM=xterm"));
            }
        }
    }
    serde_json::to_vec(&process).map_err(|e| e.to_string())
}

/// The FIFOs of one attached exec, in a directory of their own.
#[derive(Debug, Clone)]
pub struct ExecFifos {
    dir: PathBuf,
    terminal: bool,
}

impl ExecFifos {
    /// Makes the directory (0700) and the FIFOs (0600): stdin, stdout and, without a
    /// terminal, stderr. A leftover directory of the same exec is replaced.
    pub fn create(parent: &Path, exec_id: &str, terminal: bool) -> Result<Self, RuntimeError> {
        let io = |what: &str, p: &Path, e: &dyn std::fmt::Display| {
            RuntimeError::Io(format!("{what} {}: {e}", p.display()))
        };
        let text = parent.to_str().unwrap_or_default();
        // The shim parses the paths as URLs (to find their scheme): absolute, so that there is
        // none, and nothing url.Parse rejects.
        if !parent.is_absolute() || text.contains('%') || text.contains(char::is_control) {
            return Err(RuntimeError::InvalidSpec(format!(
                "exec FIFO directory {} must be absolute, UTF-8, without '%' or control characters",
                parent.display()
            )));
        }
        let fifos = Self {
            dir: parent.join(exec_id),
            terminal,
        };
        fifos.remove();
        std::fs::create_dir_all(parent).map_err(|e| io("creating", parent, &e))?;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&fifos.dir)
            .map_err(|e| io("creating", &fifos.dir, &e))?;
        for p in fifos.paths() {
            if let Err(e) = nix::unistd::mkfifo(&p, nix::sys::stat::Mode::from_bits_truncate(0o600))
            {
                fifos.remove();
                return Err(io("making the FIFO", &p, &e));
            }
        }
        Ok(fifos)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn paths(&self) -> Vec<PathBuf> {
        let mut names = vec!["stdin", "stdout"];
        if !self.terminal {
            names.push("stderr");
        }
        names.into_iter().map(|n| self.path(n)).collect()
    }

    fn uri(&self, name: &str) -> String {
        self.path(name).to_string_lossy().into_owned()
    }

    /// Our ends, read-write (see the module's comment): stdin, stdout, stderr.
    pub fn open(&self) -> Result<OpenFifos, RuntimeError> {
        let io = |p: &Path, e: std::io::Error| {
            RuntimeError::Io(format!("opening the FIFO {}: {e}", p.display()))
        };
        let mut opts = pipe::OpenOptions::new();
        opts.read_write(true);
        let stdin = opts
            .open_sender(self.path("stdin"))
            .map_err(|e| io(&self.path("stdin"), e))?;
        let stdout = opts
            .open_receiver(self.path("stdout"))
            .map_err(|e| io(&self.path("stdout"), e))?;
        let stderr = if self.terminal {
            None
        } else {
            Some(
                opts.open_receiver(self.path("stderr"))
                    .map_err(|e| io(&self.path("stderr"), e))?,
            )
        };
        Ok(OpenFifos {
            stdin,
            stdout,
            stderr,
        })
    }

    pub fn remove(&self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %self.dir.display(), error = %e, "cannot remove an exec's FIFOs");
            }
        }
    }
}

pub struct OpenFifos {
    pub stdin: pipe::Sender,
    pub stdout: pipe::Receiver,
    pub stderr: Option<pipe::Receiver>,
}

/// Copies a FIFO to `output` until `done`, then what is left in it without waiting.
async fn pump(
    mut fifo: pipe::Receiver,
    mut done: watch::Receiver<bool>,
    output: mpsc::Sender<AttachedOutput>,
    wrap: fn(Vec<u8>) -> AttachedOutput,
) {
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        tokio::select! {
            biased;
            read = fifo.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if output.send(wrap(buf[..n].to_vec())).await.is_err() {
                        return;
                    }
                }
            },
            // Sent once, when the process is gone (or the sender dropped: the same).
            _ = done.changed() => break,
        }
    }
    while let Ok(n) = fifo.try_read(&mut buf) {
        if n == 0 || output.send(wrap(buf[..n].to_vec())).await.is_err() {
            return;
        }
    }
}

/// Writes what the user typed to the process's stdin FIFO; dropping the FIFO (when `input`
/// ends) gives the process end-of-file.
async fn feed(mut fifo: pipe::Sender, mut input: mpsc::UnboundedReceiver<Vec<u8>>) {
    while let Some(bytes) = input.recv().await {
        if fifo.write_all(&bytes).await.is_err() {
            return;
        }
    }
}

impl ExecProcess {
    async fn create_attached(
        &self,
        process: Vec<u8>,
        fifos: &ExecFifos,
    ) -> Result<(), RuntimeError> {
        let mut tasks = self.tasks.clone();
        self.call(
            "Tasks.Exec",
            tasks.exec(self.req(
                ExecProcessRequest {
                    container_id: self.container_id.clone(),
                    exec_id: self.exec_id.clone(),
                    stdin: fifos.uri("stdin"),
                    stdout: fifos.uri("stdout"),
                    stderr: if fifos.terminal {
                        String::new()
                    } else {
                        fifos.uri("stderr")
                    },
                    terminal: fifos.terminal,
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

    async fn resize(&self, rows: u16, cols: u16) -> Result<(), RuntimeError> {
        let mut tasks = self.tasks.clone();
        self.call(
            "Tasks.ResizePty",
            tasks.resize_pty(self.req(
                ResizePtyRequest {
                    container_id: self.container_id.clone(),
                    exec_id: self.exec_id.clone(),
                    width: u32::from(cols),
                    height: u32::from(rows),
                },
                self.call_timeout,
            )),
        )
        .await
        .map(|_| ())
    }

    /// Tells the shim that stdin has ended, so that it closes the process's stdin.
    async fn close_stdin(&self) -> Result<(), RuntimeError> {
        let mut tasks = self.tasks.clone();
        self.call(
            "Tasks.CloseIO",
            tasks.close_io(self.req(
                CloseIoRequest {
                    container_id: self.container_id.clone(),
                    exec_id: self.exec_id.clone(),
                    stdin: true,
                },
                self.call_timeout,
            )),
        )
        .await
        .map(|_| ())
    }

    async fn wait_for_exit(&self) -> Result<i32, RuntimeError> {
        loop {
            if let Some(code) = self.wait(WAIT_SLICE).await? {
                return Ok(code);
            }
        }
    }
}

impl Containerd {
    pub(super) async fn run_attached(
        &self,
        req: &AttachedExecRequest,
        mut input: mpsc::UnboundedReceiver<AttachedInput>,
        output: mpsc::Sender<AttachedOutput>,
    ) -> Result<i32, RuntimeError> {
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
        let process = attached_process_spec(&template, &req.args, req.terminal)
            .map_err(|e| RuntimeError::InvalidSpec(format!("container {id}: {e}")))?;
        let fifos = ExecFifos::create(&req.fifo_dir, &req.exec_id, req.terminal.is_some())?;
        let open = match fifos.open() {
            Ok(o) => o,
            Err(e) => {
                fifos.remove();
                return Err(e);
            }
        };
        let exec = ExecProcess {
            tasks: self.client.tasks(),
            namespace: self.cfg.namespace.clone(),
            call_timeout: self.cfg.call_timeout,
            container_id: id.to_string(),
            exec_id: req.exec_id.clone(),
        };
        if let Err(e) = exec.create_attached(process, &fifos).await {
            fifos.remove();
            return Err(e);
        }
        // From here on the process exists in containerd and is removed whatever happens,
        // also if this call is dropped.
        let mut cleanup = ExecCleanup {
            process: Some(exec.clone()),
            pid: None,
            remove_files: {
                let fifos = fifos.clone();
                Box::new(move || fifos.remove())
            },
        };
        let host_pid = match exec.start().await {
            Ok(pid) => pid,
            Err(RuntimeError::Containerd {
                call: "Tasks.Start",
                status,
            }) => {
                return Err(RuntimeError::Io(format!(
                    "cannot run {:?} in {id}: {}",
                    req.args[0],
                    status.message()
                )))
            }
            Err(e) => return Err(e),
        };
        cleanup.pid = HostProcess::find(host_pid);
        let pid = cleanup.pid;
        if let Some((rows, cols)) = req.terminal {
            if let Err(e) = exec.resize(rows, cols).await {
                tracing::debug!(exec_id = %req.exec_id, error = %e, "cannot size the exec's terminal");
            }
        }
        let _ = output.send(AttachedOutput::Started).await;

        let (done_tx, done_rx) = watch::channel(false);
        let mut pumps = vec![tokio::spawn(pump(
            open.stdout,
            done_rx.clone(),
            output.clone(),
            AttachedOutput::Stdout,
        ))];
        if let Some(stderr) = open.stderr {
            pumps.push(tokio::spawn(pump(
                stderr,
                done_rx,
                output.clone(),
                AttachedOutput::Stderr,
            )));
        }
        let (stdin_tx, stdin_rx) = mpsc::unbounded_channel();
        let feeder = tokio::spawn(feed(open.stdin, stdin_rx));
        let mut stdin_tx = Some(stdin_tx);

        let exited = exec.wait_for_exit();
        tokio::pin!(exited);
        let mut killed = false;
        let status = loop {
            tokio::select! {
                status = &mut exited => break status,
                msg = input.recv(), if !killed => match msg {
                    Some(AttachedInput::Stdin(bytes)) => {
                        if let Some(tx) = &stdin_tx {
                            let _ = tx.send(bytes);
                        }
                    }
                    Some(AttachedInput::StdinEof) => {
                        if stdin_tx.take().is_some() {
                            if let Err(e) = exec.close_stdin().await {
                                tracing::debug!(exec_id = %req.exec_id, error = %e, "cannot close the exec's stdin");
                            }
                        }
                    }
                    Some(AttachedInput::Resize { rows, cols }) => {
                        if let Err(e) = exec.resize(rows, cols).await {
                            tracing::debug!(exec_id = %req.exec_id, error = %e, "cannot resize the exec's terminal");
                        }
                    }
                    Some(AttachedInput::Kill) | None => {
                        tracing::debug!(exec_id = %req.exec_id, "the user went away: killing the exec");
                        killed = true;
                        exec.kill(pid).await;
                    }
                },
                _ = output.closed(), if !killed => {
                    killed = true;
                    exec.kill(pid).await;
                }
            }
        };
        drop(stdin_tx);
        feeder.abort();
        // The shim has copied all the output into the FIFOs once the process is deleted.
        let deleted = exec
            .delete(pid, status.is_err(), self.cfg.call_timeout)
            .await;
        let _ = done_tx.send(true);
        for p in pumps {
            let _ = p.await;
        }
        match deleted {
            Ok(()) => {
                cleanup.disarm();
                fifos.remove();
            }
            // Left to the cleanup, which keeps trying.
            Err(e) => {
                tracing::warn!(runtime_id = id, exec_id = %req.exec_id, error = %e, "cannot delete an exec process yet")
            }
        }
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> ExecTemplate {
        serde_json::from_value(serde_json::json!({
            "terminal": false,
            "args": ["nginx"],
            "env": ["PATH=/usr/bin"],
            "cwd": "/srv",
            "user": {"uid": 101, "gid": 101}
        }))
        .unwrap()
    }

    #[test]
    fn a_terminal_exec_gets_its_size_and_a_term() {
        let spec = attached_process_spec(&template(), &["sh".into()], Some((40, 120))).unwrap();
        let p: serde_json::Value = serde_json::from_slice(&spec).unwrap();
        assert_eq!(p["terminal"], true);
        assert_eq!(
            p["consoleSize"],
            serde_json::json!({"height": 40, "width": 120})
        );
        assert_eq!(p["env"], serde_json::json!(["PATH=/usr/bin", "TERM=xterm"]));
        assert_eq!(p["args"], serde_json::json!(["sh"]));
        assert_eq!(p["cwd"], "/srv", "the container's own settings stay");
    }

    #[test]
    fn a_term_the_container_sets_is_kept_and_pipes_get_none() {
        let mut t = template();
        t.insert("env".into(), serde_json::json!(["TERM=vt100"]));
        let spec = attached_process_spec(&t, &["sh".into()], Some((24, 80))).unwrap();
        let p: serde_json::Value = serde_json::from_slice(&spec).unwrap();
        assert_eq!(p["env"], serde_json::json!(["TERM=vt100"]));
        let spec = attached_process_spec(&template(), &["ls".into()], None).unwrap();
        let p: serde_json::Value = serde_json::from_slice(&spec).unwrap();
        assert_eq!(p["terminal"], false);
        assert!(p.get("consoleSize").is_none());
        assert_eq!(p["env"], serde_json::json!(["PATH=/usr/bin"]));
    }

    #[tokio::test]
    async fn fifos_carry_bytes_and_are_removed() {
        let dir = std::env::temp_dir().join(format!("berth-fifos-{}", fastrand::u64(..)));
        let fifos = ExecFifos::create(&dir, "exec-1", false).unwrap();
        for name in ["stdin", "stdout", "stderr"] {
            let meta = std::fs::metadata(dir.join("exec-1").join(name)).unwrap();
            use std::os::unix::fs::FileTypeExt;
            assert!(meta.file_type().is_fifo(), "{name}");
        }
        let open = fifos.open().unwrap();
        // The shim's side of stdout, as it would write.
        let mut writer = pipe::OpenOptions::new()
            .open_sender(dir.join("exec-1/stdout"))
            .unwrap();
        writer.write_all(b"hello").await.unwrap();
        drop(writer);
        let (tx, mut rx) = mpsc::channel(4);
        let (done_tx, done_rx) = watch::channel(false);
        let pumping = tokio::spawn(pump(open.stdout, done_rx, tx, AttachedOutput::Stdout));
        assert_eq!(
            rx.recv().await,
            Some(AttachedOutput::Stdout(b"hello".to_vec()))
        );
        done_tx.send(true).unwrap();
        pumping.await.unwrap();
        fifos.remove();
        assert!(!dir.join("exec-1").exists());
        let no_stderr = ExecFifos::create(&dir, "exec-2", true).unwrap();
        assert!(
            !dir.join("exec-2/stderr").exists(),
            "a terminal has one output"
        );
        no_stderr.remove();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_relative_or_odd_directory_is_refused() {
        for bad in ["rel/dir", "/tmp/50%"] {
            assert!(
                ExecFifos::create(Path::new(bad), "exec-1", false).is_err(),
                "{bad}"
            );
        }
    }
}
