//! Health-check execs against the host's real containerd (root required; `.ci/run` sets it up).
//! Each test works in a containerd namespace of its own and removes it, also on failure.

mod common;

use std::ops::Deref;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use berth_agent::model::{ContainerSpec, NetworkMode};
use berth_agent::runtime::containerd::Containerd;
use berth_agent::runtime::{CreateRequest, ExecOutcome, ExecRequest, Runtime};
use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::{GetRequest, ListPidsRequest};
use containerd_client::tonic::transport::Channel;
use tonic::Request;

const SOCKET: &str = "/run/containerd/containerd.sock";

/// A scratch namespace `berth-exec-<id>` (see `common::Scratch`) and a Tasks client of its own,
/// to look at what the runtime leaves behind.
struct Scratch {
    inner: common::Scratch,
    tasks: TasksClient<Channel>,
}

impl Deref for Scratch {
    type Target = common::Scratch;
    fn deref(&self) -> &common::Scratch {
        &self.inner
    }
}

impl Scratch {
    async fn new() -> Self {
        let inner = common::Scratch::new("berth-exec");
        let channel = containerd_client::connect(SOCKET)
            .await
            .expect("connecting to containerd");
        Scratch {
            inner,
            tasks: TasksClient::new(channel),
        }
    }

    fn ns<T>(&self, msg: T) -> Request<T> {
        let mut req = Request::new(msg);
        req.set_timeout(Duration::from_secs(20));
        req.metadata_mut()
            .insert("containerd-namespace", self.ns.parse().unwrap());
        req
    }

    fn request(&self, name: &str, container: ContainerSpec) -> CreateRequest {
        CreateRequest {
            // Unique across namespaces too: without a cgroup parent the container's cgroup
            // is named after its id alone.
            runtime_id: format!("task1-{name}-{}", self.id),
            task_arn: "arn:aws:ecs:us-east-1:0:task/c/task1".into(),
            task_id: "task1".into(),
            container,
            network_mode: NetworkMode::None,
            netns_path: None,
            address: None,
            log_path: self.dir.join(format!("{name}.log")),
            task: common::task1(vec![], NetworkMode::None),
            task_volumes_dir: self.dir.join("volumes"),
            cgroup_parent: None,
        }
    }

    /// A running container `task1-<name>-<scratch id>` of the test image running `container`.
    async fn sleeper(&self, rt: &Containerd, name: &str, container: ContainerSpec) -> String {
        let req = self.request(name, container);
        rt.create(&req).await.unwrap();
        rt.start(&req.runtime_id).await.unwrap();
        req.runtime_id
    }

    fn health_dir(&self) -> PathBuf {
        self.dir.join("health")
    }

    fn exec(&self, runtime_id: &str, exec_id: &str, args: &[&str], timeout: u64) -> ExecRequest {
        ExecRequest {
            runtime_id: runtime_id.into(),
            exec_id: exec_id.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            timeout: Duration::from_secs(timeout),
            output_path: self
                .health_dir()
                .join(format!("{runtime_id}.{exec_id}.out")),
        }
    }

    /// The pids of the container's processes (zombies are not listed).
    async fn pids(&self, runtime_id: &str) -> Vec<u32> {
        let resp = self
            .tasks
            .clone()
            .list_pids(self.ns(ListPidsRequest {
                container_id: runtime_id.into(),
            }))
            .await
            .unwrap()
            .into_inner();
        resp.processes.iter().map(|p| p.pid).collect()
    }

    /// Whether containerd still knows the exec process.
    async fn registered(&self, runtime_id: &str, exec_id: &str) -> bool {
        match self
            .tasks
            .clone()
            .get(self.ns(GetRequest {
                container_id: runtime_id.into(),
                exec_id: exec_id.into(),
            }))
            .await
        {
            Ok(_) => true,
            Err(s) if s.code() == tonic::Code::NotFound => false,
            Err(s) => panic!("Tasks.Get {exec_id}: {s}"),
        }
    }

