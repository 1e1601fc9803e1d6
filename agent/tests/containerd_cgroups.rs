//! Container and task cgroups on a real containerd (root and a running containerd required;
//! `.ci/run` sets them up): the exact values runc and the agent write, read back from the cgroup
//! files, on cgroup v1 or v2 (detected at run time), and an OOM kill seen in the container's
//! cgroup. Each test has a containerd namespace, a temp dir and a cgroup root of its own
//! (`/berth-test-<random>`), all removed on drop, also on failure.

mod common;

use std::path::Path;
use std::time::Duration;

use berth_agent::cgroups::{self, FsCgroups, TaskCgroups};
use berth_agent::model::{ContainerSpec, NetworkMode, TaskSpec};
use berth_agent::runtime::containerd::Containerd;
use berth_agent::runtime::{CreateRequest, Runtime};
use common::next_exit;

const MOUNT: &str = "/sys/fs/cgroup";
/// cgroup v1's "no limit" for memory files: LONG_MAX rounded down to a page.
const V1_UNLIMITED: &str = "9223372036854771712";
const MIB: u64 = 1024 * 1024;

/// A scratch namespace `berth-cgroups-<id>` (see `common::Scratch`) with a runtime and the cgroup
/// root `/berth-test-<id>`, removed on drop once the namespace is gone.
struct Scratch {
    base: common::Scratch,
    /// `/berth-test-<id>`
    root: String,
    rt: Containerd,
    cg: FsCgroups,
}

impl Scratch {
    async fn new() -> Self {
        let mut base = common::Scratch::new("berth-cgroups");
        let rt = base.runtime().await;
        let root = format!("/berth-test-{}", base.id);
        let cg = FsCgroups::new(MOUNT);
        base.kill_pause = Duration::from_millis(200);
        // The whole test root, in every hierarchy.
        let (task_path, test_root, fs) = (
            cgroups::task_cgroup_path(&root, "task1"),
            root.clone(),
            cg.clone(),
        );
        base.after_cleanup = Some(Box::new(move || {
            let _ = fs.remove(&task_path);
            let _ = fs.remove(&test_root);
        }));
        Scratch { base, root, rt, cg }
    }

    fn task_path(&self) -> String {
        cgroups::task_cgroup_path(&self.root, "task1")
    }

    fn request(&self, task: &TaskSpec, c: &ContainerSpec) -> CreateRequest {
        CreateRequest {
            runtime_id: format!("task1-{}", c.name),
            task_arn: task.arn.clone(),
            task_id: "task1".into(),
            container: c.clone(),
            network_mode: task.network_mode,
            netns_path: None,
            address: None,
            log_path: self.base.dir.join(format!("{}.log", c.name)),
            task: task.clone(),
            task_volumes_dir: self.base.dir.join("volumes/task1"),
            cgroup_parent: Some(self.task_path()),
        }
    }

    /// The cgroup file `file` of `controller` (v1) at `path` below the mount.
    fn read(&self, controller: &str, path: &str, file: &str) -> String {
        let p = if self.cg.is_v2() {
            Path::new(MOUNT)
                .join(path.trim_start_matches('/'))
                .join(file)
        } else {
            Path::new(MOUNT)
                .join(controller)
                .join(path.trim_start_matches('/'))
                .join(file)
        };
        std::fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
            .trim()
            .to_string()
    }
}

fn sh(name: &str, script: &str, cpu: u32, memory_mib: u32, reservation_mib: u32) -> ContainerSpec {
    ContainerSpec {
        cpu,
        memory_mib,
        memory_reservation_mib: reservation_mib,
        ..common::busybox(name, &["sh", "-c", script])
    }
}

fn task(containers: Vec<ContainerSpec>, cpu: u32, memory_mib: u32) -> TaskSpec {
    TaskSpec {
        cpu,
        memory_mib,
        ..common::task1(containers, NetworkMode::None)
    }
}

