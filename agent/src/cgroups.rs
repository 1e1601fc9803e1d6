//! Task cgroups: one cgroup per task, `<root>/<task id>`, whose containers runc creates below it
//! (`linux.cgroupsPath` = `<root>/<task id>/<runtime id>`, see `runtime::oci`). The arithmetic
//! (ECS units to shares, weights and quotas) is pure; [`TaskCgroups`] is the I/O boundary, with
//! [`FsCgroups`] writing the cgroup files and [`FakeCgroups`] recording calls for engine tests.
//!
//! Plain file writes rather than the cgroups-rs crate: its v1 builder creates a group in every
//! mounted subsystem, we need our own shares-to-weight conversion (below) and the v2
//! controller delegation in `cgroup.subtree_control`, and the few files we write fit one small
//! module that is easy to read next to runc's own behaviour.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::model::TaskSpec;

/// Linux's bounds for cpu.shares; ECS maps 0 and 1 to 2 (1 is invalid, 0 would make Docker
/// use 1024), and the kernel caps at 262144.
pub const MIN_CPU_SHARES: u64 = 2;
pub const MAX_CPU_SHARES: u64 = 262_144;
/// ECS's smallest hard memory limit for a container.
pub const MIN_CONTAINER_MEMORY_MIB: u32 = 4;
/// The kernel's smallest CFS quota (1 ms).
pub const MIN_CPU_QUOTA_US: u64 = 1000;
pub const DEFAULT_CPU_PERIOD_US: u64 = 100_000;
/// ECS's reason for a container the OOM killer ended.
pub const OOM_REASON: &str = "OutOfMemoryError: Container killed due to memory usage";

const MIB: u64 = 1024 * 1024;

/// A container's `cpu` units as cpu.shares, clamped as ECS and the kernel do.
pub fn cpu_shares(units: u32) -> u64 {
    u64::from(units).clamp(MIN_CPU_SHARES, MAX_CPU_SHARES)
}

/// cgroup v2's cpu.weight (1-10000) for cpu.shares (2-262144).
///
/// ECS cpu units are proportions: 256 and 768 units on one contended core must split it 1:3.
/// So the mapping is proportional, scaled so that the default stays the default
/// (1024 shares -> weight 100, as a plain systemd service gets): weight = shares * 100 / 1024.
/// Two rejected alternatives: runc 1.1's linear map (`1 + (shares - 2) * 9999 / 262142`) turns
/// 1024 into 39, starving Berth's containers next to other services (runc issue #4772); the
/// quadratic fit crun and newer runc adopted keeps 1024 -> 100 but bends proportions
/// (256:768 becomes 35:80, a 1:2.3 split, measured). The price of proportionality: weights
/// saturate at 10000 from 102400 shares (100 vCPUs' worth) up, and below 6 shares rounding
/// gives weight 1. We write the weight ourselves through the OCI spec's
/// `linux.resources.unified` and never hand runc the shares on v2.
pub fn cpu_weight(shares: u64) -> u64 {
    ((shares * 100 + 512) / 1024).clamp(1, 10_000)
}

/// What a task's cgroup is limited to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskLimits {
    /// The sum of its containers' shares (each clamped), as ECS gives the task cgroup when the
    /// task has no task-level cpu.
    pub cpu_shares: u64,
    /// Task-level `cpu`: the CFS quota per `cpu_period_us`.
    pub cpu_quota_us: Option<u64>,
    pub cpu_period_us: u64,
    /// Task-level `memory`.
    pub memory_bytes: Option<u64>,
    pub pids_max: Option<u64>,
}

/// The task cgroup's limits: task-level cpu (1024 units = one CPU per period) becomes a quota;
/// without it the task's shares are its containers' sum.
pub fn task_limits(spec: &TaskSpec, cpu_period_us: u64, pids_max: Option<u64>) -> TaskLimits {
    let cpu_quota_us =
        (spec.cpu > 0).then(|| (u64::from(spec.cpu) * cpu_period_us / 1024).max(MIN_CPU_QUOTA_US));
    TaskLimits {
        cpu_shares: spec
            .containers
            .iter()
            .map(|c| cpu_shares(c.cpu))
            .sum::<u64>()
            .clamp(MIN_CPU_SHARES, MAX_CPU_SHARES),
        cpu_quota_us,
        cpu_period_us,
        memory_bytes: (spec.memory_mib > 0).then(|| u64::from(spec.memory_mib) * MIB),
        pids_max,
    }
}