    /// Only the container's main process runs, no exec is left in containerd and no output
    /// file is left on disk.
    async fn assert_clean(&self, runtime_id: &str, exec_ids: &[&str]) {
        // A SIGKILLed process leaves the cgroup when the kernel has finished its exit, a moment
        // after the kill returns (longer on a loaded machine): give that up to 5 s.
        let mut pids = self.pids(runtime_id).await;
        for _ in 0..50 {
            if pids.len() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            pids = self.pids(runtime_id).await;
        }
        assert_eq!(pids.len(), 1, "processes left in {runtime_id}: {pids:?}");
        for exec_id in exec_ids {
            assert!(
                !self.registered(runtime_id, exec_id).await,
                "exec {exec_id} is still registered"
            );
        }
        let left: Vec<_> = std::fs::read_dir(self.health_dir())
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "output files left: {left:?}");
    }
}

fn outcome(exit_code: i32, output: &str) -> ExecOutcome {
    ExecOutcome {
        exit_code: Some(exit_code),
        output: output.into(),
    }
}

#[tokio::test]
async fn execs_report_exit_code_and_output_as_the_containers_process() {
    let s = Scratch::new().await;
    let rt = s.runtime().await;
    let id = s
        .sleeper(
            &rt,
            "app",
            ContainerSpec {
                environment: vec![("GREETING".into(), "hello".into())],
                user: Some("app".into()),
                working_directory: Some("/home/app".into()),
                ..common::busybox("app", &["sleep", "600"])
            },
        )
        .await;

    let req = s.exec(&id, "e1", &["sh", "-c", "echo hi; exit 3"], 10);
    assert_eq!(rt.exec(&req).await.unwrap(), outcome(3, "hi\n"));
    assert!(!req.output_path.exists());

    let req = s.exec(&id, "e2", &["true"], 10);
    assert_eq!(rt.exec(&req).await.unwrap(), outcome(0, ""));

    // The container's user, environment and working directory; stderr goes to the output too.
    let req = s.exec(
        &id,
        "e3",
        &[
            "sh",
            "-c",
            "echo \"$GREETING $(id -u) $(pwd)\"; echo oops >&2",
        ],
        10,
    );
    let got = rt.exec(&req).await.unwrap();
    assert_eq!(got.exit_code, Some(0));
    assert!(got.output.contains("hello 1000 /home/app\n"), "{got:?}");
    assert!(got.output.contains("oops\n"), "{got:?}");

    // Only the first KiB is kept.
    let req = s.exec(&id, "e4", &["seq", "1", "5000"], 10);
    let got = rt.exec(&req).await.unwrap();
    assert_eq!(got.exit_code, Some(0));
    assert_eq!(got.output.len(), 1024);
    assert!(got.output.starts_with("1\n2\n3\n"), "{got:?}");

    s.assert_clean(&id, &["e1", "e2", "e3", "e4"]).await;
    rt.remove(&id).await.unwrap();
}

#[tokio::test]
async fn a_check_that_outlives_its_timeout_is_killed_with_all_it_started() {
    let s = Scratch::new().await;
    let rt = s.runtime().await;
    let id = s
        .sleeper(&rt, "slow", common::busybox("slow", &["sleep", "600"]))
        .await;

    let req = s.exec(
        &id,
        "slow",
        &["sh", "-c", "echo started; sleep 300 & sleep 300"],
        2,
    );
    let t0 = Instant::now();
    let got = rt.exec(&req).await.unwrap();
    let took = t0.elapsed();
    assert_eq!(got.exit_code, None);
    // What it wrote before it was killed is kept.
    assert_eq!(got.output, "started\n");
    assert!(took >= Duration::from_secs(2), "{took:?}");
    assert!(took < Duration::from_secs(6), "{took:?}");
    // The background sleep too is gone, not only the shell.
    s.assert_clean(&id, &["slow"]).await;

    // The exec id is free again.
    let again = s.exec(&id, "slow", &["true"], 10);
    assert_eq!(rt.exec(&again).await.unwrap(), outcome(0, ""));
    s.assert_clean(&id, &["slow"]).await;
    rt.remove(&id).await.unwrap();
}

