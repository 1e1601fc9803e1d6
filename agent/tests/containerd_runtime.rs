//! The containerd runtime against the host's real containerd (root required; `.ci/run` sets it
//! up). Each test works in a containerd namespace of its own and removes it, also on failure.

mod common;

use std::ops::Deref;
use std::time::Duration;

use berth_agent::model::{ContainerSpec, NetworkMode};
use berth_agent::runtime::{CreateRequest, ProcessState, Runtime, RuntimeError, Stage};
use common::{next_event, IMAGE};

/// A scratch namespace `berth-rt-<id>` (see `common::Scratch`).
struct Scratch(common::Scratch);

impl Deref for Scratch {
    type Target = common::Scratch;
    fn deref(&self) -> &common::Scratch {
        &self.0
    }
}

impl Scratch {
    fn new() -> Self {
        Scratch(common::Scratch::new("berth-rt"))
    }

    fn request(&self, name: &str, command: &[&str], mode: NetworkMode) -> CreateRequest {
        CreateRequest {
            runtime_id: format!("task1-{name}"),
            task_arn: "arn:aws:ecs:us-east-1:0:task/c/task1".into(),
            task_id: "task1".into(),
            container: ContainerSpec {
                environment: vec![("GREETING".into(), "hello from berth".into())],
                ..common::busybox(name, command)
            },
            network_mode: mode,
            netns_path: None,
            address: None,
            log_path: self.dir.join(format!("{name}.log")),
            task: common::task1(vec![], mode),
            task_volumes_dir: self.dir.join("volumes"),
            cgroup_parent: None,
        }
    }
}

#[tokio::test]
async fn runs_a_container_to_its_exit_code_with_logs_in_a_file() {
    let s = Scratch::new();
    let rt = s.runtime().await;
    assert!(!rt.version().await.unwrap().is_empty());
    let digest = rt.resolve_image(IMAGE).await.unwrap();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
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
    let exit = next_event(&mut exits).await;
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
    let exit = next_event(&mut exits).await;
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
