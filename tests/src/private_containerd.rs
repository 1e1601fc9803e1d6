//! A containerd of one test's own: its own config, root, state and sockets, started as a child
//! process, so that a test can stop, kill, restart or freeze containerd without disturbing the
//! tests that run in parallel against the host's.
//!
//! The shims it starts are daemons of their own (reparented to init): they survive its stop
//! and its restart, as on a real host. Dropping it cleans everything up, also after a failed
//! test and even when it is frozen or down: it is thawed (or started again), every task and
//! container in it is killed and removed, it is stopped, any shim still serving its socket is
//! killed (with its containers), whatever is still mounted under its dirs is unmounted and
//! the dirs are removed.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::containerd::{ctr_at, ctr_at_within, namespaces_at, purge_namespace_at};

/// Where runc (started by the runc v2 shim with its default options) keeps its state: one dir
/// per containerd namespace. Test namespaces are unique, so theirs are theirs alone.
const RUNC_ROOT: &str = "/run/containerd/runc";
/// Where containerd 1.6's shims put their sockets, whatever containerd's state dir.
const SHIM_SOCKET_DIR: &str = "/run/containerd/s/";

pub struct PrivateContainerd {
    /// `/run/berth-e2e-<id>`: the sockets (short paths) and the state dir.
    run_dir: PathBuf,
    /// containerd's root (content, snapshots, metadata): on a filesystem the overlayfs
    /// snapshotter can stack on.
    root: PathBuf,
    /// The dir created for `root` and removed on drop (`root` itself, or its parent when it
    /// had to go under /var/lib).
    root_base: PathBuf,
    state: PathBuf,
    socket: String,
    config: PathBuf,
    /// Where its logs go: `containerd-<run>.log`.
    log_dir: PathBuf,
    child: Option<Child>,
    exit: Option<ExitStatus>,
    frozen: bool,
    runs: usize,
}

