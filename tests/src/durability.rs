//! What the durability tests check after chaos: the control plane's record of every state
//! change it applied (`/berth/v1/tasks/<id>/events`), whether that record is complete and in
//! order, and everything an agent could leak on the host.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::containerd::ctr;
use crate::env::TestEnv;
use crate::net::http_get_async;
use crate::tasks::task_id;

/// The state changes berth-cp applied for `task`, in sequence order.
pub async fn task_events(env: &TestEnv, task: &str) -> Result<Vec<Value>> {
    let path = format!("/berth/v1/tasks/{}/events", task_id(task));
    let resp = http_get_async(env.cp_addrs().api, &path, Duration::from_secs(10)).await?;
    if resp.status != 200 {
        bail!("GET {path}: {} {}", resp.status, resp.body);
    }
    let body: Value =
        serde_json::from_str(&resp.body).with_context(|| format!("GET {path}: {}", resp.body))?;
    Ok(body["events"].as_array().cloned().unwrap_or_default())
}

fn rank(status: &str) -> Option<u8> {
    match status {
        "PROVISIONING" => Some(0),
        "PENDING" => Some(1),
        "PULLED" => Some(2),
        "CREATED" => Some(3),
        "ACTIVATING" => Some(4),
        "RUNNING" => Some(5),
        "DEACTIVATING" => Some(6),
        "STOPPING" => Some(7),
        "DEPROVISIONING" => Some(8),
        "STOPPED" => Some(9),
        _ => None,
    }
}

/// Checks one task's applied changes: sequence numbers strictly increase; for the task and for
/// each container, statuses only move forward and none is applied twice, except that a
/// container may be RUNNING again after a restart by its restart policy (a new restart count);
/// the task and every container in `containers` end STOPPED, exactly once. Returns the
/// containers' STOPPED events by name.
pub fn check_event_history(
    task: &str,
    events: &[Value],
    containers: &[&str],
) -> Result<std::collections::HashMap<String, Value>> {
    let mut last_seq = 0u64;
    let mut last_rank: std::collections::HashMap<String, (u8, i64)> = Default::default();
    let mut stopped: std::collections::HashMap<String, Value> = Default::default();
    for e in events {
        let seq = e["seq"]
            .as_u64()
            .with_context(|| format!("{task}: no seq in {e}"))?;
        if seq <= last_seq {
            bail!("{task}: sequence {seq} after {last_seq}: {events:?}");
        }
        last_seq = seq;
        let status = e["status"].as_str().unwrap_or_default();
        let r = rank(status).with_context(|| format!("{task}: unknown status in {e}"))?;
        let key = match e["kind"].as_str() {
            Some("task") => "<task>".to_owned(),
            Some("container") => e["container"].as_str().unwrap_or_default().to_owned(),
            _ => bail!("{task}: unknown kind in {e}"),
        };
        let restarts = e["restartCount"].as_i64().unwrap_or(0);
        if let Some(&(prev, prev_restarts)) = last_rank.get(&key) {
            let restarted = key != "<task>" && restarts > prev_restarts;
            if r <= prev && !restarted {
                bail!("{task}: {key} went to {status} after rank {prev} (applied twice or backwards): {events:?}");
            }
        }
        last_rank.insert(key.clone(), (r, restarts));
        if status == "STOPPED" {
            if stopped.contains_key(&key) {
                bail!("{task}: {key} STOPPED twice: {events:?}");
            }
            stopped.insert(key, e.clone());
        }
    }
    if !stopped.contains_key("<task>") {
        bail!("{task}: no task STOPPED change applied: {events:?}");
    }
    for c in containers {
        if !stopped.contains_key(*c) {
            bail!("{task}: no STOPPED change applied for container {c}: {events:?}");
        }
    }
    Ok(stopped)
}

/// Everything an agent of this env may have left on the host once its tasks are stopped and
/// cleaned up; empty when nothing is left. `task_ids` are the tasks that ran (for the
/// nftables check).
pub fn leftovers(env: &TestEnv, task_ids: &[String]) -> Result<Vec<String>> {
    let mut left = Vec::new();
    let containers = env.containerd_containers()?;
    if !containers.is_empty() {
        left.push(format!("containers {containers:?}"));
    }
    // Active snapshots are containers' root filesystems; committed ones are the image.
    let snapshots = ctr(&env.namespace, &["snapshots", "ls"])?;
    let active: Vec<&str> = snapshots
        .lines()
        .skip(1)
        .filter(|l| l.split_whitespace().nth(2) == Some("Active"))
        .collect();
    if !active.is_empty() {
        left.push(format!("active snapshots {active:?}"));
    }
    let leases = ctr(&env.namespace, &["leases", "ls", "-q"])?;
    let ours: Vec<&str> = leases
        .lines()
        .filter(|l| l.starts_with("berth-launch-"))
        .collect();
    if !ours.is_empty() {
        left.push(format!("launch leases {ours:?}"));
    }
    let shims = shims_of(&env.namespace);
    if !shims.is_empty() {
        left.push(format!("containerd shims {shims:?}"));
    }
    let net = env.network();
    let files = net.netns_files();
    if !files.is_empty() {
        left.push(format!("namespace files {files:?}"));
    }
    let mounts = net.netns_mounts();
    if !mounts.is_empty() {
        left.push(format!("namespace mounts {mounts:?}"));
    }
    let links = net.agent_links()?;
    if !links.is_empty() {
        left.push(format!("links {links:?}"));
    }
    if let Some(table) = net.nft_table_json()? {
        let named: Vec<&String> = task_ids.iter().filter(|id| table.contains(*id)).collect();
        if !named.is_empty() {
            left.push(format!("nftables rules naming tasks {named:?}"));
        }
    }
    let cgroups = task_cgroups(env.cgroup_root());
    if !cgroups.is_empty() {
        left.push(format!("task cgroups {cgroups:?}"));
    }
    let dir = env.dir().display().to_string();
    let mounted: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(str::to_owned))
        .filter(|m| m.starts_with(&dir))
        .collect();
    if !mounted.is_empty() {
        left.push(format!("mounts {mounted:?}"));
    }
    for sub in ["volumes", "logs", "health"] {
        let entries = dir_entries(&env.agent_data_dir(0).join(sub));
        if !entries.is_empty() {
            left.push(format!("{sub} {entries:?}"));
        }
    }
    Ok(left)
}

/// The pids of containerd shims serving `namespace` (a shim outliving its containers is a
/// leak: it holds memory and a socket).
fn shims_of(namespace: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let is_shim = args
            .first()
            .is_some_and(|a| a.ends_with(b"containerd-shim-runc-v2"));
        let ours = args
            .windows(2)
            .any(|w| w[0] == b"-namespace" && w[1] == namespace.as_bytes());
        if is_shim && ours {
            pids.push(pid);
        }
    }
    pids
}

/// The task cgroups below the env's cgroup root, in any hierarchy (v1 or v2).
fn task_cgroups(root: &str) -> Vec<String> {
    let root = root.trim_start_matches('/');
    let mut found = Vec::new();
    let base = Path::new("/sys/fs/cgroup");
    let mut candidates = vec![base.join(root)];
    for e in std::fs::read_dir(base).into_iter().flatten().flatten() {
        candidates.push(e.path().join(root));
    }
    for dir in candidates {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                found.push(e.path().display().to_string());
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

fn dir_entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}
