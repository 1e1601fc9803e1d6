//! Reading and removing the cgroups an agent made for a test: cgroup v2 when the unified
//! hierarchy is mounted at /sys/fs/cgroup itself, else v1 (one hierarchy per controller).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

const MOUNT: &str = "/sys/fs/cgroup";

pub fn is_v2() -> bool {
    Path::new(MOUNT).join("cgroup.controllers").exists()
}

/// The file of `controller` (v1; ignored on v2) at cgroup `path`.
pub fn cgroup_file(controller: &str, path: &str, file: &str) -> PathBuf {
    let rel = path.trim_start_matches('/');
    if is_v2() {
        Path::new(MOUNT).join(rel).join(file)
    } else {
        Path::new(MOUNT).join(controller).join(rel).join(file)
    }
}

/// The trimmed content of [`cgroup_file`].
pub fn read_cgroup(controller: &str, path: &str, file: &str) -> Result<String> {
    let p = cgroup_file(controller, path, file);
    Ok(std::fs::read_to_string(&p)
        .with_context(|| format!("reading {}", p.display()))?
        .trim()
        .to_owned())
}

/// Whether cgroup `path` exists in any hierarchy.
pub fn cgroup_exists(path: &str) -> bool {
    hierarchies()
        .iter()
        .any(|h| h.join(path.trim_start_matches('/')).exists())
}

fn hierarchies() -> Vec<PathBuf> {
    if is_v2() {
        return vec![PathBuf::from(MOUNT)];
    }
    std::fs::read_dir(MOUNT)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect()
}

/// Removes cgroup `path` and everything below it in every hierarchy (cgroups go with rmdir,
/// deepest first); a missing one is fine.
pub fn remove_cgroup_tree(path: &str) -> Result<()> {
    fn rm(dir: &Path) -> Result<()> {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Ok(());
        };
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                rm(&e.path())?;
            }
        }
        match std::fs::remove_dir(dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("removing {}", dir.display()))
            }
            _ => Ok(()),
        }
    }
    for h in hierarchies() {
        rm(&h.join(path.trim_start_matches('/')))?;
    }
    Ok(())
}

/// The CPU time cgroup `path` and its descendants used so far, in nanoseconds: v1
/// cpuacct.usage, v2 cpu.stat's usage_usec (there on every cgroup, cpu controller or not).
pub fn cpu_usage_ns(path: &str) -> Result<u64> {
    if is_v2() {
        let stat = read_cgroup("cpu", path, "cpu.stat")?;
        let usec = stat
            .lines()
            .find_map(|l| l.strip_prefix("usage_usec ")?.trim().parse::<u64>().ok())
            .with_context(|| format!("no usage_usec in {path}/cpu.stat: {stat:?}"))?;
        Ok(usec * 1000)
    } else {
        let usage = read_cgroup("cpuacct", path, "cpuacct.usage")?;
        usage
            .parse()
            .with_context(|| format!("{path}/cpuacct.usage: {usage:?}"))
    }
}

/// The thread ids in cgroup `path` itself (v1: the cpu hierarchy's `tasks`, v2:
/// `cgroup.threads`), not in its descendants.
pub fn cgroup_threads(path: &str) -> Result<Vec<i32>> {
    let file = if is_v2() { "cgroup.threads" } else { "tasks" };
    read_cgroup("cpu", path, file)?
        .lines()
        .map(|l| {
            l.trim()
                .parse()
                .with_context(|| format!("{path}/{file}: {l:?}"))
        })
        .collect()
}
