//! Builds the OCI runtime spec of a container from its image config, its ECS container
//! definition and the host facts gathered for it (`facts`). Pure: the same inputs always give the
//! same spec, and it is unit tested without containerd.

use serde_json::{json, Value};

use super::image::ImageConfig;
use super::mounts::{MountSource, PlannedMount};
use super::rootfs::ProcessUser;
use super::{CreateRequest, RuntimeError};
use crate::cgroups;
use crate::model::{ContainerSpec, NetworkMode, Ulimit};

const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The capabilities Docker and containerd give a container by default.
const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Docker's semantics: an entryPoint replaces the image's Entrypoint *and* drops its Cmd; a
/// command replaces the Cmd.
pub fn process_args(req: &CreateRequest, image: &ImageConfig) -> Result<Vec<String>, RuntimeError> {
    let c = &req.container;
    let (entry, default_cmd) = match &c.entry_point {
        Some(ep) => (ep.clone(), Vec::new()),
        None => (image.entrypoint.clone(), image.cmd.clone()),
    };
    let cmd = c.command.clone().unwrap_or(default_cmd);
    let args: Vec<String> = entry.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(RuntimeError::InvalidSpec(format!(
            "container {}: no command: the image has no Entrypoint or Cmd and the definition sets neither entryPoint nor command",
            c.name
        )));
    }
    Ok(args)
}

/// The image's environment with the definition's variables laid over it, by name.
pub fn process_env(req: &CreateRequest, image: &ImageConfig) -> Vec<String> {
    let mut env: Vec<(String, String)> = image
        .env
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (kv.clone(), String::new()),
        })
        .collect();
    for (k, v) in &req.container.environment {
        match env.iter_mut().find(|(ek, _)| ek == k) {
            Some(slot) => slot.1 = v.clone(),
            None => env.push((k.clone(), v.clone())),
        }
    }
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.insert(0, ("PATH".into(), DEFAULT_PATH.into()));
    }
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// What the spec needs from the host and the image's files, gathered by `facts` (the I/O)
/// so that building the spec stays pure.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostFacts {
    pub user: ProcessUser,
    /// The definition's volumes and tmpfs mounts, checked and ready, parents first.
    pub mounts: Vec<PlannedMount>,
    pub devices: Vec<HostDevice>,
    /// The init binary on the host when initProcessEnabled is set.
    pub init_binary: Option<String>,
    pub cgroup: CgroupSupport,
    /// The capabilities the agent itself may hand out (its bounding set, bit n = capability n);
    /// `None` when unknown. "ALL" and privileged mean all of these: runc cannot grant more.
    pub cap_bounding: Option<u64>,
    /// The container's own resolv.conf, hosts and hostname files (bridge, awsvpc).
    pub name_files: Option<NameFiles>,
}

/// Files written for one container, bind-mounted over the image's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameFiles {
    pub resolv_conf: std::path::PathBuf,
    pub hosts: std::path::PathBuf,
    pub hostname: std::path::PathBuf,
}

/// A host device node, as `stat` saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostDevice {
    pub container_path: String,
    /// 'c' or 'b'.
    pub kind: char,
    pub major: i64,
    pub minor: i64,
    pub file_mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// cgroup device access: some of "rwm".
    pub access: String,
}

/// Memory controls the host's cgroups accept (runc fails a container that asks for more), and
/// whether they are v2 (the unified hierarchy), which decides how CPU shares are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CgroupSupport {
    pub swap: bool,
    pub swappiness: bool,
    pub v2: bool,
}

/// The spec and what was left out of it, for the log.
#[derive(Debug, Clone, PartialEq)]
pub struct BuiltSpec {
    pub spec: Value,
    pub warnings: Vec<String>,
}

/// Where initProcessEnabled's init is mounted in the container.
pub const INIT_PATH: &str = "/sbin/berth-init";

const MIB: u64 = 1024 * 1024;