#[tokio::test]
async fn a_missing_command_is_an_error_and_leaves_nothing() {
    let s = Scratch::new().await;
    let rt = s.runtime().await;
    let id = s
        .sleeper(&rt, "app", common::busybox("app", &["sleep", "600"]))
        .await;

    for (exec_id, cmd) in [("abs", "/no/such/binary"), ("path", "nosuchcommand")] {
        let req = s.exec(&id, exec_id, &[cmd, "arg"], 10);
        let err = rt.exec(&req).await.unwrap_err().to_string();
        assert!(err.contains(cmd), "{err}");
        assert!(!req.output_path.exists());
        s.assert_clean(&id, &[exec_id]).await;
    }
    // The container is unharmed.
    let req = s.exec(&id, "ok", &["true"], 10);
    assert_eq!(rt.exec(&req).await.unwrap(), outcome(0, ""));
    rt.remove(&id).await.unwrap();
}

#[tokio::test]
async fn only_running_containers_take_execs() {
    let s = Scratch::new().await;
    let rt = s.runtime().await;

    let err = rt
        .exec(&s.exec("task1-missing", "e", &["true"], 10))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not running"), "{err}");

    let created = s.request("created", common::busybox("created", &["sleep", "600"]));
    rt.create(&created).await.unwrap();
    let req = s.exec(&created.runtime_id, "e", &["true"], 10);
    let err = rt.exec(&req).await.unwrap_err();
    assert!(err.to_string().contains("not running"), "{err}");
    assert!(!req.output_path.exists());

    let mut exits = rt.exits().await.unwrap();
    let done = s.request("done", common::busybox("done", &["true"]));
    rt.create(&done).await.unwrap();
    rt.start(&done.runtime_id).await.unwrap();
    common::next_exit(&mut exits, &done.runtime_id).await;
    let err = rt
        .exec(&s.exec(&done.runtime_id, "e", &["true"], 10))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not running"), "{err}");

    rt.remove(&created.runtime_id).await.unwrap();
    rt.remove(&done.runtime_id).await.unwrap();
}

#[tokio::test]
async fn many_rapid_execs_leave_nothing_behind() {
    let s = Scratch::new().await;
    let rt = s.runtime().await;
    let id = s
        .sleeper(&rt, "busy", common::busybox("busy", &["sleep", "600"]))
        .await;
    // Quick ones, back to back, as one container's checker runs them; each writes to stdout
    // and stderr and exits at once (the shim may only start copying after the exit).
    let script = |i: usize| format!("echo out-{i}; echo err-{i} >&2; exit {}", i % 3);
    let mut ids: Vec<String> = Vec::new();
    for i in 0..20 {
        let exec_id = format!("rapid-{i}");
        let got = rt
            .exec(&s.exec(&id, &exec_id, &["sh", "-c", &script(i)], 10))
            .await
            .unwrap();
        assert_eq!(got.exit_code, Some((i % 3) as i32), "exec {i}");
        let mut lines: Vec<&str> = got.output.lines().collect();
        lines.sort_unstable();
        assert_eq!(lines, [format!("err-{i}"), format!("out-{i}")], "exec {i}");
        ids.push(exec_id);
    }
    // And a few at once (checks of a task's containers sharing one shim would not be, but
    // nothing must get mixed up if they are).
    let reqs: Vec<ExecRequest> = (20..25)
        .map(|i| {
            ids.push(format!("rapid-{i}"));
            s.exec(&id, &format!("rapid-{i}"), &["sh", "-c", &script(i)], 10)
        })
        .collect();
    let results = futures_util::future::join_all(reqs.iter().map(|r| rt.exec(r))).await;
    for (i, got) in (20usize..).zip(results) {
        let got = got.unwrap();
        assert_eq!(got.exit_code, Some((i % 3) as i32), "exec {i}");
        assert!(got.output.contains(&format!("out-{i}\n")), "{got:?}");
        assert!(got.output.contains(&format!("err-{i}\n")), "{got:?}");
    }
    let exec_ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    s.assert_clean(&id, &exec_ids).await;
    rt.remove(&id).await.unwrap();
}