impl PrivateContainerd {
    /// Writes the config of the private containerd of env `id` (its logs in `log_dir`) and
    /// starts it; returns once it answers.
    pub fn new(id: &str, log_dir: &Path) -> Result<PrivateContainerd> {
        let run_dir = PathBuf::from(format!("/run/berth-e2e-{id}"));
        let socket = run_dir.join("containerd.sock");
        let socket = socket.to_str().context("socket path not UTF-8")?.to_owned();
        if socket.len() + ".ttrpc".len() >= 100 {
            bail!("the socket path {socket} is too long for a unix socket");
        }
        // The overlayfs snapshotter cannot use an overlayfs as its backing filesystem.
        let (root_base, root) = if is_overlayfs(log_dir) {
            let base = PathBuf::from(format!("/var/lib/berth-e2e-{id}"));
            (base.clone(), base.join("root"))
        } else {
            let root = log_dir.join("containerd-root");
            (root.clone(), root)
        };
        let mut c = PrivateContainerd {
            state: run_dir.join("state"),
            config: log_dir.join("containerd.toml"),
            log_dir: log_dir.to_owned(),
            run_dir,
            root,
            root_base,
            socket,
            child: None,
            exit: None,
            frozen: false,
            runs: 0,
        };
        // From here on, a failure drops `c`, which removes whatever was created.
        for dir in [&c.run_dir, &c.root, &c.state, &c.root.join("tmp")] {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(&c.config, c.config_toml())
            .with_context(|| format!("writing {}", c.config.display()))?;
        c.start()?;
        Ok(c)
    }

    fn config_toml(&self) -> String {
        let root = self.root.display().to_string();
        let state = self.state.display().to_string();
        format!(
            r#"version = 2
root = {root:?}
state = {state:?}
temp = {temp:?}
oom_score = 0
# The CRI plugin would set up CNI and its own streaming server; the snapshotters that cannot
# work here would only log errors.
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = {socket:?}

[ttrpc]
  address = {ttrpc:?}

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = {opt:?}
  [plugins."io.containerd.monitor.v1.cgroups"]
    no_prometheus = true
  [plugins."io.containerd.runtime.v1.linux"]
    runtime_root = {runc_v1:?}
"#,
            temp = self.root.join("tmp").display().to_string(),
            socket = self.socket,
            ttrpc = self.ttrpc_socket(),
            opt = self.root.join("opt").display().to_string(),
            runc_v1 = self.state.join("runc-v1").display().to_string(),
        )
    }

    /// The gRPC socket: what `[containerd] socket` of the env's agents points at.
    pub fn socket(&self) -> &str {
        &self.socket
    }

    fn ttrpc_socket(&self) -> String {
        format!("{}.ttrpc", self.socket)
    }

    /// containerd's root dir.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// containerd's state dir (the shims' bundles).
    pub fn state(&self) -> &Path {
        &self.state
    }

    /// `ctr -a <this socket> -n NAMESPACE ARGS...`.
    pub fn ctr(&self, namespace: &str, args: &[&str]) -> Result<String> {
        ctr_at(&self.socket, namespace, args)
    }

    /// The pid of the containerd process, while it runs (frozen or not).
    pub fn pid(&mut self) -> Option<u32> {
        self.is_running()
            .then(|| self.child.as_ref().map(Child::id))
            .flatten()
    }

    /// Whether the containerd process is there (running or frozen).
    pub fn is_running(&mut self) -> bool {
        let Some(child) = self.child.as_mut() else {
            return false;
        };
        if self.exit.is_none() {
            self.exit = child.try_wait().ok().flatten();
        }
        self.exit.is_none()
    }

    pub fn is_frozen(&self) -> bool {
        self.frozen
    }

    /// Starts containerd (again) with the same config and dirs, and waits until it answers.
    pub fn start(&mut self) -> Result<()> {
        if self.is_running() {
            bail!("the private containerd is already running");
        }
        // Leftovers of an unclean stop would make it refuse to listen.
        for sock in [self.socket.clone(), self.ttrpc_socket()] {
            let _ = std::fs::remove_file(sock);
        }
        self.runs += 1;
        let log = self.log_dir.join(format!("containerd-{}.log", self.runs));
        let out = File::options()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("cannot open {}", log.display()))?;
        let err = out.try_clone()?;
        let mut cmd = Command::new("containerd");
        cmd.arg("--config")
            .arg(&self.config)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .env_remove("NOTIFY_SOCKET")
            .env_remove("CONTAINERD_ADDRESS");
        // SAFETY: the closure runs in the forked child before exec and makes only
        // async-signal-safe system calls (setsid, prctl); it touches no locks or allocations.
        // Its own session keeps a ^C to the test's terminal away from it; the death signal
        // makes sure it does not outlive a test process that is killed before its destructors
        // run (the shims it started do, as they would on a host).
        unsafe {
            cmd.pre_exec(|| {
                nix::unistd::setsid().map_err(std::io::Error::from)?;
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
            });
        }
        let child = cmd
            .spawn()
            .context("cannot start containerd (apt-get install containerd)")?;
        self.child = Some(child);
        self.exit = None;
        self.frozen = false;

        let limit = crate::wait::timeout(30);
        let deadline = Instant::now() + limit;
        loop {
            if !self.is_running() {
                bail!(
                    "the private containerd exited ({:?}) before it answered; its log {}:\n{}",
                    self.exit,
                    log.display(),
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            let answered = Path::new(&self.socket).exists()
                && ctr_at_within(
                    &self.socket,
                    "default",
                    &["version"],
                    Duration::from_secs(5),
                )
                .is_ok();
            if answered {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "the private containerd did not answer on {} within {limit:?}; its log:\n{}",
                    self.socket,
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops containerd gracefully (SIGTERM) and waits for it to exit; its shims keep running.
    /// If it is still there after 20 s it is killed and this fails.
    pub fn stop(&mut self) -> Result<ExitStatus> {
        self.signal_and_wait(Signal::SIGTERM, Duration::from_secs(20))
    }

    /// Kills containerd (SIGKILL: a crash) and waits for it to die; its shims keep running.
    pub fn kill(&mut self) -> Result<ExitStatus> {
        self.signal_and_wait(Signal::SIGKILL, Duration::from_secs(10))
    }

    fn signal_and_wait(&mut self, signal: Signal, grace: Duration) -> Result<ExitStatus> {
        let Some(pid) = self.pid() else {
            bail!("the private containerd is not running");
        };
        kill(Pid::from_raw(pid as i32), signal).context("signalling containerd")?;
        if self.frozen && signal != Signal::SIGKILL {
            // A stopped process handles SIGTERM only once it is continued.
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGCONT);
        }
        self.frozen = false;
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if !self.is_running() {
                return Ok(self.exit.expect("exited"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let child = self.child.as_mut().expect("running");
        let _ = child.kill();
        let status = child.wait().context("waiting for containerd")?;
        self.exit = Some(status);
        bail!("containerd was still running {grace:?} after {signal}; killed it")
    }

    /// Stops containerd (SIGTERM) and starts it again with the same dirs.
    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        self.start()
    }

    /// Freezes containerd (SIGSTOP): its socket still accepts connections, nothing answers.
    pub fn freeze(&mut self) -> Result<()> {
        let Some(pid) = self.pid() else {
            bail!("the private containerd is not running");
        };
        kill(Pid::from_raw(pid as i32), Signal::SIGSTOP).context("SIGSTOP containerd")?;
        self.frozen = true;
        // Wait for the stop to take effect, so that the test's clock starts when it has.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if proc_state(pid) == Some('T') {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        bail!("containerd {pid} is not stopped 5s after SIGSTOP")
    }

    /// Thaws a frozen containerd (SIGCONT).
    pub fn thaw(&mut self) -> Result<()> {
        let Some(pid) = self.pid() else {
            bail!("the private containerd is not running");
        };
        kill(Pid::from_raw(pid as i32), Signal::SIGCONT).context("SIGCONT containerd")?;
        self.frozen = false;
        Ok(())
    }

    /// The pids of the shims serving this containerd (`containerd-shim-runc-v2 ... -address
    /// <this socket>`), whether it runs or not.
    pub fn shim_pids(&self) -> Vec<u32> {
        let mut pids = Vec::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            let is_shim = args
                .first()
                .is_some_and(|a| a.ends_with(b"containerd-shim-runc-v2"));
            let ours = args
                .windows(2)
                .any(|w| w[0] == b"-address" && w[1] == self.socket.as_bytes());
            if is_shim && ours {
                pids.push(pid);
            }
        }
        pids
    }

    /// Every bundle dir of the v2 runtime: (namespace, container id, bundle path).
    fn bundles(&self) -> Vec<(String, String, PathBuf)> {
        let mut out = Vec::new();
        let base = self.state.join("io.containerd.runtime.v2.task");
        for ns in std::fs::read_dir(&base).into_iter().flatten().flatten() {
            for b in std::fs::read_dir(ns.path()).into_iter().flatten().flatten() {
                out.push((
                    ns.file_name().to_string_lossy().into_owned(),
                    b.file_name().to_string_lossy().into_owned(),
                    b.path(),
                ));
            }
        }
        out
    }

    fn cleanup(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.frozen {
            if let Err(e) = self.thaw() {
                problems.push(format!("thaw: {e:#}"));
            }
        }
        // Clean up through containerd itself where possible: start it again if the test left
        // it down.
        if !self.is_running() && self.runs > 0 {
            if let Err(e) = self.start() {
                problems.push(format!("starting containerd for the clean-up: {e:#}"));
            }
        }
        let mut namespaces: Vec<String> = Vec::new();
        if self.is_running() {
            match namespaces_at(&self.socket) {
                Ok(list) => namespaces = list,
                Err(e) => problems.push(format!("listing namespaces: {e:#}")),
            }
            for ns in &namespaces {
                if let Err(e) = purge_namespace_at(&self.socket, ns, Duration::from_secs(30)) {
                    problems.push(format!("purging namespace {ns}: {e:#}"));
                }
            }
            if let Err(e) = self.stop() {
                problems.push(format!("stopping containerd: {e:#}"));
            }
        }
        // What containerd could not clean up: the containers of any bundle left (runc kills
        // and deletes them), then their shims and the shims' sockets.
        let mut shim_sockets = Vec::new();
        for (ns, id, bundle) in self.bundles() {
            if !namespaces.contains(&ns) {
                namespaces.push(ns.clone());
            }
            let out = Command::new("runc")
                .arg("--root")
                .arg(Path::new(RUNC_ROOT).join(&ns))
                .args(["delete", "-f", &id])
                .output();
            if let Ok(out) = out {
                if out.status.success() {
                    problems.push(format!("left by containerd, deleted with runc: {ns}/{id}"));
                }
            }
            if let Ok(address) = std::fs::read_to_string(bundle.join("address")) {
                let path = address.trim().trim_start_matches("unix://").to_owned();
                if path.starts_with(SHIM_SOCKET_DIR) {
                    shim_sockets.push(path);
                }
            }
        }
        let shims = self.shim_pids();
        for pid in &shims {
            problems.push(format!("killing leftover shim {pid}"));
            let _ = kill(Pid::from_raw(*pid as i32), Signal::SIGKILL);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.shim_pids().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        for sock in shim_sockets {
            let _ = std::fs::remove_file(sock);
        }
        for ns in namespaces.iter().filter(|ns| ns.starts_with("berth-e2e-")) {
            // Empty once runc deleted its containers; never anyone else's.
            let _ = std::fs::remove_dir(Path::new(RUNC_ROOT).join(ns));
        }
        for mount in mounts_under(&[&self.root, &self.state, &self.run_dir]) {
            if let Err(e) = nix::mount::umount2(&mount, nix::mount::MntFlags::MNT_DETACH) {
                problems.push(format!("unmounting {}: {e}", mount.display()));
            }
        }
        for dir in [&self.run_dir, &self.root_base] {
            if dir.exists() {
                if let Err(e) = std::fs::remove_dir_all(dir) {
                    problems.push(format!("removing {}: {e}", dir.display()));
                }
            }
        }
        problems
    }
}

impl Drop for PrivateContainerd {
    fn drop(&mut self) {
        for problem in self.cleanup() {
            eprintln!("cleanup: private containerd: {problem}");
        }
    }
}

/// The state letter of `/proc/<pid>/stat` (R, S, T, Z, ...).
fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command is in parentheses and may contain anything; the state follows the last ')'.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

fn is_overlayfs(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .map(|s| s.filesystem_type() == nix::sys::statfs::OVERLAYFS_SUPER_MAGIC)
        .unwrap_or(false)
}

/// The mount points at or below any of `dirs` (from /proc/self/mountinfo), deepest first.
fn mounts_under(dirs: &[&Path]) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut mounts: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|m| PathBuf::from(unescape_mountinfo(m)))
        .filter(|m| dirs.iter().any(|d| m.starts_with(d)))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    mounts.dedup();
    mounts
}

/// mountinfo writes space, tab, newline and backslash in paths as `\ooo` octal escapes.
fn unescape_mountinfo(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        if let (b'\\', Some(d)) = (bytes[i], octal) {
            let v = d.iter().fold(0u32, |v, b| v * 8 + u32::from(b - b'0'));
            out.push(v as u8);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape_mountinfo(r"/a\040b/c"), "/a b/c");
        assert_eq!(unescape_mountinfo(r"/a\134b"), r"/a\b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
        assert_eq!(unescape_mountinfo(r"/end\"), r"/end\");
    }

    #[test]
    fn the_state_follows_the_last_parenthesis() {
        // The harness's main thread runs or waits for this one.
        assert!(matches!(proc_state(std::process::id()), Some('R' | 'S')));
    }
}