pub fn build_spec(
    req: &CreateRequest,
    image: &ImageConfig,
    facts: &HostFacts,
) -> Result<BuiltSpec, RuntimeError> {
    let c = &req.container;
    let x = &c.extra;
    let mut warnings = Vec::new();
    let mut args = process_args(req, image)?;
    let env = process_env(req, image);
    let cwd = c
        .working_directory
        .clone()
        .filter(|w| !w.is_empty())
        .or_else(|| Some(image.working_dir.clone()).filter(|w| !w.is_empty()))
        .unwrap_or_else(|| "/".into());
    if !cwd.starts_with('/') {
        return Err(RuntimeError::InvalidSpec(format!(
            "workingDirectory {cwd:?} must be an absolute path"
        )));
    }

    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "mount"}),
    ];
    let mut mounts = default_mounts(x.linux.shared_memory_size_mib, x.privileged);
    let mut hostname = Value::Null;
    match req.network_mode {
        NetworkMode::Host => {
            // The host's network: share its name service files too, read-only.
            for f in ["/etc/hosts", "/etc/resolv.conf"] {
                mounts.push(json!({"destination": f, "type": "bind", "source": f,
                    "options": ["rbind", "ro", "nosuid", "nodev", "noexec"]}));
            }
            if let Some(h) = &x.hostname {
                // The host's UTS namespace is shared with its network: renaming would rename
                // the host. ECS refuses hostname in host mode; we run the task without it.
                warnings.push(format!(
                    "hostname {h:?} ignored: the host network mode keeps the host's name"
                ));
            }
        }
        NetworkMode::None => {
            // runc brings up loopback in a new network namespace and nothing else.
            namespaces.push(json!({"type": "network"}));
            namespaces.push(json!({"type": "uts"}));
            hostname = json!(container_hostname(req));
        }
        NetworkMode::Bridge | NetworkMode::Awsvpc => {
            // The task's namespace, made by the agent and shared by all its containers.
            let Some(path) = &req.netns_path else {
                return Err(RuntimeError::InvalidSpec(
                    "the task's network namespace is not set up".into(),
                ));
            };
            namespaces.push(json!({"type": "network", "path": path.display().to_string()}));
            namespaces.push(json!({"type": "uts"}));
            hostname = json!(container_hostname(req));
            if let Some(files) = &facts.name_files {
                for (dest, source) in [
                    ("/etc/resolv.conf", &files.resolv_conf),
                    ("/etc/hosts", &files.hosts),
                    ("/etc/hostname", &files.hostname),
                ] {
                    mounts.push(json!({"destination": dest, "type": "bind",
                        "source": source.display().to_string(),
                        "options": ["rbind", "rw", "nosuid", "nodev", "noexec"]}));
                }
            }
        }
    }
    for m in &facts.mounts {
        let (kind, source) = match &m.source {
            MountSource::Host(p) | MountSource::TaskVolume(p) => ("bind", p.display().to_string()),
            MountSource::Tmpfs => ("tmpfs", "tmpfs".to_string()),
        };
        mounts.push(
            json!({"destination": m.destination, "type": kind, "source": source,
            "options": m.options}),
        );
    }
    if x.linux.init_process_enabled {
        let Some(init) = &facts.init_binary else {
            return Err(RuntimeError::InvalidSpec(
                "initProcessEnabled: no init binary on this host".into(),
            ));
        };
        mounts.push(
            json!({"destination": INIT_PATH, "type": "bind", "source": init,
            "options": ["rbind", "ro"]}),
        );
        args.splice(0..0, [INIT_PATH.to_string(), "--".to_string()]);
    }

    let caps = capabilities(
        x.privileged,
        &x.linux.cap_add,
        &x.linux.cap_drop,
        facts.cap_bounding,
    )?;
    let rlimits = rlimits(&x.ulimits)?;
    let mut linux = json!({
        "namespaces": namespaces,
        "resources": {
            "devices": device_rules(x.privileged, &facts.devices),
        },
        "devices": facts.devices.iter().map(|d| json!({
            "path": d.container_path, "type": d.kind.to_string(), "major": d.major,
            "minor": d.minor, "fileMode": d.file_mode, "uid": d.uid, "gid": d.gid,
        })).collect::<Vec<_>>(),
    });
    if let Some(memory) = memory(c, facts.cgroup, &mut warnings) {
        linux["resources"]["memory"] = memory;
    }
    // ECS's cpu units as shares (0 and 1 become 2). On v2 we write cpu.weight ourselves with
    // our conversion (see `cgroups::cpu_weight`): runc 1.1 would convert the shares linearly.
    let shares = cgroups::cpu_shares(c.cpu);
    if facts.cgroup.v2 {
        linux["resources"]["unified"] =
            json!({"cpu.weight": cgroups::cpu_weight(shares).to_string()});
    } else {
        linux["resources"]["cpu"] = json!({"shares": shares});
    }
    // Below the task's cgroup, where runc creates it (cgroupfs driver: a path from the root).
    if let Some(parent) = &req.cgroup_parent {
        linux["cgroupsPath"] = json!(format!("{parent}/{}", req.runtime_id));
    }
    if !x.privileged {
        // A privileged container sees the host's /proc and /sys as they are.
        linux["maskedPaths"] = json!([
            "/proc/acpi",
            "/proc/asound",
            "/proc/kcore",
            "/proc/keys",
            "/proc/latency_stats",
            "/proc/timer_list",
            "/proc/timer_stats",
            "/proc/sched_debug",
            "/sys/firmware",
            "/proc/scsi",
        ]);
        linux["readonlyPaths"] = json!([
            "/proc/bus",
            "/proc/fs",
            "/proc/irq",
            "/proc/sys",
            "/proc/sysrq-trigger",
        ]);
    }
    let mut user = json!({"uid": facts.user.uid, "gid": facts.user.gid});
    if !facts.user.additional_gids.is_empty() {
        user["additionalGids"] = json!(facts.user.additional_gids);
    }

    let spec = json!({
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": false,
            "user": user,
            "args": args,
            "env": env,
            "cwd": cwd,
            "capabilities": {
                "bounding": caps, "effective": caps, "permitted": caps,
            },
            "rlimits": rlimits,
            // Privileged containers may use setuid binaries, as with Docker.
            "noNewPrivileges": !x.privileged,
        },
        "root": {"path": "rootfs", "readonly": x.readonly_root_filesystem},
        "hostname": hostname,
        "mounts": mounts,
        "linux": linux,
    });
    Ok(BuiltSpec { spec, warnings })
}