/// The task cgroup's path, relative to the cgroup mount (and to each v1 controller):
/// `<root>/<task id>`.
pub fn task_cgroup_path(root: &str, task_id: &str) -> String {
    format!("{}/{task_id}", root.trim_end_matches('/'))
}

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cgroup {path}: {message}")]
    Io { path: String, message: String },
}

/// The cgroup I/O the engine needs. `path` is a task cgroup's path as [`task_cgroup_path`]
/// gives it; every method is idempotent.
pub trait TaskCgroups: Send + Sync + 'static {
    /// Creates the task cgroup (if needed) and writes its limits.
    fn create(&self, path: &str, limits: &TaskLimits) -> Result<(), CgroupError>;
    /// Removes the task cgroup and anything left below it, in every controller; a missing
    /// cgroup is not an error. The containers must be gone.
    fn remove(&self, path: &str) -> Result<(), CgroupError>;
    /// Whether the OOM killer killed a process of the cgroup at `path` (a container's).
    fn oom_killed(&self, path: &str) -> bool;
    /// The names of the cgroups directly below `root` (task ids, for the orphan sweep).
    fn children(&self, _root: &str) -> Vec<String> {
        Vec::new()
    }
    /// What the cgroup at `path` (a container's) has used, as far as it can be read.
    fn usage(&self, _path: &str) -> CgroupUsage {
        CgroupUsage::default()
    }
}

/// A cgroup's CPU time and memory, for the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CgroupUsage {
    pub cpu_seconds: Option<f64>,
    pub memory_bytes: Option<u64>,
}

/// The v1 controllers whose files the agent writes; runc creates the rest.
const V1_CONTROLLERS: &[&str] = &["cpu", "memory", "pids"];

/// The real cgroup file system, v1 or v2.
#[derive(Debug, Clone)]
pub struct FsCgroups {
    mount: PathBuf,
    v2: bool,
}

/// cgroup v2 when the unified hierarchy is mounted at `mount` itself.
pub fn is_v2(mount: &Path) -> bool {
    mount.join("cgroup.controllers").exists()
}

impl FsCgroups {
    pub fn new(mount: impl Into<PathBuf>) -> Self {
        let mount = mount.into();
        let v2 = is_v2(&mount);
        Self { mount, v2 }
    }

    pub fn is_v2(&self) -> bool {
        self.v2
    }

    fn dir(&self, controller: Option<&str>, path: &str) -> PathBuf {
        let rel = path.trim_start_matches('/');
        match controller {
            Some(c) => self.mount.join(c).join(rel),
            None => self.mount.join(rel),
        }
    }

    fn mkdir(dir: &Path) -> Result<(), CgroupError> {
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))
    }

    /// v2 delegates controllers down the tree: each ancestor's cgroup.subtree_control must
    /// enable cpu, memory and pids for the task cgroup (and its containers) to have them.
    fn enable_v2_controllers(&self, path: &str) -> Result<(), CgroupError> {
        let mut dir = self.mount.clone();
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        // The task cgroup's own subtree too: its containers need the controllers.
        for i in 0..=parts.len() {
            if i > 0 {
                dir.push(parts[i - 1]);
                Self::mkdir(&dir)?;
            }
            let available = std::fs::read_to_string(dir.join("cgroup.controllers"))
                .map_err(|e| io_err(&dir.join("cgroup.controllers"), e))?;
            for c in ["cpu", "memory", "pids"] {
                if available.split_whitespace().any(|a| a == c) {
                    write(&dir.join("cgroup.subtree_control"), &format!("+{c}"))?;
                }
            }
        }
        Ok(())
    }
}

