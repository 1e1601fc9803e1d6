//! Builds the OCI runtime spec of a container from its image config and its ECS container
//! definition. Pure: the same inputs always give the same spec, and it is unit tested without
//! containerd.

use serde_json::{json, Value};

use super::image::ImageConfig;
use super::{CreateRequest, RuntimeError};
use crate::model::NetworkMode;

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

/// `uid`, `uid:gid`, or empty for root. Names need the image's /etc/passwd and are refused here
/// with a clear reason rather than guessed.
pub fn process_user(user: Option<&str>, image_user: &str) -> Result<(u32, u32), RuntimeError> {
    let user = user.filter(|u| !u.is_empty()).unwrap_or(image_user);
    if user.is_empty() {
        return Ok((0, 0));
    }
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let parse = |s: &str| {
        s.parse::<u32>().map_err(|_| {
            RuntimeError::InvalidSpec(format!(
                "user {user:?}: only numeric uid or uid:gid is supported so far"
            ))
        })
    };
    let uid = parse(u)?;
    let gid = match g {
        Some(g) => parse(g)?,
        None => uid,
    };
    Ok((uid, gid))
}

pub fn build_spec(req: &CreateRequest, image: &ImageConfig) -> Result<Value, RuntimeError> {
    let args = process_args(req, image)?;
    let env = process_env(req, image);
    let (uid, gid) = process_user(req.container.user.as_deref(), &image.user)?;
    let cwd = req
        .container
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
    let mut mounts = default_mounts();
    let mut hostname = Value::Null;
    match req.network_mode {
        NetworkMode::Host => {
            // The host's network: share its name service files too, read-only.
            for f in ["/etc/hosts", "/etc/resolv.conf"] {
                mounts.push(json!({"destination": f, "type": "bind", "source": f,
                    "options": ["rbind", "ro", "nosuid", "nodev", "noexec"]}));
            }
        }
        NetworkMode::None => {
            // runc brings up loopback in a new network namespace and nothing else.
            namespaces.push(json!({"type": "network"}));
            namespaces.push(json!({"type": "uts"}));
            hostname = json!(short_hostname(&req.task_id));
        }
    }

    let caps = DEFAULT_CAPS;
    Ok(json!({
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": false,
            "user": {"uid": uid, "gid": gid},
            "args": args,
            "env": env,
            "cwd": cwd,
            "capabilities": {
                "bounding": caps, "effective": caps, "permitted": caps,
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true,
        },
        "root": {"path": "rootfs", "readonly": false},
        "hostname": hostname,
        "mounts": mounts,
        "linux": {
            "namespaces": namespaces,
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
                "/proc/scsi",
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
            ],
        },
    }))
}

fn short_hostname(task_id: &str) -> String {
    let short: String = task_id.chars().take(12).collect();
    format!("berth-{short}")
}

/// containerd's default mounts for a Linux container.
fn default_mounts() -> Vec<Value> {
    vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc",
            "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
            "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
            "options": ["nosuid", "noexec", "nodev", "ro"]}),
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
            },
            task_volumes_dir: "/tmp/volumes".into(),
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

    #[test]
    fn users() {
        assert_eq!(process_user(None, "").unwrap(), (0, 0));
        assert_eq!(process_user(Some("1000"), "").unwrap(), (1000, 1000));
        assert_eq!(process_user(Some("1000:50"), "").unwrap(), (1000, 50));
        assert_eq!(process_user(None, "7:8").unwrap(), (7, 8));
        assert!(process_user(Some("nginx"), "").is_err());
    }

    #[test]
    fn network_modes_shape_namespaces() {
        let mut r = req(None, None, vec![]);
        let spec = build_spec(&r, &image()).unwrap();
        let ns = spec["linux"]["namespaces"].to_string();
        assert!(ns.contains("network"));
        assert_eq!(spec["hostname"], "berth-0123456789ab");
        r.network_mode = NetworkMode::Host;
        let spec = build_spec(&r, &image()).unwrap();
        assert!(!spec["linux"]["namespaces"].to_string().contains("network"));
        assert!(spec["mounts"].to_string().contains("/etc/resolv.conf"));
        assert_eq!(spec["process"]["cwd"], "/srv");
    }
}