/// Every capability Linux 6.1 knows, in the kernel's order (index = capability number).
const ALL_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// ECS spells capabilities without the prefix ("NET_ADMIN"); "ALL" means every one.
fn cap_name(name: &str) -> Result<String, RuntimeError> {
    let upper = name.trim().to_ascii_uppercase();
    if upper == "ALL" {
        return Ok(upper);
    }
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    if ALL_CAPS.contains(&full.as_str()) {
        Ok(full)
    } else {
        Err(RuntimeError::InvalidSpec(format!(
            "linuxParameters.capabilities: unknown capability {name:?}"
        )))
    }
}

/// Docker's rules: add ALL gives everything but the drops; drop ALL keeps only the adds;
/// otherwise the defaults minus the drops plus the adds. "Everything" is what the host's
/// bounding set allows; an explicit add beyond it is refused with its name, rather than left
/// to runc's "operation not permitted".
pub fn capabilities(
    privileged: bool,
    add: &[String],
    drop: &[String],
    bounding: Option<u64>,
) -> Result<Vec<String>, RuntimeError> {
    let available = |c: &str| {
        let bit = ALL_CAPS.iter().position(|a| *a == c);
        match (bounding, bit) {
            (Some(mask), Some(bit)) => mask & (1 << bit) != 0,
            _ => true,
        }
    };
    let all_available = || {
        ALL_CAPS
            .iter()
            .filter(|c| available(c))
            .map(|c| c.to_string())
    };
    if privileged {
        return Ok(all_available().collect());
    }
    let add = add
        .iter()
        .map(|c| cap_name(c))
        .collect::<Result<Vec<_>, _>>()?;
    let drop = drop
        .iter()
        .map(|c| cap_name(c))
        .collect::<Result<Vec<_>, _>>()?;
    let all = "ALL".to_string();
    if let Some(missing) = add.iter().find(|c| **c != all && !available(c)) {
        return Err(RuntimeError::InvalidSpec(format!(
            "linuxParameters.capabilities: {missing} is not available on this host"
        )));
    }
    let mut caps: Vec<String> = if add.contains(&all) {
        all_available().filter(|c| !drop.contains(c)).collect()
    } else if drop.contains(&all) {
        add
    } else {
        DEFAULT_CAPS
            .iter()
            .map(|c| c.to_string())
            .filter(|c| !drop.contains(c))
            .chain(add)
            .collect()
    };
    let mut seen = std::collections::HashSet::new();
    caps.retain(|c| seen.insert(c.clone()));
    Ok(caps)
}