fn io_err(path: &Path, e: std::io::Error) -> CgroupError {
    CgroupError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

fn write(file: &Path, value: &str) -> Result<(), CgroupError> {
    std::fs::write(file, value).map_err(|e| io_err(file, e))
}

/// Removes `dir` after its sub-directories, deepest first (cgroup dirs go with rmdir only).
fn rmdir_tree(dir: &Path) -> Result<(), CgroupError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(dir, e)),
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            rmdir_tree(&entry.path())?;
        }
    }
    match std::fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(dir, e)),
    }
}

/// The value after `key` in a flat-keyed cgroup file ("oom_kill 1").
fn keyed_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

impl TaskCgroups for FsCgroups {
    fn create(&self, path: &str, limits: &TaskLimits) -> Result<(), CgroupError> {
        if self.v2 {
            self.enable_v2_controllers(path)?;
            let dir = self.dir(None, path);
            write(
                &dir.join("cpu.weight"),
                &cpu_weight(limits.cpu_shares).to_string(),
            )?;
            let quota = limits
                .cpu_quota_us
                .map_or("max".to_string(), |q| q.to_string());
            write(
                &dir.join("cpu.max"),
                &format!("{quota} {}", limits.cpu_period_us),
            )?;
            let mem = limits
                .memory_bytes
                .map_or("max".to_string(), |m| m.to_string());
            write(&dir.join("memory.max"), &mem)?;
            let pids = limits.pids_max.map_or("max".to_string(), |p| p.to_string());
            write(&dir.join("pids.max"), &pids)?;
            return Ok(());
        }
        for c in V1_CONTROLLERS {
            Self::mkdir(&self.dir(Some(c), path))?;
        }
        let cpu = self.dir(Some("cpu"), path);
        write(&cpu.join("cpu.shares"), &limits.cpu_shares.to_string())?;
        write(
            &cpu.join("cpu.cfs_period_us"),
            &limits.cpu_period_us.to_string(),
        )?;
        let quota = limits.cpu_quota_us.map_or(-1, |q| q as i64);
        write(&cpu.join("cpu.cfs_quota_us"), &quota.to_string())?;
        let mem = limits.memory_bytes.map_or(-1, |m| m as i64);
        write(
            &self.dir(Some("memory"), path).join("memory.limit_in_bytes"),
            &mem.to_string(),
        )?;
        let pids = limits.pids_max.map_or("max".to_string(), |p| p.to_string());
        write(&self.dir(Some("pids"), path).join("pids.max"), &pids)?;
        Ok(())
    }

    fn remove(&self, path: &str) -> Result<(), CgroupError> {
        if self.v2 {
            return rmdir_tree(&self.dir(None, path));
        }
        // runc created the task's directory in every v1 hierarchy it joined, not only ours.
        let hierarchies = std::fs::read_dir(&self.mount).map_err(|e| io_err(&self.mount, e))?;
        for h in hierarchies.flatten() {
            // cpu -> cpu,cpuacct: the real directory is visited under its own name.
            if h.file_type().is_ok_and(|t| t.is_dir()) {
                rmdir_tree(&h.path().join(path.trim_start_matches('/')))?;
            }
        }
        Ok(())
    }

    fn children(&self, root: &str) -> Vec<String> {
        // Every task cgroup has a directory in the memory hierarchy (v1) or the unified one.
        let dir = if self.v2 {
            self.dir(None, root)
        } else {
            self.mount.join("memory").join(root.trim_start_matches('/'))
        };
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()
    }

    fn usage(&self, path: &str) -> CgroupUsage {
        let read = |file: PathBuf| std::fs::read_to_string(file).ok();
        if self.v2 {
            let dir = self.dir(None, path);
            CgroupUsage {
                cpu_seconds: read(dir.join("cpu.stat"))
                    .and_then(|t| keyed_value(&t, "usage_usec"))
                    .map(|us| us as f64 / 1e6),
                memory_bytes: read(dir.join("memory.current")).and_then(|t| t.trim().parse().ok()),
            }
        } else {
            CgroupUsage {
                cpu_seconds: read(self.dir(Some("cpuacct"), path).join("cpuacct.usage"))
                    .and_then(|t| t.trim().parse::<u64>().ok())
                    .map(|ns| ns as f64 / 1e9),
                memory_bytes: read(self.dir(Some("memory"), path).join("memory.usage_in_bytes"))
                    .and_then(|t| t.trim().parse().ok()),
            }
        }
    }