#[tokio::test]
async fn an_abandoned_exec_is_removed_in_the_background() {
    let s = Scratch::new().await;
    let rt = s.runtime().await;
    let id = s
        .sleeper(&rt, "app", common::busybox("app", &["sleep", "600"]))
        .await;

    // A health checker aborted with its container drops the call half-way.
    let req = s.exec(&id, "dropped", &["sh", "-c", "sleep 300 & sleep 300"], 60);
    let dropped = tokio::time::timeout(Duration::from_millis(1500), rt.exec(&req)).await;
    assert!(dropped.is_err(), "the exec should still run: {dropped:?}");

    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let pids = s.pids(&id).await;
        let registered = s.registered(&id, "dropped").await;
        if pids.len() == 1 && !registered && !req.output_path.exists() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "left: pids {pids:?}, registered {registered}, output {}",
            req.output_path.exists()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    rt.remove(&id).await.unwrap();
}

#[tokio::test]
async fn checks_a_crashed_agent_left_running_are_removed_and_other_execs_are_not() {
    let s = Scratch::new().await;
    let rt = s.runtime().await;
    let id = s
        .sleeper(&rt, "app", common::busybox("app", &["sleep", "600"]))
        .await;
    // What a previous agent's hanging check and an operator's debugging exec look like.
    for (exec_id, script) in [
        ("health-7-deadbeef", "sleep 300 & sleep 300"),
        ("debug-1", "sleep 300"),
    ] {
        let out = std::process::Command::new("ctr")
            .args([
                "-n",
                &s.ns,
                "tasks",
                "exec",
                "-d",
                "--exec-id",
                exec_id,
                &id,
            ])
            .args(["sh", "-c", script])
            .output()
            .expect("running ctr");
        assert!(out.status.success(), "ctr tasks exec: {out:?}");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while s.pids(&id).await.len() < 4 {
        assert!(Instant::now() < deadline, "the execs did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    assert_eq!(rt.remove_execs(&id, "health-").await.unwrap(), 1);
    assert!(!s.registered(&id, "health-7-deadbeef").await);
    assert!(s.registered(&id, "debug-1").await);
    // The check's background child went with it; the main process and the debug exec stay.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pids = s.pids(&id).await;
        if pids.len() == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "processes left: {pids:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Nothing to remove the second time.
    assert_eq!(rt.remove_execs(&id, "health-").await.unwrap(), 0);
    rt.remove(&id).await.unwrap();
}

// ---------------------------------------------------------------- attached execs (ExecuteCommand)

use berth_agent::runtime::{AttachedExecRequest, AttachedInput, AttachedOutput};
use tokio::sync::mpsc;

/// What an attached exec sent: whether `Started` came first, stdout, stderr.
#[derive(Debug, Default)]
struct Collected {
    started_first: bool,
    stdout: String,
    stderr: String,
}

async fn collect(mut rx: mpsc::Receiver<AttachedOutput>) -> Collected {
    let mut c = Collected::default();
    let mut first = true;
    while let Some(o) = rx.recv().await {
        match o {
            AttachedOutput::Started => c.started_first = first,
            AttachedOutput::Stdout(b) => c.stdout.push_str(&String::from_utf8_lossy(&b)),
            AttachedOutput::Stderr(b) => c.stderr.push_str(&String::from_utf8_lossy(&b)),
        }
        first = false;
    }
    c
}

impl Scratch {
    fn fifo_dir(&self) -> PathBuf {
        self.dir.join("exec")
    }

    fn attached(
        &self,
        runtime_id: &str,
        exec_id: &str,
        args: &[&str],
        terminal: Option<(u16, u16)>,
    ) -> AttachedExecRequest {
        AttachedExecRequest {
            runtime_id: runtime_id.into(),
            exec_id: exec_id.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            terminal,
            fifo_dir: self.fifo_dir(),
        }
    }

    /// Runs `req` with `inputs` sent at once (and the input kept open unless they end it);
    /// returns the exit status and what came out.
    async fn run_attached(
        &self,
        rt: &Containerd,
        req: &AttachedExecRequest,
        inputs: Vec<AttachedInput>,
    ) -> (i32, Collected) {
        let (in_tx, in_rx) = mpsc::unbounded_channel();
        for i in inputs {
            in_tx.send(i).unwrap();
        }
        let (out_tx, out_rx) = mpsc::channel(4);
        let collecting = tokio::spawn(collect(out_rx));
        let status = tokio::time::timeout(
            Duration::from_secs(60),
            rt.exec_attached(req, in_rx, out_tx),
        )
        .await
        .expect("the exec ends")
        .unwrap();
        drop(in_tx);
        (status, collecting.await.unwrap())
    }

    /// No exec process is left, nor any FIFO.
    async fn assert_attached_clean(&self, runtime_id: &str, exec_ids: &[&str]) {
        let pids = self.pids(runtime_id).await;
        assert_eq!(pids.len(), 1, "processes left in {runtime_id}: {pids:?}");
        for exec_id in exec_ids {
            assert!(!self.registered(runtime_id, exec_id).await, "{exec_id}");
        }
        let left: Vec<_> = std::fs::read_dir(self.fifo_dir())
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "FIFOs left: {left:?}");
    }
}

#[tokio::test]
async fn an_attached_exec_reads_stdin_and_streams_stdout_stderr_and_its_status() {
    let s = Scratch::new().await;
    let rt = s.runtime().await;
    let id = s
        .sleeper(&rt, "app", common::busybox("app", &["sleep", "600"]))
        .await;

    let req = s.attached(
        &id,
        "exec-1",
        &[
            "sh",
            "-c",
            "read line; echo \"got $line\"; echo oops >&2; cat; exit 7",
        ],
        None,
    );
    let (status, out) = s
        .run_attached(
            &rt,
            &req,
            vec![
                AttachedInput::Stdin(b"hello\n".to_vec()),
                AttachedInput::Stdin(b"the rest\n".to_vec()),
                AttachedInput::StdinEof,
            ],
        )
        .await;
    assert_eq!(status, 7);
    assert!(out.started_first, "{out:?}");
    assert_eq!(out.stdout, "got hello\nthe rest\n");
    assert_eq!(out.stderr, "oops\n");

    // All of a large output arrives, though the process has exited before it is read.
    let req = s.attached(&id, "exec-2", &["seq", "1", "200000"], None);
    let (status, out) = s
        .run_attached(&rt, &req, vec![AttachedInput::StdinEof])
        .await;
    assert_eq!(status, 0);
    assert_eq!(out.stdout.lines().count(), 200_000);
    assert!(out.stdout.ends_with("199999\n200000\n"));

    // A command that does not exist is an error, and leaves nothing.
    let req = s.attached(&id, "exec-3", &["no-such-command"], None);
    let (in_tx, in_rx) = mpsc::unbounded_channel();
    let (out_tx, _out_rx) = mpsc::channel(4);
    let err = rt.exec_attached(&req, in_rx, out_tx).await.unwrap_err();
    assert!(err.to_string().contains("no-such-command"), "{err}");
    drop(in_tx);

    s.assert_attached_clean(&id, &["exec-1", "exec-2", "exec-3"])
        .await;
    rt.remove(&id).await.unwrap();
}

#[tokio::test]
async fn a_terminal_exec_has_a_tty_of_the_size_asked_and_follows_resizes() {
    let s = Scratch::new().await;
    let rt = s.runtime().await;
    let id = s
        .sleeper(&rt, "app", common::busybox("app", &["sleep", "600"]))
        .await;

    let req = s.attached(&id, "exec-1", &["sh"], Some((30, 100)));
    let (in_tx, in_rx) = mpsc::unbounded_channel();
    let (out_tx, mut out_rx) = mpsc::channel(4);
    let running = {
        let rt = s.runtime().await;
        tokio::spawn(async move { rt.exec_attached(&req, in_rx, out_tx).await })
    };
    // Reads the terminal until `marker` shows.
    let mut screen = String::new();
    let mut read_until = async |marker: &str, screen: &mut String| {
        while !screen.contains(marker) {
            match tokio::time::timeout(Duration::from_secs(30), out_rx.recv()).await {
                Ok(Some(AttachedOutput::Stdout(b))) => {
                    screen.push_str(&String::from_utf8_lossy(&b))
                }
                Ok(Some(AttachedOutput::Started)) => {}
                other => {
                    panic!("waiting for {marker:?}: {other:?}; the terminal showed {screen:?}")
                }
            }
        }
    };
    in_tx
        .send(AttachedInput::Stdin(
            b"stty size; tty; echo TERM=$TERM\n".to_vec(),
        ))
        .unwrap();
    read_until("TERM=xterm", &mut screen).await;
    assert!(screen.contains("30 100"), "{screen:?}");
    assert!(screen.contains("/dev/pts/"), "{screen:?}");
    in_tx
        .send(AttachedInput::Resize {
            rows: 50,
            cols: 132,
        })
        .unwrap();
    in_tx
        .send(AttachedInput::Stdin(b"stty size; exit 3\n".to_vec()))
        .unwrap();
    read_until("50 132", &mut screen).await;
    let status = tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("the shell exits")
        .unwrap()
        .unwrap();
    assert_eq!(status, 3);
    drop(in_tx);

    s.assert_attached_clean(&id, &["exec-1"]).await;
    rt.remove(&id).await.unwrap();
}

#[tokio::test]
async fn an_attached_exec_whose_user_goes_away_is_killed_with_all_it_started() {
    let s = Scratch::new().await;
    let rt = s.runtime().await;
    let id = s
        .sleeper(&rt, "app", common::busybox("app", &["sleep", "600"]))
        .await;

    // The user closes the input.
    let req = s.attached(&id, "exec-1", &["sh", "-c", "sleep 600 & sleep 600"], None);
    let (in_tx, in_rx) = mpsc::unbounded_channel::<AttachedInput>();
    let (out_tx, mut out_rx) = mpsc::channel(4);
    let running = {
        let rt = s.runtime().await;
        tokio::spawn(async move { rt.exec_attached(&req, in_rx, out_tx).await })
    };
    assert_eq!(out_rx.recv().await, Some(AttachedOutput::Started));
    drop(in_tx);
    let status = tokio::time::timeout(Duration::from_secs(30), running)
        .await
        .expect("killed")
        .unwrap()
        .unwrap();
    assert_eq!(status, 128 + 9, "SIGKILL");

    // The user stops reading the output.
    let req = s.attached(&id, "exec-2", &["sleep", "600"], None);
    let (_in_tx, in_rx) = mpsc::unbounded_channel::<AttachedInput>();
    let (out_tx, out_rx) = mpsc::channel(4);
    drop(out_rx);
    let status = tokio::time::timeout(
        Duration::from_secs(30),
        rt.exec_attached(&req, in_rx, out_tx),
    )
    .await
    .expect("killed")
    .unwrap();
    assert_eq!(status, 128 + 9);

    s.assert_attached_clean(&id, &["exec-1", "exec-2"]).await;
    rt.remove(&id).await.unwrap();
}
