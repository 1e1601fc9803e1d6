//! The logger mode of the berth-agent binary: what containerd's runc shim starts for a
//! `binary://` stdio URI, once per container.
//!
//! The shim's contract (containerd 1.6, `pkg/process/io.go` `NewBinaryIO` and
//! `runtime/v2/logging`): the container's stdout is fd 3, its stderr fd 4, and fd 5 is a "ready"
//! pipe the logger closes once it is set up (the shim waits for that before starting the
//! container). The URI's query parameters arrive as arguments, `key value` pairs in Go map
//! iteration order, i.e. in a random order; the environment holds only `CONTAINER_ID` and
//! `CONTAINER_NAMESPACE`. When the container's process is deleted the shim closes its ends of
//! the pipes and sends SIGTERM, killing us 12 s later: we ignore SIGTERM and exit at end of file
//! on both pipes, so nothing still in a pipe is lost.
//!
//! The logger belongs to the shim, not to the agent: the agent can restart at any time while it
//! keeps writing and rotating.

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::os::fd::{FromRawFd, RawFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use super::rotate::{Limits, Rotator};

/// The argument keys of the logger mode; `ARG_PATH` also marks an invocation as one.
pub const ARG_PATH: &str = "berth-log-path";
pub const ARG_MAX_SIZE: &str = "berth-log-max-size";
pub const ARG_MAX_FILES: &str = "berth-log-max-files";

const STDOUT_FD: RawFd = 3;
const STDERR_FD: RawFd = 4;
const READY_FD: RawFd = 5;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggerArgs {
    pub path: PathBuf,
    pub limits: Limits,
}

/// Whether the process was started by a shim as a logger: `ARG_PATH` in a key position.
pub fn is_logger_invocation(args: &[String]) -> bool {
    args.chunks(2).any(|kv| kv[0] == ARG_PATH)
}

/// Parses `key value` pairs in any order. Unknown keys are ignored (a newer agent may add some).
pub fn parse_args(args: &[String]) -> Result<LoggerArgs, String> {
    if !args.len().is_multiple_of(2) {
        return Err(format!("expected key value pairs, got {args:?}"));
    }
    let map: HashMap<&str, &str> = args
        .chunks(2)
        .map(|kv| (kv[0].as_str(), kv[1].as_str()))
        .collect();
    let path = map
        .get(ARG_PATH)
        .filter(|p| p.starts_with('/'))
        .ok_or_else(|| format!("{ARG_PATH}: an absolute path is required"))?;
    let number = |key: &str, default: u64| -> Result<u64, String> {
        match map.get(key) {
            None => Ok(default),
            Some(v) => v
                .parse::<u64>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("{key}: {v:?} is not a positive number")),
        }
    };
    let max_size_bytes = number(ARG_MAX_SIZE, super::DEFAULT_MAX_SIZE_MIB * 1024 * 1024)?;
    let max_files = number(ARG_MAX_FILES, u64::from(super::DEFAULT_MAX_FILES))?;
    Ok(LoggerArgs {
        path: PathBuf::from(path),
        limits: Limits {
            max_size_bytes,
            max_files: u32::try_from(max_files)
                .map_err(|_| format!("{ARG_MAX_FILES}: too large"))?,
        },
    })
}

fn fd_is_open(fd: RawFd) -> bool {
    nix::fcntl::fcntl(
        // SAFETY: the descriptor is only borrowed for this one fcntl call.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
        nix::fcntl::FcntlArg::F_GETFD,
    )
    .is_ok()
}

/// Takes ownership of an inherited descriptor, if it is open.
fn take_fd(fd: RawFd) -> Option<File> {
    // SAFETY: fds 3-5 are handed to us by the shim (exec.Cmd.ExtraFiles) and nothing else in
    // this process refers to them; we take each exactly once.
    fd_is_open(fd).then(|| unsafe { File::from_raw_fd(fd) })
}

/// Runs the logger until both streams end; returns the process exit code. Errors have nowhere
/// to go but the log itself (the shim gives us no stderr).
pub fn run(args: &[String]) -> i32 {
    let parsed = parse_args(args);
    // SAFETY: SIG_IGN installs no handler code; see the module comment for why.
    let _ = unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGTERM,
            nix::sys::signal::SigHandler::SigIgn,
        )
    };
    let ready = take_fd(READY_FD);
    let streams: Vec<File> = [STDOUT_FD, STDERR_FD]
        .into_iter()
        .filter_map(take_fd)
        .collect();
    let rotator = match parsed {
        Ok(a) => Rotator::open(&a.path, a.limits).map_err(|e| format!("{}: {e}", a.path.display())),
        Err(e) => Err(e),
    };
    // Ready either way: the shim must not hang on us.
    drop(ready);
    let rotator = match rotator {
        Ok(r) => Arc::new(Mutex::new(r)),
        Err(_) => {
            // Drain and discard, so the container never blocks on (or dies of) a dead pipe.
            let threads: Vec<_> = streams
                .into_iter()
                .map(|mut f| {
                    std::thread::spawn(move || std::io::copy(&mut f, &mut std::io::sink()))
                })
                .collect();
            for t in threads {
                let _ = t.join();
            }
            return 1;
        }
    };
    // One thread per stream: each read is written whole, so lines a program writes in one
    // write(2) (as line-buffered stdio does) are never interleaved with the other stream.
    let threads: Vec<_> = streams
        .into_iter()
        .map(|mut f| {
            let rotator = Arc::clone(&rotator);
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    match f.read(&mut buf) {
                        Ok(0) => return,
                        Ok(n) => {
                            let mut r = rotator.lock().unwrap_or_else(|e| e.into_inner());
                            // A full disk must not stop the container: keep draining.
                            let _ = r.write(&buf[..n]);
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(_) => return,
                    }
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn arguments_in_any_order() {
        let a = strings(&[
            ARG_MAX_FILES,
            "3",
            ARG_PATH,
            "/var/lib/berth/logs/t/web.log",
            ARG_MAX_SIZE,
            "1048576",
        ]);
        let b = strings(&[
            ARG_PATH,
            "/var/lib/berth/logs/t/web.log",
            ARG_MAX_SIZE,
            "1048576",
            ARG_MAX_FILES,
            "3",
        ]);
        let want = LoggerArgs {
            path: "/var/lib/berth/logs/t/web.log".into(),
            limits: Limits {
                max_size_bytes: 1048576,
                max_files: 3,
            },
        };
        assert!(is_logger_invocation(&a) && is_logger_invocation(&b));
        assert_eq!(parse_args(&a).unwrap(), want);
        assert_eq!(parse_args(&b).unwrap(), want);
    }

    #[test]
    fn defaults_unknown_keys_and_refusals() {
        let a = parse_args(&strings(&[ARG_PATH, "/l/x.log", "future-key", "v"])).unwrap();
        assert_eq!(a.limits.max_files, super::super::DEFAULT_MAX_FILES);
        assert!(parse_args(&strings(&[ARG_PATH])).is_err());
        assert!(parse_args(&strings(&[ARG_PATH, "relative.log"])).is_err());
        assert!(parse_args(&strings(&[ARG_PATH, "/l/x.log", ARG_MAX_FILES, "0"])).is_err());
        assert!(!is_logger_invocation(&strings(&["--config", ARG_PATH])));
        assert!(!is_logger_invocation(&strings(&[
            "--config",
            "/etc/berth/agent.toml"
        ])));
    }
}