/// ECS ulimit names to RLIMIT_*; nofile keeps containerd's default of 1024 unless set.
pub fn rlimits(ulimits: &[Ulimit]) -> Result<Vec<Value>, RuntimeError> {
    let mut out = vec![("RLIMIT_NOFILE".to_string(), 1024_i64, 1024_i64)];
    for u in ulimits {
        let kind = match u.name.as_str() {
            "core" | "cpu" | "data" | "fsize" | "locks" | "memlock" | "msgqueue" | "nice"
            | "nofile" | "nproc" | "rss" | "rtprio" | "rttime" | "sigpending" | "stack" => {
                format!("RLIMIT_{}", u.name.to_ascii_uppercase())
            }
            other => {
                return Err(RuntimeError::InvalidSpec(format!(
                    "ulimits: unknown limit {other:?}"
                )))
            }
        };
        if u.soft < 0 || u.hard < u.soft {
            return Err(RuntimeError::InvalidSpec(format!(
                "ulimits: {}: softLimit {} must be between 0 and hardLimit {}",
                u.name, u.soft, u.hard
            )));
        }
        match out.iter_mut().find(|(k, _, _)| *k == kind) {
            Some(slot) => *slot = (kind, u.soft, u.hard),
            None => out.push((kind, u.soft, u.hard)),
        }
    }
    Ok(out
        .into_iter()
        .map(|(kind, soft, hard)| json!({"type": kind, "soft": soft, "hard": hard}))
        .collect())
}

/// Deny everything, then allow the definition's devices; runc adds the standard ones
/// (null, zero, tty, ...) itself. A privileged container may use every device.
fn device_rules(privileged: bool, devices: &[HostDevice]) -> Vec<Value> {
    if privileged {
        return vec![json!({"allow": true, "access": "rwm"})];
    }
    let mut rules = vec![json!({"allow": false, "access": "rwm"})];
    rules.extend(devices.iter().map(|d| {
        json!({"allow": true, "type": d.kind.to_string(), "major": d.major, "minor": d.minor,
            "access": d.access})
    }));
    rules
}

/// The container's hard and soft memory limits, swap and swappiness. Swap needs a hard limit
/// to add to, and both need the host's cgroups to have them: otherwise runc refuses the
/// container, so we leave them out and say so.
fn memory(c: &ContainerSpec, cgroup: CgroupSupport, warnings: &mut Vec<String>) -> Option<Value> {
    let mut m = serde_json::Map::new();
    if c.memory_mib > 0 {
        m.insert("limit".into(), json!(c.memory_mib as u64 * MIB));
    }
    if c.memory_reservation_mib > 0 {
        m.insert(
            "reservation".into(),
            json!(c.memory_reservation_mib as u64 * MIB),
        );
    }
    let linux = &c.extra.linux;
    if let Some(max_swap) = linux.max_swap_mib {
        if c.memory_mib == 0 {
            warnings.push("maxSwap ignored: it needs a hard memory limit (memory)".into());
        } else if !cgroup.swap {
            warnings.push("maxSwap ignored: this host's cgroups do not account swap".into());
        } else {
            let swap = (c.memory_mib as u64 + max_swap.max(0) as u64) * MIB;
            m.insert("swap".into(), json!(swap));
        }
    }
    if let Some(swappiness) = linux.swappiness {
        if cgroup.swappiness {
            m.insert("swappiness".into(), json!(swappiness.min(100)));
        } else {
            warnings
                .push("swappiness ignored: this host's cgroups have no memory.swappiness".into());
        }
    }
    (!m.is_empty()).then_some(Value::Object(m))
}

/// The container's hostname: its definition's, else one derived from the task id.
pub fn container_hostname(req: &CreateRequest) -> String {
    req.container
        .extra
        .hostname
        .clone()
        .unwrap_or_else(|| short_hostname(&req.task_id))
}

