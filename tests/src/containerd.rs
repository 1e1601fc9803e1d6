//! The host's containerd, driven through `ctr`: preflight checks, importing the test image into
//! a test's namespace, inspecting it, and removing the namespace with everything in it.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::bins::workspace_root;

/// The image every test task uses; see tests/images/build-busybox-image.sh.
pub const TEST_IMAGE: &str = "docker.io/berth/busybox:test";

/// Runs `ctr -n NAMESPACE ARGS...` and returns its stdout; a failure carries ctr's stderr.
/// ctr honours CONTAINERD_ADDRESS, as the harness does for the agent's socket.
pub fn ctr(namespace: &str, args: &[&str]) -> Result<String> {
    let out = Command::new("ctr")
        .arg("-n")
        .arg(namespace)
        .args(args)
        .output()
        .context("cannot run ctr (apt-get install containerd)")?;
    if !out.status.success() {
        bail!(
            "`ctr -n {namespace} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// How long one `ctr -a` call may take before it is killed: a frozen or wedged containerd
/// must fail a test (or a clean-up step), not hang it.
pub const CTR_AT_LIMIT: Duration = Duration::from_secs(60);

/// Runs `ctr -a ADDRESS -n NAMESPACE ARGS...` (the containerd listening on `address`) and
/// returns its stdout; a failure carries ctr's stderr. Killed after [`CTR_AT_LIMIT`].
pub fn ctr_at(address: &str, namespace: &str, args: &[&str]) -> Result<String> {
    ctr_at_within(address, namespace, args, CTR_AT_LIMIT)
}

/// [`ctr_at`], killed after `limit` (whole seconds, at least one).
pub fn ctr_at_within(
    address: &str,
    namespace: &str,
    args: &[&str],
    limit: Duration,
) -> Result<String> {
    let secs = limit.as_secs().max(1).to_string();
    let out = Command::new("timeout")
        .args(["-s", "KILL", &secs, "ctr", "-a", address, "-n", namespace])
        .args(args)
        .env_remove("CONTAINERD_ADDRESS")
        .env_remove("CONTAINERD_NAMESPACE")
        .output()
        .context("cannot run timeout ctr (apt-get install containerd coreutils)")?;
    if !out.status.success() {
        let killed = if out.status.code() == Some(137) {
            format!(" (killed after {secs}s)")
        } else {
            String::new()
        };
        bail!(
            "`ctr -a {address} -n {namespace} {}` failed ({}){killed}: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The containerd socket the agents are pointed at.
pub fn socket() -> String {
    std::env::var("CONTAINERD_ADDRESS")
        .unwrap_or_else(|_| "/run/containerd/containerd.sock".to_owned())
}

/// Fails clearly, once per test process, when containerd cannot be reached.
pub fn preflight() -> Result<()> {
    static CHECKED: OnceLock<Result<(), String>> = OnceLock::new();
    CHECKED
        .get_or_init(|| {
            ctr("default", &["version"]).map(drop).map_err(|e| {
                format!(
                    "containerd is not reachable at {} - the end-to-end tests need root and a \
                     running containerd (.ci/run sets them up): {e:#}",
                    socket()
                )
            })
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

/// The OCI archive of the test image, built by the script when it is missing.
pub fn image_archive() -> Result<PathBuf> {
    static ARCHIVE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    ARCHIVE
        .get_or_init(|| {
            let dir = workspace_root().join("tests/images/out");
            let archive = dir.join("busybox.tar");
            if archive.is_file() {
                return Ok(archive);
            }
            let script = workspace_root().join("tests/images/build-busybox-image.sh");
            let out = Command::new("bash")
                .arg(&script)
                .arg(&dir)
                .output()
                .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
            if !out.status.success() || !archive.is_file() {
                return Err(format!(
                    "{} {} failed ({}), so there is no test image:\n{}",
                    script.display(),
                    dir.display(),
                    out.status,
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            Ok(archive)
        })
        .clone()
        .map_err(anyhow::Error::msg)
}

/// Imports the test image into `namespace` and checks that containerd lists it.
pub fn import_test_image(namespace: &str) -> Result<()> {
    preflight()?;
    let archive = image_archive()?;
    let archive = archive.to_str().context("the image path is not UTF-8")?;
    ctr(namespace, &["images", "import", archive])?;
    let images = ctr(namespace, &["images", "ls", "-q"])?;
    if !images.lines().any(|l| l.trim() == TEST_IMAGE) {
        bail!("{TEST_IMAGE} is not in namespace {namespace} after the import: {images:?}");
    }
    Ok(())
}

/// [`import_test_image`] into the containerd listening on `address` (a private one, say).
pub fn import_test_image_at(address: &str, namespace: &str) -> Result<()> {
    let archive = image_archive()?;
    let archive = archive.to_str().context("the image path is not UTF-8")?;
    ctr_at(address, namespace, &["images", "import", archive])?;
    let images = ctr_at(address, namespace, &["images", "ls", "-q"])?;
    if !images.lines().any(|l| l.trim() == TEST_IMAGE) {
        bail!(
            "{TEST_IMAGE} is not in namespace {namespace} of {address} after the import: \
             {images:?}"
        );
    }
    Ok(())
}

/// One row of `ctr tasks ls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtrTask {
    pub id: String,
    pub pid: u32,
    /// RUNNING, STOPPED, CREATED, PAUSED, ...
    pub status: String,
}

/// The tasks (`ctr tasks ls`) of `namespace` in the containerd listening on `address`.
pub fn tasks_at(address: &str, namespace: &str) -> Result<Vec<CtrTask>> {
    Ok(parse_tasks(&ctr_at(address, namespace, &["tasks", "ls"])?))
}

fn parse_tasks(table: &str) -> Vec<CtrTask> {
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut cols = l.split_whitespace();
            Some(CtrTask {
                id: cols.next()?.to_owned(),
                pid: cols.next()?.parse().ok()?,
                status: cols.next()?.to_owned(),
            })
        })
        .collect()
}

/// [`task_main_pid`] in the containerd listening on `address`.
pub fn task_main_pid_at(address: &str, namespace: &str, id: &str) -> Result<Option<u32>> {
    Ok(tasks_at(address, namespace)?
        .into_iter()
        .find(|t| t.id == id)
        .map(|t| t.pid))
}

/// [`containers`] in the containerd listening on `address`.
pub fn containers_at(address: &str, namespace: &str) -> Result<Vec<String>> {
    Ok(lines(&ctr_at(
        address,
        namespace,
        &["containers", "ls", "-q"],
    )?))
}

/// The namespaces of the containerd listening on `address`.
pub fn namespaces_at(address: &str) -> Result<Vec<String>> {
    Ok(lines(&ctr_at(
        address,
        "default",
        &["namespaces", "ls", "-q"],
    )?))
}

/// The pids of every process in container `id`'s task (`ctr task ps`): the main process and
/// any exec'd ones.
pub fn task_pids(namespace: &str, id: &str) -> Result<Vec<u32>> {
    Ok(first_column_pids(&ctr(namespace, &["tasks", "ps", id])?))
}

/// The pid of container `id`'s main process (`ctr task ls`), if it has a task.
pub fn task_main_pid(namespace: &str, id: &str) -> Result<Option<u32>> {
    let out = ctr(namespace, &["tasks", "ls"])?;
    Ok(out.lines().skip(1).find_map(|l| {
        let mut cols = l.split_whitespace();
        (cols.next() == Some(id))
            .then(|| cols.next()?.parse().ok())
            .flatten()
    }))
}

/// The numbers in the first column of a table ctr printed (its header has none).
fn first_column_pids(table: &str) -> Vec<u32> {
    table
        .lines()
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

/// The ids of the containers in `namespace`.
pub fn containers(namespace: &str) -> Result<Vec<String>> {
    Ok(lines(&ctr(namespace, &["containers", "ls", "-q"])?))
}

fn lines(s: &str) -> Vec<String> {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

fn namespace_exists(namespace: &str) -> Result<bool> {
    Ok(lines(&ctr("default", &["namespaces", "ls", "-q"])?)
        .iter()
        .any(|n| n == namespace))
}

/// Removes everything in `namespace` and then the namespace itself: tasks (killed), containers,
/// images, leftover snapshots and content. containerd's garbage collector removes some of these
/// asynchronously, so the whole sweep repeats until the namespace is gone or `limit` has passed.
pub fn purge_namespace(namespace: &str, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if !namespace_exists(namespace)? {
            return Ok(());
        }
        sweep(namespace, &|ns, args| ctr(ns, args));
        match ctr("default", &["namespaces", "rm", namespace]) {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= deadline => {
                return Err(e.context(format!("namespace {namespace} is not empty")))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(300)),
        }
    }
}

/// [`purge_namespace`] in the containerd listening on `address`.
pub fn purge_namespace_at(address: &str, namespace: &str, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if !namespaces_at(address)?.iter().any(|n| n == namespace) {
            return Ok(());
        }
        sweep(namespace, &|ns, args| ctr_at(address, ns, args));
        match ctr_at(address, "default", &["namespaces", "rm", namespace]) {
            Ok(_) => return Ok(()),
            Err(e) if Instant::now() >= deadline => {
                return Err(e.context(format!("namespace {namespace} is not empty")))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(300)),
        }
    }
}

/// One best-effort pass over a namespace; errors are expected (things vanish while we look).
/// `ctr` runs one ctr command against the containerd being swept.
fn sweep(ns: &str, ctr: &dyn Fn(&str, &[&str]) -> Result<String>) {
    let tasks = ctr(ns, &["tasks", "ls", "-q"])
        .map(|s| lines(&s))
        .unwrap_or_default();
    for task in &tasks {
        let _ = ctr(ns, &["tasks", "kill", "-s", "KILL", task]);
    }
    for task in &tasks {
        let _ = ctr(ns, &["tasks", "rm", "-f", task]);
    }
    for container in ctr(ns, &["containers", "ls", "-q"])
        .map(|s| lines(&s))
        .unwrap_or_default()
    {
        let _ = ctr(ns, &["containers", "rm", &container]);
    }
    for image in ctr(ns, &["images", "ls", "-q"])
        .map(|s| lines(&s))
        .unwrap_or_default()
    {
        let _ = ctr(ns, &["images", "rm", "--sync", &image]);
    }
    // Snapshots form chains: removing a parent fails while it has children, so the snapshots
    // are removed newest first, and the next pass gets whatever is left.
    let snapshots = ctr(ns, &["snapshots", "ls"]).unwrap_or_default();
    let keys: Vec<&str> = snapshots
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    for key in keys.iter().rev() {
        let _ = ctr(ns, &["snapshots", "rm", key]);
    }
    for blob in ctr(ns, &["content", "ls", "-q"])
        .map(|s| lines(&s))
        .unwrap_or_default()
    {
        let _ = ctr(ns, &["content", "rm", &blob]);
    }
    for lease in ctr(ns, &["leases", "ls", "-q"])
        .map(|s| lines(&s))
        .unwrap_or_default()
    {
        let _ = ctr(ns, &["leases", "rm", &lease]);
    }
}
