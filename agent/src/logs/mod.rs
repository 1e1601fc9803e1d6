//! Container logs: whatever `logConfiguration.logDriver` a definition names, stdout and stderr go
//! to the agent's local file `<data_dir>/logs/<task id>/<container>.log`, rotated by size.
//!
//! Writing never goes through the agent (invariant 1: tasks outlive it). Containers get a
//! `binary://` stdio URI that makes containerd's shim start a logger ([`logger`]), one per
//! container, owned by the shim: `berth-logger`, installed beside the agent (the same package
//! and version), a small binary with only the logger in it, so each container costs little
//! memory (BENCHMARKS.md). Without that file the agent's own executable serves, in its logger
//! mode. If neither can be found (or the agent was not set up with [`init_stdio`], as in
//! runtime tests), containers fall back to a plain `file://` URI: logs without rotation.
//!
//! Reading ([`reader`], [`serve`]) answers the control plane's LogRequests on the session.

pub mod logger;
pub mod reader;
pub mod rotate;
pub mod serve;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

pub const DEFAULT_MAX_SIZE_MIB: u64 = 10;
pub const DEFAULT_MAX_FILES: u32 = 5;

/// How containers' stdio is set up, chosen once at agent start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stdio {
    /// The shim starts `logger` (an absolute path) with these limits.
    Rotating {
        logger: PathBuf,
        limits: rotate::Limits,
    },
    /// The shim appends to the file itself: no rotation.
    File,
}

// Process-wide because it is a property of this agent installation, decided once in `main`; a
// global keeps it out of the runtime's configuration, which the runtime tests build without it.
static STDIO: OnceLock<Stdio> = OnceLock::new();

/// The logger's file name, looked for beside the agent's executable.
pub const LOGGER_BINARY: &str = "berth-logger";

/// Chooses how containers log, once, at agent start: rotating through `berth-logger` beside
/// the agent's executable, or the executable itself, else (with a warning) plain files.
pub fn init_stdio(max_size_mib: u64, max_files: u32) -> Stdio {
    let limits = rotate::Limits {
        max_size_bytes: max_size_mib.saturating_mul(1024 * 1024),
        max_files,
    };
    let stdio = match own_executable() {
        Ok(exe) => {
            let beside = exe.with_file_name(LOGGER_BINARY);
            let logger = if beside.is_file() { beside } else { exe };
            Stdio::Rotating { logger, limits }
        }
        Err(e) => {
            tracing::warn!(
                "container logs will not be rotated: cannot find the agent's own executable to use as the logger ({e})"
            );
            Stdio::File
        }
    };
    STDIO.get_or_init(|| stdio).clone()
}

/// The agent's executable, as a path the shim can exec later. After a package upgrade replaced
/// the file, Linux reports "<path> (deleted)": the new file at that path is the one to use.
fn own_executable() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let text = exe.to_string_lossy();
    let exe = match text.strip_suffix(" (deleted)") {
        Some(p) => PathBuf::from(p),
        None => exe.clone(),
    };
    if !exe.is_absolute() || !exe.is_file() {
        return Err(format!("{} is not a file", exe.display()));
    }
    Ok(exe)
}

/// The stdio URI (for both stdout and stderr) of a container logging to `log_path`.
pub fn stdio_uri(log_path: &Path) -> String {
    uri_for(STDIO.get().unwrap_or(&Stdio::File), log_path)
}

/// The pure part of [`stdio_uri`].
pub fn uri_for(stdio: &Stdio, log_path: &Path) -> String {
    match stdio {
        Stdio::File => format!("file://{}", log_path.display()),
        Stdio::Rotating { logger, limits } => format!(
            "binary://{}?{}={}&{}={}&{}={}",
            escape(&logger.to_string_lossy(), true),
            logger::ARG_PATH,
            escape(&log_path.to_string_lossy(), false),
            logger::ARG_MAX_SIZE,
            limits.max_size_bytes,
            logger::ARG_MAX_FILES,
            limits.max_files,
        ),
    }
}

/// Percent-encodes for Go's url.Parse: everything but unreserved characters (and '/' in a path).
fn escape(s: &str, path: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'_' | b'.' | b'~')
            || (path && b == b'/')
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Where a container's live log file is.
pub fn log_path(logs_dir: &Path, task_id: &str, container: &str) -> PathBuf {
    logs_dir.join(task_id).join(format!("{container}.log"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        let path = Path::new("/var/lib/berth/logs/abc/web.log");
        assert_eq!(
            uri_for(&Stdio::File, path),
            "file:///var/lib/berth/logs/abc/web.log"
        );
        let rotating = Stdio::Rotating {
            logger: "/usr/bin/berth agent".into(),
            limits: rotate::Limits {
                max_size_bytes: 1024,
                max_files: 3,
            },
        };
        assert_eq!(
            uri_for(&rotating, path),
            "binary:///usr/bin/berth%20agent?berth-log-path=%2Fvar%2Flib%2Fberth%2Flogs%2Fabc%2Fweb.log\
             &berth-log-max-size=1024&berth-log-max-files=3"
        );
    }
}