#[tokio::test]
async fn container_and_task_cgroups_hold_exact_values() {
    let s = Scratch::new().await;
    let v2 = s.cg.is_v2();
    let cs = vec![
        sh("cpu0", "sleep 60", 0, 0, 0),
        sh("cpu1", "sleep 60", 1, 0, 0),
        sh("cpu256", "sleep 60", 256, 0, 0),
        sh("cpu1024", "sleep 60", 1024, 0, 0),
        sh("cpu4096", "sleep 60", 4096, 0, 0),
        sh("memonly", "sleep 60", 0, 64, 0),
        sh("resonly", "sleep 60", 0, 0, 32),
        sh("both", "sleep 60", 0, 128, 48),
    ];
    let t = task(cs.clone(), 512, 1024);
    let limits = cgroups::task_limits(&t, 100_000, Some(321));
    s.cg.create(&s.task_path(), &limits).unwrap();
    for c in &cs {
        let req = s.request(&t, c);
        s.rt.create(&req).await.unwrap();
        s.rt.start(&req.runtime_id).await.unwrap();
    }
    let path = |name: &str| format!("{}/task1-{name}", s.task_path());
    for (name, shares, weight) in [
        ("cpu0", "2", "1"),
        ("cpu1", "2", "1"),
        ("cpu256", "256", "25"),
        ("cpu1024", "1024", "100"),
        ("cpu4096", "4096", "400"),
    ] {
        if v2 {
            assert_eq!(s.read("cpu", &path(name), "cpu.weight"), weight, "{name}");
        } else {
            assert_eq!(s.read("cpu", &path(name), "cpu.shares"), shares, "{name}");
        }
    }
    let (limit, soft) = if v2 {
        ("memory.max", "memory.low")
    } else {
        ("memory.limit_in_bytes", "memory.soft_limit_in_bytes")
    };
    let unlimited = if v2 { "max" } else { V1_UNLIMITED };
    let none = if v2 { "0" } else { V1_UNLIMITED };
    let bytes = |mib: u64| (mib * MIB).to_string();
    for (name, want_limit, want_soft) in [
        ("memonly", bytes(64), none.to_string()),
        ("resonly", unlimited.to_string(), bytes(32)),
        ("both", bytes(128), bytes(48)),
    ] {
        assert_eq!(s.read("memory", &path(name), limit), want_limit, "{name}");
        assert_eq!(s.read("memory", &path(name), soft), want_soft, "{name}");
    }
    // The task cgroup: 512 units = half a CPU per 100 ms, 1 GiB, 321 pids.
    let task = s.task_path();
    if v2 {
        assert_eq!(s.read("cpu", &task, "cpu.max"), "50000 100000");
    } else {
        assert_eq!(s.read("cpu", &task, "cpu.cfs_quota_us"), "50000");
        assert_eq!(s.read("cpu", &task, "cpu.cfs_period_us"), "100000");
        // Each container clamped, then summed.
        let sum = 2 + 2 + 256 + 1024 + 4096 + 2 + 2 + 2;
        assert_eq!(s.read("cpu", &task, "cpu.shares"), sum.to_string());
    }
    assert_eq!(s.read("memory", &task, limit), bytes(1024));
    assert_eq!(s.read("pids", &task, "pids.max"), "321");
    for c in &cs {
        s.rt.remove(&format!("task1-{}", c.name)).await.unwrap();
    }
    s.cg.remove(&task).unwrap();
    let gone = if v2 {
        Path::new(MOUNT).join(task.trim_start_matches('/'))
    } else {
        Path::new(MOUNT)
            .join("memory")
            .join(task.trim_start_matches('/'))
    };
    assert!(!gone.exists(), "{} is left", gone.display());
}

#[tokio::test]
async fn an_oom_kill_is_seen_in_the_container_cgroup() {
    let s = Scratch::new().await;
    let c = sh(
        "hog",
        "dd if=/dev/zero of=/dev/null bs=64M count=1",
        0,
        32,
        0,
    );
    let fine = sh("fine", "exit 0", 0, 32, 0);
    let t = task(vec![c.clone(), fine.clone()], 0, 0);
    s.cg.create(&s.task_path(), &cgroups::task_limits(&t, 100_000, None))
        .unwrap();
    let mut exits = s.rt.exits().await.unwrap();
    for c in [&c, &fine] {
        let req = s.request(&t, c);
        s.rt.create(&req).await.unwrap();
        s.rt.start(&req.runtime_id).await.unwrap();
        let exit = next_exit(&mut exits, &req.runtime_id).await;
        let path = format!("{}/{}", s.task_path(), req.runtime_id);
        if c.name == "hog" {
            assert_eq!(exit.exit_code, 137);
            assert!(s.cg.oom_killed(&path), "no oom_kill counted in {path}");
        } else {
            assert_eq!(exit.exit_code, 0);
            assert!(!s.cg.oom_killed(&path));
        }
        s.rt.remove(&req.runtime_id).await.unwrap();
    }
}