fn short_hostname(task_id: &str) -> String {
    let short: String = task_id.chars().take(12).collect();
    format!("berth-{short}")
}

/// containerd's default mounts for a Linux container, with /dev/shm sized by
/// sharedMemorySize and /sys writable for a privileged container.
fn default_mounts(shm_mib: Option<u32>, privileged: bool) -> Vec<Value> {
    let shm_size = match shm_mib {
        Some(mib) if mib > 0 => format!("size={mib}m"),
        _ => "size=65536k".to_string(),
    };
    let sys_mode = if privileged { "rw" } else { "ro" };
    vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc",
            "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", shm_size]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
            "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
            "options": ["nosuid", "noexec", "nodev", sys_mode]}),
        json!({"destination": "/run", "type": "tmpfs", "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ContainerSpec;

    fn req(
        entry: Option<Vec<&str>>,
        cmd: Option<Vec<&str>>,
        env: Vec<(&str, &str)>,
    ) -> CreateRequest {
        let strings = |v: Vec<&str>| v.into_iter().map(String::from).collect::<Vec<_>>();
        CreateRequest {
            runtime_id: "t-c".into(),
            task_arn: "arn".into(),
            task_id: "0123456789abcdef".into(),
            container: ContainerSpec {
                name: "c".into(),
                image: "img".into(),
                essential: true,
                entry_point: entry.map(strings),
                command: cmd.map(strings),
                environment: env
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                working_directory: None,
                user: None,
                cpu: 0,
                memory_mib: 0,
                memory_reservation_mib: 0,
                stop_timeout_secs: 30,
                extra: Default::default(),
            },
            network_mode: NetworkMode::None,
            netns_path: None,
            address: None,
            log_path: "/tmp/x.log".into(),
            task: crate::model::TaskSpec {
                arn: "arn".into(),
                family: "f".into(),
                revision: 1,
                network_mode: NetworkMode::None,
                cpu: 0,
                memory_mib: 0,
                containers: vec![],
                volumes: vec![],
                ingress: None,
            },
            task_volumes_dir: "/tmp/volumes".into(),
            cgroup_parent: None,
        }
    }

    fn image() -> ImageConfig {
        ImageConfig {
            entrypoint: vec!["/entry".into()],
            cmd: vec!["serve".into()],
            env: vec!["PATH=/bin".into(), "A=image".into()],
            working_dir: "/srv".into(),
            user: String::new(),
        }
    }

    #[test]
    fn args_follow_docker_semantics() {
        let img = image();
        assert_eq!(
            process_args(&req(None, None, vec![]), &img).unwrap(),
            ["/entry", "serve"]
        );
        assert_eq!(
            process_args(&req(None, Some(vec!["run"]), vec![]), &img).unwrap(),
            ["/entry", "run"]
        );
        assert_eq!(
            process_args(&req(Some(vec!["/other"]), None, vec![]), &img).unwrap(),
            ["/other"]
        );
        let empty = ImageConfig::default();
        assert!(process_args(&req(None, None, vec![]), &empty).is_err());
    }

    #[test]
    fn env_overrides_by_name_and_keeps_path() {
        let env = process_env(&req(None, None, vec![("A", "def"), ("B", "2")]), &image());
        assert_eq!(env, ["PATH=/bin", "A=def", "B=2"]);
        let env = process_env(&req(None, None, vec![]), &ImageConfig::default());
        assert!(env[0].starts_with("PATH=/usr/local/sbin"));
    }

    fn spec(r: &CreateRequest, facts: &HostFacts) -> Value {
        build_spec(r, &image(), facts).unwrap().spec
    }

    fn plain() -> CreateRequest {
        req(None, None, vec![])
    }

    #[test]
    fn network_modes_shape_namespaces_and_hostname() {
        let mut r = plain();
        let s = spec(&r, &HostFacts::default());
        let ns = s["linux"]["namespaces"].to_string();
        assert!(ns.contains("network") && ns.contains("uts"));
        assert_eq!(s["hostname"], "berth-0123456789ab");
        r.container.extra.hostname = Some("db-1".into());
        assert_eq!(spec(&r, &HostFacts::default())["hostname"], "db-1");
        r.network_mode = NetworkMode::Host;
        let built = build_spec(&r, &image(), &HostFacts::default()).unwrap();
        let ns = built.spec["linux"]["namespaces"].to_string();
        assert!(!ns.contains("network") && !ns.contains("uts"));
        assert!(built.spec["hostname"].is_null());
        assert!(built.warnings[0].contains("db-1"), "{:?}", built.warnings);
        assert!(built.spec["mounts"]
            .to_string()
            .contains("/etc/resolv.conf"));
        assert_eq!(built.spec["process"]["cwd"], "/srv");
    }

    #[test]
    fn user_and_additional_groups() {
        let facts = HostFacts {
            user: ProcessUser {
                uid: 1000,
                gid: 1000,
                additional_gids: vec![10, 29],
            },
            ..Default::default()
        };
        let s = spec(&plain(), &facts);
        assert_eq!(
            s["process"]["user"],
            json!({"uid": 1000, "gid": 1000, "additionalGids": [10, 29]})
        );
        let s = spec(&plain(), &HostFacts::default());
        assert_eq!(s["process"]["user"], json!({"uid": 0, "gid": 0}));
    }

    #[test]
    fn readonly_root_filesystem() {
        let mut r = plain();
        assert_eq!(spec(&r, &HostFacts::default())["root"]["readonly"], false);
        r.container.extra.readonly_root_filesystem = true;
        assert_eq!(spec(&r, &HostFacts::default())["root"]["readonly"], true);
    }

    #[test]
    fn ulimits_map_to_rlimits() {
        let ul = |name: &str, soft, hard| Ulimit {
            name: name.into(),
            soft,
            hard,
        };
        let got = rlimits(&[
            ul("nofile", 4096, 8192),
            ul("core", 0, 0),
            ul("rttime", 1, 2),
        ])
        .unwrap();
        assert_eq!(
            got,
            [
                json!({"type": "RLIMIT_NOFILE", "soft": 4096, "hard": 8192}),
                json!({"type": "RLIMIT_CORE", "soft": 0, "hard": 0}),
                json!({"type": "RLIMIT_RTTIME", "soft": 1, "hard": 2}),
            ]
        );
        assert_eq!(rlimits(&[]).unwrap().len(), 1, "nofile 1024 by default");
        let err = rlimits(&[ul("files", 1, 1)]).unwrap_err();
        assert!(err.to_string().contains("files"), "{err}");
        assert!(rlimits(&[ul("nproc", 5, 1)]).is_err());
    }

    #[test]
    fn capabilities_follow_docker() {
        let s = |v: &[&str]| v.iter().map(|c| c.to_string()).collect::<Vec<_>>();
        let caps = capabilities(
            false,
            &s(&["NET_ADMIN", "cap_sys_time"]),
            &s(&["CHOWN"]),
            None,
        )
        .unwrap();
        assert!(caps.contains(&"CAP_NET_ADMIN".into()));
        assert!(caps.contains(&"CAP_SYS_TIME".into()));
        assert!(!caps.contains(&"CAP_CHOWN".into()));
        assert!(caps.contains(&"CAP_KILL".into()));
        assert_eq!(
            capabilities(false, &s(&["NET_BIND_SERVICE"]), &s(&["ALL"]), None).unwrap(),
            ["CAP_NET_BIND_SERVICE"]
        );
        let all_but = capabilities(false, &s(&["ALL"]), &s(&["SYS_ADMIN"]), None).unwrap();
        assert_eq!(all_but.len(), ALL_CAPS.len() - 1);
        assert!(!all_but.contains(&"CAP_SYS_ADMIN".into()));
        assert!(capabilities(false, &s(&["WIZARDRY"]), &[], None).is_err());
        assert_eq!(
            capabilities(true, &[], &s(&["ALL"]), None).unwrap().len(),
            ALL_CAPS.len()
        );
        // The host's bounding set limits ALL and privileged, and refuses explicit adds.
        let no_sys_resource = Some(0x1fffeffffff_u64);
        let privileged = capabilities(true, &[], &[], no_sys_resource).unwrap();
        assert_eq!(privileged.len(), ALL_CAPS.len() - 1);
        assert!(!privileged.contains(&"CAP_SYS_RESOURCE".into()));
        let all = capabilities(false, &s(&["ALL"]), &[], no_sys_resource).unwrap();
        assert_eq!(all, privileged);
        let err = capabilities(false, &s(&["SYS_RESOURCE"]), &[], no_sys_resource).unwrap_err();
        assert!(err.to_string().contains("CAP_SYS_RESOURCE"), "{err}");
        // In the spec, all three sets carry them.
        let mut r = plain();
        r.container.extra.linux.cap_drop = s(&["ALL"]);
        let sp = spec(&r, &HostFacts::default());
        assert_eq!(sp["process"]["capabilities"]["bounding"], json!([]));
        assert_eq!(sp["process"]["capabilities"]["effective"], json!([]));
    }

    #[test]
    fn privileged_opens_everything() {
        let mut r = plain();
        let normal = spec(&r, &HostFacts::default());
        assert!(normal["linux"]["maskedPaths"].is_array());
        assert_eq!(normal["process"]["noNewPrivileges"], true);
        r.container.extra.privileged = true;
        let s = spec(&r, &HostFacts::default());
        assert!(s["linux"]["maskedPaths"].is_null());
        assert!(s["linux"]["readonlyPaths"].is_null());
        assert_eq!(
            s["linux"]["resources"]["devices"],
            json!([{"allow": true, "access": "rwm"}])
        );
        assert_eq!(
            s["process"]["capabilities"]["bounding"]
                .as_array()
                .unwrap()
                .len(),
            ALL_CAPS.len()
        );
        let sys = s["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/sys")
            .unwrap();
        assert!(sys["options"].to_string().contains("\"rw\""));
        assert_eq!(s["process"]["noNewPrivileges"], false);
    }

    #[test]
    fn init_process_is_mounted_and_prepended() {
        let mut r = req(None, Some(vec!["sleep", "1"]), vec![]);
        r.container.extra.linux.init_process_enabled = true;
        let err = build_spec(&r, &image(), &HostFacts::default()).unwrap_err();
        assert!(err.to_string().contains("init"), "{err}");
        let facts = HostFacts {
            init_binary: Some("/usr/bin/tini-static".into()),
            ..Default::default()
        };
        let s = spec(&r, &facts);
        assert_eq!(
            s["process"]["args"],
            json!(["/sbin/berth-init", "--", "/entry", "sleep", "1"])
        );
        let init = s["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == INIT_PATH)
            .unwrap();
        assert_eq!(init["source"], "/usr/bin/tini-static");
        assert_eq!(init["options"], json!(["rbind", "ro"]));
    }

    #[test]
    fn shared_memory_size_sets_dev_shm() {
        let mut r = plain();
        r.container.extra.linux.shared_memory_size_mib = Some(256);
        let s = spec(&r, &HostFacts::default());
        let shm = s["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/dev/shm")
            .unwrap()
            .clone();
        assert!(shm["options"].to_string().contains("size=256m"), "{shm}");
    }

    #[test]
    fn planned_mounts_follow_the_defaults_in_order() {
        let facts = HostFacts {
            mounts: vec![
                PlannedMount {
                    destination: "/data".into(),
                    source: MountSource::Host("/srv/data".into()),
                    options: vec!["rbind".into(), "ro".into()],
                },
                PlannedMount {
                    destination: "/data/tmp".into(),
                    source: MountSource::Tmpfs,
                    options: vec!["nosuid".into(), "size=8m".into()],
                },
            ],
            ..Default::default()
        };
        let s = spec(&plain(), &facts);
        let mounts = s["mounts"].as_array().unwrap();
        let n = mounts.len();
        assert_eq!(
            mounts[n - 2],
            json!({"destination": "/data", "type": "bind", "source": "/srv/data",
                "options": ["rbind", "ro"]})
        );
        assert_eq!(
            mounts[n - 1],
            json!({"destination": "/data/tmp", "type": "tmpfs", "source": "tmpfs",
                "options": ["nosuid", "size=8m"]})
        );
        assert_eq!(mounts[0]["destination"], "/proc");
    }

    #[test]
    fn devices_are_created_and_allowed() {
        let facts = HostFacts {
            devices: vec![HostDevice {
                container_path: "/dev/fuse".into(),
                kind: 'c',
                major: 10,
                minor: 229,
                file_mode: 0o666,
                uid: 0,
                gid: 0,
                access: "rw".into(),
            }],
            ..Default::default()
        };
        let s = spec(&plain(), &facts);
        assert_eq!(
            s["linux"]["devices"],
            json!([{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229,
                "fileMode": 0o666, "uid": 0, "gid": 0}])
        );
        assert_eq!(
            s["linux"]["resources"]["devices"],
            json!([{"allow": false, "access": "rwm"},
                {"allow": true, "type": "c", "major": 10, "minor": 229, "access": "rw"}])
        );
    }

    #[test]
    fn memory_swap_and_swappiness_where_supported() {
        let mut r = plain();
        assert!(spec(&r, &HostFacts::default())["linux"]["resources"]["memory"].is_null());
        r.container.memory_mib = 64;
        r.container.memory_reservation_mib = 32;
        r.container.extra.linux.max_swap_mib = Some(16);
        r.container.extra.linux.swappiness = Some(10);
        let full = HostFacts {
            cgroup: CgroupSupport {
                swap: true,
                swappiness: true,
                v2: false,
            },
            ..Default::default()
        };
        let built = build_spec(&r, &image(), &full).unwrap();
        assert_eq!(
            built.spec["linux"]["resources"]["memory"],
            json!({"limit": 64 * MIB, "reservation": 32 * MIB, "swap": 80 * MIB,
                "swappiness": 10})
        );
        assert!(built.warnings.is_empty());
        // No swap accounting: the limit stays, swap and swappiness go, with warnings.
        let built = build_spec(&r, &image(), &HostFacts::default()).unwrap();
        assert_eq!(
            built.spec["linux"]["resources"]["memory"],
            json!({"limit": 64 * MIB, "reservation": 32 * MIB})
        );
        assert_eq!(built.warnings.len(), 2, "{:?}", built.warnings);
        // maxSwap without a hard limit has nothing to add to.
        r.container.memory_mib = 0;
        let built = build_spec(&r, &image(), &full).unwrap();
        assert!(built.spec["linux"]["resources"]["memory"]["swap"].is_null());
        assert!(built.warnings[0].contains("maxSwap"));
    }

    #[test]
    fn cpu_shares_on_v1_weight_on_v2_and_the_task_cgroup() {
        let mut r = plain();
        let v2 = HostFacts {
            cgroup: CgroupSupport {
                v2: true,
                ..Default::default()
            },
            ..Default::default()
        };
        for (units, shares, weight) in [
            (0, 2, "1"),
            (1, 2, "1"),
            (256, 256, "25"),
            (1024, 1024, "100"),
            (4096, 4096, "400"),
        ] {
            r.container.cpu = units;
            let s = spec(&r, &HostFacts::default());
            assert_eq!(s["linux"]["resources"]["cpu"], json!({"shares": shares}));
            assert!(s["linux"]["resources"]["unified"].is_null());
            let s = spec(&r, &v2);
            assert_eq!(
                s["linux"]["resources"]["unified"],
                json!({"cpu.weight": weight})
            );
            assert!(s["linux"]["resources"]["cpu"].is_null());
        }
        assert!(spec(&r, &v2)["linux"]["cgroupsPath"].is_null());
        r.cgroup_parent = Some("/berth/0123456789abcdef".into());
        assert_eq!(
            spec(&r, &v2)["linux"]["cgroupsPath"],
            "/berth/0123456789abcdef/t-c"
        );
    }

    #[test]
    fn memory_only_reservation_only_and_both() {
        let mut r = plain();
        let mem = |r: &CreateRequest| {
            spec(r, &HostFacts::default())["linux"]["resources"]["memory"].clone()
        };
        r.container.memory_mib = 32;
        assert_eq!(mem(&r), json!({"limit": 32 * MIB}));
        r.container.memory_mib = 0;
        r.container.memory_reservation_mib = 16;
        assert_eq!(mem(&r), json!({"reservation": 16 * MIB}), "no hard limit");
        r.container.memory_mib = 64;
        assert_eq!(mem(&r), json!({"limit": 64 * MIB, "reservation": 16 * MIB}));
    }
}
