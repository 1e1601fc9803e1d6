//! CPU time of host processes from /proc, for the benchmarks: utime + stime of a process (and
//! of its waited-for children), and finding processes by name and command line.

use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context, Result};

/// CPU time of one process, in clock ticks (see [`clock_ticks_per_sec`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTicks {
    /// utime + stime: the process's own threads.
    pub own: u64,
    /// cutime + cstime: children it has waited for.
    pub children: u64,
}

impl CpuTicks {
    /// The time spent between `earlier` and `self` (saturating: a counter never goes back).
    pub fn since(self, earlier: CpuTicks) -> CpuTicks {
        CpuTicks {
            own: self.own.saturating_sub(earlier.own),
            children: self.children.saturating_sub(earlier.children),
        }
    }

    pub fn plus(self, other: CpuTicks) -> CpuTicks {
        CpuTicks {
            own: self.own + other.own,
            children: self.children + other.children,
        }
    }
}

/// Reads utime, stime, cutime and cstime from /proc/PID/stat.
pub fn cpu_ticks(pid: u32) -> Result<CpuTicks> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // The command name (field 2) is in parentheses and may contain anything: count fields
    // after its closing parenthesis. Field 3 (state) is the first one after it.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .with_context(|| format!("{path}: no ')' in {stat:?}"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> Result<u64> {
        fields
            .get(n - 3)
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("{path}: no field {n} in {stat:?}"))
    };
    Ok(CpuTicks {
        own: field(14)? + field(15)?,
        children: field(16)? + field(17)?,
    })
}

/// The kernel's USER_HZ, the unit of /proc/PID/stat times (`getconf CLK_TCK`; 100 if that
/// cannot be run, which is what Linux uses on every common architecture).
pub fn clock_ticks_per_sec() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .filter(|t| *t > 0)
            .unwrap_or(100)
    })
}

/// The command line of a process, arguments separated by spaces ("" once it is gone).
pub fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            String::from_utf8_lossy(&b)
                .split('\0')
                .filter(|a| !a.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// The short name of a process (/proc/PID/comm, at most 15 bytes).
pub fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// The processes for which `matches(comm, cmdline)` holds.
pub fn find_processes(matches: impl Fn(&str, &str) -> bool) -> Vec<u32> {
    let mut pids: Vec<u32> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|pid| matches(&comm(*pid), &cmdline(*pid)))
        .collect();
    pids.sort_unstable();
    pids
}
