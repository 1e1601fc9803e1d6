//! The I/O behind a container's spec: the image's users (read from the prepared snapshot),
//! bind-mount sources, task volume directories, device numbers, the init binary and what the
//! host's cgroups support. Everything here gathers facts for `oci::build_spec`, which decides.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use containerd_client::types::Mount;
use tracing::warn;

use super::image::ImageConfig;
use super::mounts::{self, MountError, MountSource, PlannedMount};
use super::oci::{self, CgroupSupport, HostDevice, HostFacts, NameFiles};
use super::rootfs::{self, UserError};
use super::{CreateRequest, RuntimeError};
use crate::model::Device;
use crate::network::dns;

/// Debian's `tini` package: a static init that runs in any image.
pub const TINI_PATH: &str = "/usr/bin/tini-static";
const CGROUP_ROOT: &str = "/sys/fs/cgroup";
const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";

#[derive(Debug, thiserror::Error)]
pub enum FactsError {
    #[error(transparent)]
    User(#[from] UserError),
    #[error(transparent)]
    Mount(#[from] MountError),
    #[error("bad mount source: host path {path} (for {destination}) does not exist")]
    MissingSource { path: String, destination: String },
    #[error("bad mount source: {path}: {message}")]
    Source { path: String, message: String },
    #[error("linuxParameters.devices: {path}: {message}")]
    Device { path: String, message: String },
    #[error("initProcessEnabled: the init binary {0} is not on this host (install Debian's tini package)")]
    NoInit(String),
}

impl From<FactsError> for RuntimeError {
    fn from(e: FactsError) -> Self {
        RuntimeError::InvalidSpec(e.to_string())
    }
}

/// Gathers the facts and builds the spec of `req`'s container on the snapshot `rootfs`;
/// whatever the spec had to leave out is logged.
pub fn build(
    req: &CreateRequest,
    image: &ImageConfig,
    rootfs: &[Mount],
) -> Result<serde_json::Value, RuntimeError> {
    let facts = gather(req, image, rootfs)?;
    let built = oci::build_spec(req, image, &facts)?;
    for w in &built.warnings {
        warn!(task.id = %req.task_id, container.name = %req.container.name, "{w}");
    }
    Ok(built.spec)
}

pub fn gather(
    req: &CreateRequest,
    image: &ImageConfig,
    rootfs: &[Mount],
) -> Result<HostFacts, FactsError> {
    let c = &req.container;
    let user_spec = c.user.as_deref().unwrap_or(&image.user);
    let user = rootfs::resolve_in_layers(user_spec, &rootfs::layer_dirs(rootfs))?;
    let planned = mounts::plan(&req.task, c, &req.task_volumes_dir)?;
    prepare_sources(&planned)?;
    let devices = c
        .extra
        .linux
        .devices
        .iter()
        .map(host_device)
        .collect::<Result<_, _>>()?;
    Ok(HostFacts {
        user,
        mounts: planned,
        devices,
        init_binary: init_binary(c.extra.linux.init_process_enabled, Path::new(TINI_PATH))?,
        cgroup: cgroup_support(Path::new(CGROUP_ROOT)),
        cap_bounding: std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| cap_bounding(&s)),
        name_files: name_files(req)?,
    })
}

/// Writes the container's resolv.conf, hosts and hostname files when it joins a task
/// namespace (bridge, awsvpc); they live with the task's volumes and go with them.
pub fn name_files(req: &CreateRequest) -> Result<Option<NameFiles>, FactsError> {
    if req.netns_path.is_none() {
        return Ok(None);
    }
    let x = &req.container.extra;
    // Task volume names are ECS names ([A-Za-z0-9_-]), so ".net" never collides with one.
    let dir = req.task_volumes_dir.join(".net").join(&req.container.name);
    let io = |path: &Path, e: std::io::Error| FactsError::Source {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
    let etc = std::fs::read_to_string(HOST_RESOLV_CONF).unwrap_or_default();
    // systemd-resolved's stub (127.0.0.53) does not answer inside a task's namespace.
    let upstream = std::fs::read_to_string(dns::SYSTEMD_RESOLVED_UPSTREAM).ok();
    let host_resolv = dns::pick_host_resolv_conf(&etc, upstream.as_deref());
    let hostname = oci::container_hostname(req);
    let files = NameFiles {
        resolv_conf: dir.join("resolv.conf"),
        hosts: dir.join("hosts"),
        hostname: dir.join("hostname"),
    };
    let contents = [
        (
            &files.resolv_conf,
            dns::resolv_conf(
                host_resolv,
                &x.dns_servers,
                &x.dns_search_domains,
                req.network_mode,
            ),
        ),
        (
            &files.hosts,
            dns::hosts(&hostname, req.address, &x.extra_hosts),
        ),
        (&files.hostname, dns::hostname_file(&hostname)),
    ];
    for (path, text) in contents {
        std::fs::write(path, text).map_err(|e| io(path, e))?;
    }
    Ok(Some(files))
}

/// The `CapBnd:` mask of a /proc/<pid>/status. containerd runs with the same bounding set as
/// the agent under systemd (and in the tests), so it stands for what runc can grant.
pub fn cap_bounding(status: &str) -> Option<u64> {
    let hex = status.lines().find_map(|l| l.strip_prefix("CapBnd:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// Host paths must exist (Docker would create them; ECS on Berth says what is wrong instead);
/// task volumes are created empty on first use and then shared by the task's containers.
pub fn prepare_sources(planned: &[PlannedMount]) -> Result<(), FactsError> {
    for m in planned {
        match &m.source {
            MountSource::Host(path) => match std::fs::metadata(path) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(FactsError::MissingSource {
                        path: path.display().to_string(),
                        destination: m.destination.clone(),
                    })
                }
                Err(e) => {
                    return Err(FactsError::Source {
                        path: path.display().to_string(),
                        message: e.to_string(),
                    })
                }
            },
            MountSource::TaskVolume(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| FactsError::Source {
                    path: dir.display().to_string(),
                    message: format!("cannot create the task volume: {e}"),
                })?
            }
            MountSource::Tmpfs => {}
        }
    }
    Ok(())
}

/// The device node at the host path, with the definition's permissions.
pub fn host_device(d: &Device) -> Result<HostDevice, FactsError> {
    let bad = |message: String| FactsError::Device {
        path: d.host_path.clone(),
        message,
    };
    let container_path = d
        .container_path
        .clone()
        .unwrap_or_else(|| d.host_path.clone());
    if !container_path.starts_with('/') {
        return Err(bad(format!(
            "containerPath {container_path:?} must be an absolute path"
        )));
    }
    let meta = std::fs::metadata(&d.host_path).map_err(|e| bad(e.to_string()))?;
    let kind = if meta.file_type().is_char_device() {
        'c'
    } else if meta.file_type().is_block_device() {
        'b'
    } else {
        return Err(bad("not a device node".into()));
    };
    let mut access = String::new();
    for p in &d.permissions {
        let flag = match p.as_str() {
            "read" => 'r',
            "write" => 'w',
            "mknod" => 'm',
            other => return Err(bad(format!("unknown permission {other:?}"))),
        };
        if !access.contains(flag) {
            access.push(flag);
        }
    }
    if access.is_empty() {
        access = "rwm".into();
    }
    Ok(HostDevice {
        container_path,
        kind,
        major: libc::major(meta.rdev()) as i64,
        minor: libc::minor(meta.rdev()) as i64,
        file_mode: meta.mode() & 0o7777,
        uid: meta.uid(),
        gid: meta.gid(),
        access,
    })
}

pub fn init_binary(enabled: bool, path: &Path) -> Result<Option<String>, FactsError> {
    if !enabled {
        return Ok(None);
    }
    if path.is_file() {
        Ok(Some(path.display().to_string()))
    } else {
        Err(FactsError::NoInit(path.display().to_string()))
    }
}

/// cgroup v1 has swap accounting when the memsw files exist (swapaccount=1); cgroup v2 when
/// memory.swap.max does, and it has no swappiness at all.
pub fn cgroup_support(root: &Path) -> CgroupSupport {
    let v1 = root.join("memory");
    if v1.join("memory.limit_in_bytes").exists() {
        return CgroupSupport {
            swap: v1.join("memory.memsw.limit_in_bytes").exists(),
            swappiness: v1.join("memory.swappiness").exists(),
            v2: false,
        };
    }
    CgroupSupport {
        swap: ["system.slice", "user.slice", "init.scope"]
            .iter()
            .any(|d| root.join(d).join("memory.swap.max").exists()),
        swappiness: false,
        v2: crate::cgroups::is_v2(root),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(host: &str, perms: &[&str]) -> Device {
        Device {
            host_path: host.into(),
            container_path: None,
            permissions: perms.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn devices_are_stat_ed() {
        let d = host_device(&device("/dev/null", &["read", "write", "read"])).unwrap();
        assert_eq!((d.kind, d.major, d.minor), ('c', 1, 3));
        assert_eq!(d.access, "rw");
        assert_eq!(d.container_path, "/dev/null");
        assert_eq!(
            host_device(&device("/dev/zero", &[])).unwrap().access,
            "rwm"
        );
        let err = host_device(&device("/etc/hostname", &[])).unwrap_err();
        assert!(err.to_string().contains("not a device"), "{err}");
        assert!(host_device(&device("/dev/no-such-device", &[])).is_err());
        assert!(host_device(&device("/dev/null", &["execute"])).is_err());
    }

    #[test]
    fn the_bounding_set_is_read_from_proc_status() {
        let status = "Name:\tx\nCapEff:\t0000000000000000\nCapBnd:\t000001fffeffffff\n";
        assert_eq!(cap_bounding(status), Some(0x1fffeffffff));
        assert_eq!(cap_bounding("Name:\tx\n"), None);
    }

    #[test]
    fn a_missing_init_binary_is_a_clear_error() {
        assert_eq!(init_binary(false, Path::new("/nope")).unwrap(), None);
        let err = init_binary(true, Path::new("/no/such/tini")).unwrap_err();
        assert!(err.to_string().contains("/no/such/tini"), "{err}");
    }

    #[test]
    fn sources_are_checked_and_task_volumes_created() {
        let base = std::env::temp_dir().join(format!("berth-facts-{}", fastrand::u64(..)));
        let vol = base.join("volumes/task/data");
        let planned = |source| {
            vec![PlannedMount {
                destination: "/data".into(),
                source,
                options: vec![],
            }]
        };
        prepare_sources(&planned(MountSource::TaskVolume(vol.clone()))).unwrap();
        assert!(vol.is_dir());
        prepare_sources(&planned(MountSource::Host(vol.clone()))).unwrap();
        let err = prepare_sources(&planned(MountSource::Host(base.join("missing")))).unwrap_err();
        assert!(err.to_string().starts_with("bad mount source"), "{err}");
        assert!(err.to_string().contains("missing"), "{err}");
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn cgroup_support_is_read_from_the_hierarchy() {
        let base = std::env::temp_dir().join(format!("berth-cgroup-{}", fastrand::u64(..)));
        let mem = base.join("memory");
        std::fs::create_dir_all(&mem).unwrap();
        std::fs::write(mem.join("memory.limit_in_bytes"), "").unwrap();
        std::fs::write(mem.join("memory.swappiness"), "").unwrap();
        assert_eq!(
            cgroup_support(&base),
            CgroupSupport {
                swap: false,
                swappiness: true,
                v2: false,
            }
        );
        std::fs::write(mem.join("memory.memsw.limit_in_bytes"), "").unwrap();
        assert!(cgroup_support(&base).swap);
        std::fs::remove_dir_all(&mem).unwrap();
        std::fs::create_dir_all(base.join("system.slice")).unwrap();
        std::fs::write(base.join("system.slice/memory.swap.max"), "").unwrap();
        assert_eq!(
            cgroup_support(&base),
            CgroupSupport {
                swap: true,
                swappiness: false,
                v2: false,
            }
        );
        std::fs::remove_dir_all(&base).unwrap();
    }
}
