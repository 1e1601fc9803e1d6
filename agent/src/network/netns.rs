//! Named network namespaces, kept the way `ip netns` keeps them: a namespace is alive as long as
//! it is bind-mounted on a file under the netns directory, so it outlives the agent and every
//! process in it, and runc joins it by that path.
//!
//! Namespace switches happen on a dedicated, short-lived std thread and never on a tokio worker:
//! `unshare` and `setns` change the calling thread only, and a runtime thread left in a task's
//! namespace would carry every later socket it opens into that namespace. Nothing forks either
//! (the agent is multi-threaded). Results come back through a oneshot channel, so runtime threads
//! are never blocked on the helper thread.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::statfs::{statfs, NSFS_MAGIC};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::proto::Connection;
use rtnetlink::Handle;

use super::NetworkError;

/// How long a namespace operation may take before the caller gives up on it.
pub const NETNS_TIMEOUT: Duration = Duration::from_secs(10);

/// The calling thread's network namespace, as the kernel shows it (not `/proc/self`, which is the
/// main thread's).
const THREAD_NETNS: &str = "/proc/thread-self/ns/net";

fn err(name: &str, message: impl Into<String>) -> NetworkError {
    NetworkError::Netns {
        name: name.to_string(),
        message: message.into(),
    }
}

/// Rejects names that would escape the netns directory.
fn check_name(name: &str) -> Result<(), NetworkError> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || name.contains('\0') {
        return Err(err(name, "not a valid namespace name"));
    }
    Ok(())
}

/// Runs `f` on a new std thread and waits for its result without blocking the runtime.
async fn on_thread<T, F>(name: &str, what: &str, f: F) -> Result<T, NetworkError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, String> + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("berth-netns".into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .map_err(|e| err(name, format!("{what}: cannot start a thread: {e}")))?;
    match tokio::time::timeout(NETNS_TIMEOUT, rx).await {
        Ok(Ok(result)) => result.map_err(|m| err(name, format!("{what}: {m}"))),
        Ok(Err(_)) => Err(err(name, format!("{what}: the helper thread ended early"))),
        Err(_) => Err(err(
            name,
            format!("{what}: timed out after {NETNS_TIMEOUT:?}"),
        )),
    }
}

/// Whether `path` is a bind mount of a namespace (and not, say, an empty file a crash left).
pub fn is_mounted(path: &Path) -> bool {
    statfs(path).is_ok_and(|s| s.filesystem_type() == NSFS_MAGIC)
}

/// Makes `dir` a shared mount point, bind-mounting it on itself first if it is not a mount point
/// yet, as iproute2 does: namespace mounts made below it then propagate to mount namespaces
/// that were copied from ours (a runc container's, a systemd unit's with private /run).
fn make_shared(dir: &Path) -> Result<(), String> {
    let shared = || {
        mount(
            None::<&str>,
            dir,
            None::<&str>,
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    match shared() {
        Ok(()) => Ok(()),
        // EINVAL: not a mount point.
        Err(Errno::EINVAL) => {
            mount(
                Some(dir),
                dir,
                None::<&str>,
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )
            .map_err(|e| format!("bind-mount {} on itself: {e}", dir.display()))?;
            shared().map_err(|e| format!("make {} a shared mount: {e}", dir.display()))
        }
        Err(e) => Err(format!("make {} a shared mount: {e}", dir.display())),
    }
}

/// Creates the namespace `dir/name` and returns its path. An existing namespace is kept; a file
/// left unmounted (a crash between creating and mounting it) gets a new namespace.
pub async fn create(dir: &Path, name: &str) -> Result<PathBuf, NetworkError> {
    check_name(name)?;
    let path = dir.join(name);
    if is_mounted(&path) {
        return Ok(path);
    }
    let (dir, target) = (dir.to_path_buf(), path.clone());
    on_thread(name, "create", move || {
        fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        make_shared(&dir)?;
        if is_mounted(&target) {
            return Ok(());
        }
        fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&target)
            .map_err(|e| format!("create {}: {e}", target.display()))?;
        // This thread only: it exits right after, and the mount keeps the namespace alive.
        unshare(CloneFlags::CLONE_NEWNET).map_err(|e| format!("unshare: {e}"))?;
        mount(
            Some(THREAD_NETNS),
            &target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| {
            let _ = fs::remove_file(&target);
            format!("bind-mount on {}: {e}", target.display())
        })
    })
    .await?;
    Ok(path)
}

/// Unmounts and removes `dir/name`; a namespace that is not there is not an error. Processes
/// still inside keep the namespace alive until they exit; it is only no longer reachable by name.
pub async fn delete(dir: &Path, name: &str) -> Result<(), NetworkError> {
    check_name(name)?;
    let path = dir.join(name);
    on_thread(name, "delete", move || {
        // A crash part-way may have stacked mounts: unmount until nothing is mounted there.
        for _ in 0..8 {
            match umount2(&path, MntFlags::MNT_DETACH) {
                Ok(()) => continue,
                Err(Errno::EINVAL) | Err(Errno::ENOENT) => break,
                Err(e) => return Err(format!("unmount {}: {e}", path.display())),
            }
        }
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("remove {}: {e}", path.display())),
        }
    })
    .await
}

/// The names of the files in `dir` (every namespace there, the agent's or not); a missing
/// directory has none.
pub fn list(dir: &Path) -> Result<Vec<String>, NetworkError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(NetworkError::Io(format!("list {}: {e}", dir.display()))),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| NetworkError::Io(format!("list {}: {e}", dir.display())))?;
        if let Some(name) = entry.file_name().to_str() {
            names.push(name.to_string());
        }
    }
    names.sort();
    Ok(names)
}

/// Opens a namespace file, for handing its fd to the kernel (moving a link into it).
pub fn open(path: &Path) -> Result<fs::File, NetworkError> {
    let name = path.display().to_string();
    if !is_mounted(path) {
        return Err(err(&name, "not a mounted network namespace"));
    }
    fs::File::open(path).map_err(|e| err(&name, format!("open: {e}")))
}

/// An rtnetlink connection whose socket lives in the namespace at `path`: a netlink socket
/// belongs to the namespace it was created in, whichever thread later uses it. The caller spawns
/// the connection on tokio (it must be called inside a runtime, which registers the socket).
pub async fn netlink_in(
    path: &Path,
) -> Result<(Connection<RouteNetlinkMessage>, Handle), NetworkError> {
    let name = path.display().to_string();
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|e| err(&name, format!("netlink: no tokio runtime: {e}")))?;
    let path = path.to_path_buf();
    on_thread(&name, "netlink", move || {
        let ns = fs::File::open(&path).map_err(|e| format!("open: {e}"))?;
        if !is_mounted(&path) {
            return Err("not a mounted network namespace".to_string());
        }
        setns(&ns, CloneFlags::CLONE_NEWNET).map_err(|e| format!("setns: {e}"))?;
        let _runtime = runtime.enter();
        let (conn, handle, _) =
            rtnetlink::new_connection().map_err(|e| format!("netlink socket: {e}"))?;
        Ok((conn, handle))
    })
    .await
}
