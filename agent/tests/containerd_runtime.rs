//! The containerd runtime against the host's real containerd (root required; `.ci/run` sets it
//! up). Each test works in a containerd namespace of its own and removes it, also on failure.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use berth_agent::model::{ContainerSpec, NetworkMode};
use berth_agent::runtime::containerd::{Containerd, ContainerdConfig};
use berth_agent::runtime::{CreateRequest, ProcessState, Runtime, RuntimeError, Stage};
use futures_util::StreamExt;

const IMAGE: &str = "docker.io/berth/busybox:test";

fn ctr(ns: &str, args: &[&str]) -> Result<String, String> {
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

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A namespace with the test image in it; everything in it is removed on drop.
struct Scratch {
    ns: String,
    dir: PathBuf,
}

impl Scratch {
    fn new() -> Self {
        let id = format!("{:08x}", fastrand::u32(..));
        let ns = format!("berth-rt-{id}");
        let dir = std::env::temp_dir().join(format!("berth-rt-{id}"));
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
        let scratch = Scratch { ns, dir };
        ctr(
            &scratch.ns,
            &["images", "import", archive.to_str().unwrap()],
        )
        .expect("importing the test image (is containerd running? .ci/run starts it)");
        scratch
    }

    async fn runtime(&self) -> Containerd {
        Containerd::connect(ContainerdConfig {
            socket: "/run/containerd/containerd.sock".into(),
            namespace: self.ns.clone(),
            snapshotter: "overlayfs".into(),
            call_timeout: Duration::from_secs(20),
        })
        .await
        .expect("connecting to containerd")
    }

    fn request(&self, name: &str, command: &[&str], mode: NetworkMode) -> CreateRequest {
        CreateRequest {
            runtime_id: format!("task1-{name}"),
            task_arn: "arn:aws:ecs:us-east-1:0:task/c/task1".into(),
            task_id: "task1".into(),
            container: ContainerSpec {
                name: name.into(),
                image: IMAGE.into(),
                essential: true,
                entry_point: None,
                command: Some(command.iter().map(|s| s.to_string()).collect()),
                environment: vec![("GREETING".into(), "hello from berth".into())],
                working_directory: None,
                user: None,
                cpu: 0,
                memory_mib: 0,
                memory_reservation_mib: 0,
                stop_timeout_secs: 1,
                extra: Default::default(),
            },
            network_mode: mode,
            log_path: self.dir.join(format!("{name}.log")),
            task: berth_agent::model::TaskSpec {
                arn: "arn:aws:ecs:us-east-1:0:task/c/task1".into(),
                family: "f".into(),
                revision: 1,
                network_mode: mode,
                cpu: 0,
                memory_mib: 0,
                containers: vec![],
                volumes: vec![],
            },
            task_volumes_dir: self.dir.join("volumes"),
            cgroup_parent: None,
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Ok(tasks) = ctr(&self.ns, &["tasks", "ls", "-q"]) {
            for t in tasks.lines() {
                let _ = ctr(&self.ns, &["tasks", "kill", "-s", "KILL", t]);
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
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn next_exit(
    exits: &mut (impl futures_util::Stream<Item = berth_agent::runtime::ExitEvent> + Unpin),
) -> berth_agent::runtime::ExitEvent {
    tokio::time::timeout(Duration::from_secs(30), exits.next())
        .await
        .expect("no exit event within 30 s")
        .expect("exit stream ended")
}

#[tokio::test]
async fn runs_a_container_to_its_exit_code_with_logs_in_a_file() {
    let s = Scratch::new();
    let rt = s.runtime().await;
    assert!(!rt.version().await.unwrap().is_empty());
    rt.resolve_image(IMAGE).await.unwrap();
    let req = s.request(
        "main",
        &["sh", "-c", "echo $GREETING; echo to-stderr >&2; exit 7"],
        NetworkMode::None,
    );
    let mut exits = rt.exits().await.unwrap();
    rt.create(&req).await.unwrap();
    assert_eq!(
        rt.state(&req.runtime_id).await.unwrap(),
        ProcessState::Created
    );
    let listed = rt.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].task_arn.as_deref(), Some(req.task_arn.as_str()));
    rt.start(&req.runtime_id).await.unwrap();
    let exit = next_exit(&mut exits).await;
    assert_eq!(exit.runtime_id, req.runtime_id);
    assert_eq!(exit.exit_code, 7);
    assert_eq!(
        rt.state(&req.runtime_id).await.unwrap(),
        ProcessState::Stopped { exit_code: 7 }
    );
    let log = std::fs::read_to_string(&req.log_path).unwrap();
    assert!(log.contains("hello from berth"), "{log}");
    assert!(log.contains("to-stderr"), "{log}");
    rt.remove(&req.runtime_id).await.unwrap();
    assert_eq!(
        rt.state(&req.runtime_id).await.unwrap(),
        ProcessState::Missing
    );
    assert!(rt.list().await.unwrap().is_empty());
    // Removing again is harmless.
    rt.remove(&req.runtime_id).await.unwrap();
}

#[tokio::test]
async fn sigterm_is_ignored_by_pid_1_and_sigkill_is_not() {
    let s = Scratch::new();
    let rt = s.runtime().await;
    let req = s.request("sleeper", &["sleep", "3600"], NetworkMode::Host);
    let mut exits = rt.exits().await.unwrap();
    rt.create(&req).await.unwrap();
    rt.start(&req.runtime_id).await.unwrap();
    assert_eq!(
        rt.state(&req.runtime_id).await.unwrap(),
        ProcessState::Running
    );
    rt.signal(&req.runtime_id, libc::SIGTERM).await.unwrap();
    // busybox sleep as PID 1 has no SIGTERM handler, so the kernel drops the signal.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        rt.state(&req.runtime_id).await.unwrap(),
        ProcessState::Running
    );
    rt.signal(&req.runtime_id, libc::SIGKILL).await.unwrap();
    let exit = next_exit(&mut exits).await;
    assert_eq!(exit.exit_code, 137);
    rt.remove(&req.runtime_id).await.unwrap();
}

#[tokio::test]
async fn a_leftover_container_is_replaced_on_create() {
    let s = Scratch::new();
    let rt = s.runtime().await;
    let req = s.request("again", &["sleep", "3600"], NetworkMode::None);
    rt.create(&req).await.unwrap();
    rt.start(&req.runtime_id).await.unwrap();
    // The agent crashed after starting it and before recording that: create runs again.
    rt.create(&req).await.unwrap();
    assert_eq!(
        rt.state(&req.runtime_id).await.unwrap(),
        ProcessState::Created
    );
    assert_eq!(rt.list().await.unwrap().len(), 1);
    rt.remove(&req.runtime_id).await.unwrap();
}

#[tokio::test]
async fn failures_carry_ecs_reasons() {
    let s = Scratch::new();
    let rt = s.runtime().await;
    let err = rt
        .resolve_image("docker.io/library/missing:latest")
        .await
        .unwrap_err();
    assert!(matches!(err, RuntimeError::ImageNotFound(_)), "{err}");
    assert!(Stage::Image
        .reason(&err)
        .starts_with("CannotPullContainerError: image docker.io/library/missing:latest"));

    let mut req = s.request("baduser", &["true"], NetworkMode::None);
    req.container.user = Some("nosuchuser".into());
    let err = rt.create(&req).await.unwrap_err();
    assert!(err.to_string().contains("nosuchuser"), "{err}");
    assert!(
        rt.list().await.unwrap().is_empty(),
        "a failed create leaves nothing"
    );

    // runc reports a missing binary at create on some versions and at start on others;
    // either way the error says what is wrong and nothing is left behind.
    let req = s.request("nobinary", &["/no/such/binary"], NetworkMode::None);
    let err = match rt.create(&req).await {
        Err(e) => e,
        Ok(()) => rt.start(&req.runtime_id).await.unwrap_err(),
    };
    assert!(err.to_string().contains("/no/such/binary"), "{err}");
    rt.remove(&req.runtime_id).await.unwrap();
    assert!(rt.list().await.unwrap().is_empty());
}