    fn oom_killed(&self, path: &str) -> bool {
        let (file, key) = if self.v2 {
            (self.dir(None, path).join("memory.events"), "oom_kill")
        } else {
            (
                self.dir(Some("memory"), path).join("memory.oom_control"),
                "oom_kill",
            )
        };
        std::fs::read_to_string(file)
            .ok()
            .and_then(|t| keyed_value(&t, key))
            .is_some_and(|n| n > 0)
    }
}

/// Records calls; `oom` lists the paths `oom_killed` says yes to.
#[derive(Debug, Default)]
pub struct FakeCgroups {
    pub calls: Mutex<Vec<String>>,
    pub oom: Mutex<Vec<String>>,
}

impl FakeCgroups {
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl TaskCgroups for FakeCgroups {
    fn create(&self, path: &str, limits: &TaskLimits) -> Result<(), CgroupError> {
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(format!("create {path} {limits:?}"));
        Ok(())
    }

    fn remove(&self, path: &str) -> Result<(), CgroupError> {
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(format!("remove {path}"));
        Ok(())
    }

    fn oom_killed(&self, path: &str) -> bool {
        self.oom
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|p| p == path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ContainerSpec, NetworkMode};

    fn spec(task_cpu: u32, task_mem: u32, cpus: &[u32]) -> TaskSpec {
        TaskSpec {
            arn: "arn:aws:ecs:r:a:task/c/t1".into(),
            family: "f".into(),
            revision: 1,
            network_mode: NetworkMode::None,
            cpu: task_cpu,
            memory_mib: task_mem,
            containers: cpus
                .iter()
                .enumerate()
                .map(|(i, cpu)| ContainerSpec {
                    name: format!("c{i}"),
                    image: "i".into(),
                    essential: true,
                    entry_point: None,
                    command: None,
                    environment: vec![],
                    working_directory: None,
                    user: None,
                    cpu: *cpu,
                    memory_mib: 0,
                    memory_reservation_mib: 0,
                    stop_timeout_secs: 1,
                    extra: Default::default(),
                })
                .collect(),
            volumes: vec![],
            ingress: None,
        }
    }

    #[test]
    fn shares_are_clamped_as_ecs_does() {
        assert_eq!(cpu_shares(0), 2);
        assert_eq!(cpu_shares(1), 2);
        assert_eq!(cpu_shares(256), 256);
        assert_eq!(cpu_shares(1024), 1024);
        assert_eq!(cpu_shares(4096), 4096);
        assert_eq!(cpu_shares(300_000), 262_144);
    }

    #[test]
    fn weight_keeps_the_default_the_bounds_and_the_proportions() {
        assert_eq!(cpu_weight(2), 1);
        assert_eq!(cpu_weight(1024), 100);
        assert_eq!(cpu_weight(262_144), 10_000);
        assert_eq!(cpu_weight(256), 25);
        assert_eq!(cpu_weight(768), 75);
        assert_eq!(cpu_weight(4096), 400);
        // Monotonic over the whole range.
        let mut last = 0;
        for s in (2..=262_144).step_by(97) {
            let w = cpu_weight(s);
            assert!(w >= last, "{s}: {w} < {last}");
            last = w;
        }
    }

    #[test]
    fn task_limits_from_task_and_container_values() {
        let l = task_limits(&spec(0, 0, &[0, 256, 1024]), 100_000, None);
        assert_eq!(l.cpu_shares, 2 + 256 + 1024);
        assert_eq!((l.cpu_quota_us, l.memory_bytes), (None, None));
        let l = task_limits(&spec(512, 256, &[0]), 100_000, Some(100));
        assert_eq!(l.cpu_quota_us, Some(50_000));
        assert_eq!(l.memory_bytes, Some(256 * MIB));
        assert_eq!(l.pids_max, Some(100));
        let l = task_limits(&spec(1, 0, &[]), 100_000, None);
        assert_eq!(l.cpu_quota_us, Some(MIN_CPU_QUOTA_US));
        assert_eq!(l.cpu_shares, 2);
        assert_eq!(task_cgroup_path("/berth/", "t1"), "/berth/t1");
    }

    #[test]
    fn oom_kills_are_read_from_keyed_files() {
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n";
        assert_eq!(keyed_value(v1, "oom_kill"), Some(1));
        assert_eq!(
            keyed_value("low 0\noom 0\noom_kill 0\n", "oom_kill"),
            Some(0)
        );
        assert_eq!(keyed_value("", "oom_kill"), None);
    }

    #[test]
    fn v1_files_are_written_in_each_controller_and_removed() {
        let base = std::env::temp_dir().join(format!("berth-cg-{}", fastrand::u64(..)));
        for c in ["cpu", "memory", "pids", "freezer"] {
            std::fs::create_dir_all(base.join(c)).unwrap();
        }
        let cg = FsCgroups::new(&base);
        assert!(!cg.is_v2());
        let limits = task_limits(&spec(2048, 64, &[0]), 100_000, Some(50));
        cg.create("/berth/t1", &limits).unwrap();
        let read = |p: &str| std::fs::read_to_string(base.join(p)).unwrap();
        assert_eq!(read("cpu/berth/t1/cpu.cfs_quota_us"), "200000");
        assert_eq!(read("cpu/berth/t1/cpu.shares"), "2");
        assert_eq!(read("memory/berth/t1/memory.limit_in_bytes"), "67108864");
        assert_eq!(read("pids/berth/t1/pids.max"), "50");
        // runc's container dirs, in a controller we never wrote.
        std::fs::create_dir_all(base.join("freezer/berth/t1/c")).unwrap();
        std::fs::remove_file(base.join("cpu/berth/t1/cpu.shares")).unwrap();
        std::fs::remove_file(base.join("cpu/berth/t1/cpu.cfs_quota_us")).unwrap();
        std::fs::remove_file(base.join("cpu/berth/t1/cpu.cfs_period_us")).unwrap();
        std::fs::remove_file(base.join("memory/berth/t1/memory.limit_in_bytes")).unwrap();
        std::fs::remove_file(base.join("pids/berth/t1/pids.max")).unwrap();
        cg.remove("/berth/t1").unwrap();
        for c in ["cpu", "memory", "pids", "freezer"] {
            assert!(!base.join(c).join("berth/t1").exists(), "{c}");
            assert!(base.join(c).join("berth").exists(), "the root stays");
        }
        cg.remove("/berth/t1").unwrap();
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn v2_delegates_controllers_and_writes_the_unified_files() {
        let base = std::env::temp_dir().join(format!("berth-cg2-{}", fastrand::u64(..)));
        for dir in ["", "berth", "berth/t1"] {
            std::fs::create_dir_all(base.join(dir)).unwrap();
            std::fs::write(
                base.join(dir).join("cgroup.controllers"),
                "cpuset cpu io memory pids\n",
            )
            .unwrap();
        }
        let cg = FsCgroups::new(&base);
        assert!(cg.is_v2());
        let mut limits = task_limits(&spec(512, 64, &[1024]), 100_000, None);
        cg.create("/berth/t1", &limits).unwrap();
        let read = |p: &str| std::fs::read_to_string(base.join(p)).unwrap();
        // A plain file keeps the last write; cgroupfs adds each controller.
        assert_eq!(read("cgroup.subtree_control"), "+pids");
        assert_eq!(read("berth/t1/cgroup.subtree_control"), "+pids");
        assert_eq!(read("berth/t1/cpu.weight"), "100");
        assert_eq!(read("berth/t1/cpu.max"), "50000 100000");
        assert_eq!(read("berth/t1/memory.max"), "67108864");
        assert_eq!(read("berth/t1/pids.max"), "max");
        limits.cpu_quota_us = None;
        limits.memory_bytes = None;
        cg.create("/berth/t1", &limits).unwrap();
        assert_eq!(read("berth/t1/cpu.max"), "max 100000");
        assert_eq!(read("berth/t1/memory.max"), "max");
        std::fs::write(base.join("berth/t1/memory.events"), "oom 1\noom_kill 1\n").unwrap();
        assert!(cg.oom_killed("/berth/t1"));
        assert!(!cg.oom_killed("/berth/other"));
        std::fs::remove_dir_all(&base).unwrap();
    }
}
