//! Facts about this host that the agent registers: resources and attributes. Reading them is
//! the only I/O here; the arithmetic is pure and tested.

use crate::config::Config;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub hostname: String,
    pub cpu_units: i64,
    pub memory_mib: i64,
    pub reserved_tcp_ports: Vec<u16>,
    pub reserved_udp_ports: Vec<u16>,
    pub attributes: Vec<(String, String)>,
}

/// MemTotal from /proc/meminfo, in MiB.
pub fn parse_mem_total_mib(meminfo: &str) -> Option<i64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

/// CPU = cores x 1024 units; MEMORY = MemTotal - reserve (never below zero).
pub fn registration(
    cfg: &Config,
    cores: i64,
    mem_total_mib: i64,
    hostname: String,
    attributes: Vec<(String, String)>,
) -> Registration {
    Registration {
        hostname,
        cpu_units: cores * 1024,
        memory_mib: (mem_total_mib - cfg.reserved_memory_mib as i64).max(0),
        reserved_tcp_ports: cfg.reserved_tcp_ports.clone(),
        reserved_udp_ports: cfg.reserved_udp_ports.clone(),
        attributes,
    }
}

/// `network_modes`: the modes this instance can run now (bridge and awsvpc need the host's
/// networking to have initialised).
pub fn read(cfg: &Config, containerd_version: &str, network_modes: &[&str]) -> Registration {
    let cores = nix::unistd::sysconf(nix::unistd::SysconfVar::_NPROCESSORS_ONLN)
        .ok()
        .flatten()
        .unwrap_or(1);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| parse_mem_total_mib(&m))
        .unwrap_or(0);
    let uname = nix::sys::utsname::uname().ok();
    let field = |f: fn(&nix::sys::utsname::UtsName) -> &std::ffi::OsStr| {
        uname
            .as_ref()
            .map(|u| f(u).to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let cgroup = if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "v2"
    } else {
        "v1"
    };
    let mut attributes: Vec<(String, String)> = vec![
        ("ecs.os-type".into(), "linux".into()),
        ("ecs.os-family".into(), "LINUX".into()),
        (
            "ecs.availability-zone".into(),
            cfg.instance.availability_zone.clone(),
        ),
        (
            "ecs.instance-type".into(),
            cfg.instance.instance_type.clone(),
        ),
        ("ecs.cpu-architecture".into(), field(|u| u.machine())),
        ("berth.kernel".into(), field(|u| u.release())),
        ("berth.containerd-version".into(), containerd_version.into()),
        ("berth.cgroup-version".into(), cgroup.into()),
        ("berth.network-modes".into(), network_modes.join(",")),
    ];
    attributes.extend(capabilities(network_modes));
    attributes.extend(cfg.instance.attributes.clone());
    registration(cfg, cores, mem, field(|u| u.nodename()), attributes)
}

/// The ECS capability attributes (name only, as ECS registers them) of what Berth does, so that
/// task definitions whose `requiresAttributes` name them are placed here.
fn capabilities(network_modes: &[&str]) -> Vec<(String, String)> {
    let mut names = vec![
        "ecs.capability.container-health-check",
        "ecs.capability.container-ordering",
        "ecs.capability.task-cpu-mem-limit",
        "ecs.capability.private-registry-authentication.secretsmanager",
        "ecs.capability.docker-plugin.local",
        "com.amazonaws.ecs.capability.privileged-container",
    ];
    if network_modes.contains(&"awsvpc") {
        names.push("ecs.capability.task-eni");
    }
    names
        .into_iter()
        .map(|n| (n.to_string(), String::new()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_and_cpu_arithmetic() {
        assert_eq!(
            parse_mem_total_mib("MemTotal:       24576000 kB\nMemFree: 1 kB\n"),
            Some(24000)
        );
        assert_eq!(parse_mem_total_mib("nothing"), None);
        let mut cfg = crate::config::load(None, &Default::default()).unwrap();
        cfg.reserved_memory_mib = 1000;
        let r = registration(&cfg, 2, 24000, "h".into(), vec![]);
        assert_eq!(r.cpu_units, 2048);
        assert_eq!(r.memory_mib, 23000);
        cfg.reserved_memory_mib = 50000;
        assert_eq!(
            registration(&cfg, 2, 24000, "h".into(), vec![]).memory_mib,
            0
        );
    }
}
