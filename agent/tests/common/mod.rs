//! Scaffolding shared by the tests against the host's real containerd: `ctr`, a scratch
//! namespace with the test image in it (removed on drop, also on failure) and waiting for exits.
//! Each test file uses only part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use berth_agent::model::{ContainerSpec, NetworkMode, TaskSpec};
use berth_agent::runtime::containerd::{Containerd, ContainerdConfig};
use berth_agent::runtime::ExitEvent;
use futures_util::{Stream, StreamExt};

pub const IMAGE: &str = "docker.io/berth/busybox:test";

pub fn ctr(ns: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new("ctr")
        .arg("-n")
        .arg(ns)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ctr: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "ctr -n {ns} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// An essential container of the test image running `command`, with every other field at its
/// default (stop timeout 1 s).
pub fn busybox(name: &str, command: &[&str]) -> ContainerSpec {
    ContainerSpec {
        name: name.into(),
        image: IMAGE.into(),
        essential: true,
        entry_point: None,
        command: Some(command.iter().map(|s| s.to_string()).collect()),
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

/// The task `task1` of these containers, without task-level limits or volumes.
pub fn task1(containers: Vec<ContainerSpec>, network_mode: NetworkMode) -> TaskSpec {
    TaskSpec {
        arn: "arn:aws:ecs:us-east-1:0:task/c/task1".into(),
        family: "f".into(),
        revision: 1,
        network_mode,
        cpu: 0,
        memory_mib: 0,
        containers,
        volumes: vec![],
        ingress: None,
    }
}

/// A namespace `<prefix>-<id>` with the test image in it and a temp dir of the same name;
/// everything in them is removed on drop.
pub struct Scratch {
    /// The random part of the names.
    pub id: String,
    pub ns: String,
    pub dir: PathBuf,
    /// How long drop waits between killing a task and removing it.
    pub kill_pause: Duration,
    /// Runs on drop once the namespace is gone, before the temp dir is removed.
    pub after_cleanup: Option<Box<dyn FnOnce()>>,
}

impl Scratch {
    pub fn new(prefix: &str) -> Self {
        let id = format!("{:08x}", fastrand::u32(..));
        let ns = format!("{prefix}-{id}");
        let dir = std::env::temp_dir().join(&ns);
        std::fs::create_dir_all(&dir).unwrap();
        let archive = workspace().join("tests/images/out/busybox.tar");
        if !archive.is_file() {
            let status = Command::new("bash")
                .arg(workspace().join("tests/images/build-busybox-image.sh"))
                .arg(workspace().join("tests/images/out"))
                .status()
                .expect("running build-busybox-image.sh");
            assert!(status.success(), "building the test image failed");
        }
        let scratch = Scratch {
            id,
            ns,
            dir,
            kill_pause: Duration::ZERO,
            after_cleanup: None,
        };
        ctr(
            &scratch.ns,
            &["images", "import", archive.to_str().unwrap()],
        )
        .expect("importing the test image (is containerd running? .ci/run starts it)");
        scratch
    }

    /// A runtime working in this namespace.
    pub async fn runtime(&self) -> Containerd {
        Containerd::connect(ContainerdConfig {
            socket: "/run/containerd/containerd.sock".into(),
            namespace: self.ns.clone(),
            snapshotter: "overlayfs".into(),
            call_timeout: Duration::from_secs(20),
        })
        .await
        .expect("connecting to containerd")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Ok(tasks) = ctr(&self.ns, &["tasks", "ls", "-q"]) {
            for t in tasks.lines() {
                let _ = ctr(&self.ns, &["tasks", "kill", "-s", "KILL", t]);
                if !self.kill_pause.is_zero() {
                    std::thread::sleep(self.kill_pause);
                }
                let _ = ctr(&self.ns, &["tasks", "rm", "-f", t]);
            }
        }
        if let Ok(cs) = ctr(&self.ns, &["containers", "ls", "-q"]) {
            for c in cs.lines() {
                let _ = ctr(&self.ns, &["containers", "rm", c]);
            }
        }
        let _ = ctr(&self.ns, &["images", "rm", IMAGE]);
        // Snapshots are garbage-collected once nothing references them; the namespace can
        // only go once they are gone.
        for _ in 0..50 {
            if ctr("default", &["namespaces", "rm", &self.ns]).is_ok() {
                break;
            }
            if let Ok(snaps) = ctr(&self.ns, &["snapshots", "ls"]) {
                for key in snaps
                    .lines()
                    .skip(1)
                    .filter_map(|l| l.split_whitespace().next())
                {
                    let _ = ctr(&self.ns, &["snapshots", "rm", key]);
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if let Some(f) = self.after_cleanup.take() {
            f();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The next exit event, whichever container it is for.
pub async fn next_event(exits: &mut (impl Stream<Item = ExitEvent> + Unpin)) -> ExitEvent {
    tokio::time::timeout(Duration::from_secs(30), exits.next())
        .await
        .expect("no exit event within 30 s")
        .expect("exit stream ended")
}

/// The next exit event of the container `id`; events of others are skipped.
pub async fn next_exit(exits: &mut (impl Stream<Item = ExitEvent> + Unpin), id: &str) -> ExitEvent {
    loop {
        let e = next_event(exits).await;
        if e.runtime_id == id {
            return e;
        }
    }
}
