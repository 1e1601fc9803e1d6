//! Domain types the engine works with. Wire types (`berth_proto`) are converted to these at the
//! session edge (`crate::wire`); nothing below the session sees prost types.

use serde::{Deserialize, Serialize};

/// RFC 3339 in UTC, to the second: containerd's gc.expire label, the metadata endpoint's times.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Default seconds between SIGTERM and SIGKILL, as ECS_CONTAINER_STOP_TIMEOUT.
pub const DEFAULT_STOP_TIMEOUT_SECS: u32 = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TaskStatus {
    Pending,
    Running,
    Stopped,
}

/// Container statuses in ECS order; `Ord` follows the lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ContainerStatus {
    None,
    Pulled,
    Created,
    Running,
    Stopped,
}

impl TaskStatus {
    /// ECS's name, as the introspection and metadata endpoints show it.
    pub fn ecs_name(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::Running => "RUNNING",
            Self::Stopped => "STOPPED",
        }
    }
}

impl ContainerStatus {
    /// ECS's name, as the introspection and metadata endpoints show it.
    pub fn ecs_name(self) -> &'static str {
        match self {
            Self::None => "NONE",
            Self::Pulled => "PULLED",
            Self::Created => "CREATED",
            Self::Running => "RUNNING",
            Self::Stopped => "STOPPED",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetworkMode {
    Host,
    None,
    Bridge,
    Awsvpc,
}

impl NetworkMode {
    /// The network modes this agent can run, as advertised to the control plane.
    pub const SUPPORTED: &'static [&'static str] = &["bridge", "host", "none", "awsvpc"];

    /// ECS's names; an empty mode is ECS's default, bridge.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "host" => Some(Self::Host),
            "none" => Some(Self::None),
            "bridge" | "" => Some(Self::Bridge),
            "awsvpc" => Some(Self::Awsvpc),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Host => "host",
            Self::None => "none",
            Self::Bridge => "bridge",
            Self::Awsvpc => "awsvpc",
        }
    }

    /// Bridge and awsvpc tasks get one namespace, shared by all their containers.
    pub fn has_task_netns(self) -> bool {
        matches!(self, Self::Bridge | Self::Awsvpc)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSpec {
    pub arn: String,
    pub family: String,
    pub revision: i32,
    pub network_mode: NetworkMode,
    pub cpu: u32,
    pub memory_mib: u32,
    pub containers: Vec<ContainerSpec>,
    #[serde(default)]
    pub volumes: Vec<Volume>,
    /// awsvpc ingress rules (the task's security groups); None allows all ingress.
    #[serde(default)]
    pub ingress: Option<Vec<crate::netdef::IngressRule>>,
}

/// A task definition's volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    pub name: String,
    pub kind: VolumeKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum VolumeKind {
    /// `host.sourcePath`: a bind mount of a host path.
    Host { source_path: String },
    /// No host path: an empty directory owned by the task, shared by its containers and
    /// removed with it.
    Task,
}

impl TaskSpec {
    /// The last path element of the ARN: `arn:aws:ecs:r:a:task/cluster/<id>` -> `<id>`.
    pub fn id(&self) -> &str {
        self.arn.rsplit('/').next().unwrap_or(&self.arn)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    pub essential: bool,
    pub entry_point: Option<Vec<String>>,
    pub command: Option<Vec<String>>,
    pub environment: Vec<(String, String)>,
    pub working_directory: Option<String>,
    pub user: Option<String>,
    pub cpu: u32,
    pub memory_mib: u32,
    pub memory_reservation_mib: u32,
    pub stop_timeout_secs: u32,
    /// Everything else a container definition can say; defaults mean "not set".
    #[serde(default)]
    pub extra: ContainerExtra,
}

/// The container-definition fields beyond the basics, parsed from the ECS JSON the control plane
/// sends (see `crate::ecs_json`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ContainerExtra {
    pub hostname: Option<String>,
    pub readonly_root_filesystem: bool,
    pub privileged: bool,
    pub ulimits: Vec<Ulimit>,
    /// dockerLabels, applied as container labels.
    pub labels: Vec<(String, String)>,
    pub linux: LinuxParameters,
    pub mount_points: Vec<MountPoint>,
    pub volumes_from: Vec<VolumeFrom>,
    pub depends_on: Vec<Dependency>,
    /// Seconds a dependency may take to reach its condition before this container gives up.
    pub start_timeout_secs: Option<u32>,
    pub restart_policy: Option<RestartPolicy>,
    /// logConfiguration.logDriver as given; logs always go to the agent's local files.
    pub log_driver: Option<String>,
    pub log_options: Vec<(String, String)>,
    pub health_check: Option<HealthCheck>,
    pub port_mappings: Vec<PortMapping>,
    pub dns_servers: Vec<String>,
    pub dns_search_domains: Vec<String>,
    /// extraHosts: (hostname, IPv4 address) lines added to the container's hosts file.
    pub extra_hosts: Vec<(String, String)>,
    /// Fields present in the definition that have no meaning on this host.
    pub ignored_fields: Vec<String>,
    /// The image registry's login from the task definition's repositoryCredentials, resolved
    /// by the control plane.
    pub registry_auth: Option<Credentials>,
}

/// A registry user name and password (or token), from the agent's config or a task's
/// repositoryCredentials. Debug and Display never show the password.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl Credentials {
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        Credentials {
            username: username.into(),
            password: password.into(),
        }
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl std::fmt::Display for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:<redacted>", self.username)
    }
}

/// A container's healthCheck, with ECS's defaults applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    /// What to exec in the container: `CMD` args as given, `CMD-SHELL` as `/bin/sh -c`.
    pub args: Vec<String>,
    pub interval_secs: u32,
    pub timeout_secs: u32,
    pub retries: u32,
    /// Failures within this many seconds of the start do not count.
    pub start_period_secs: u32,
}

/// A portMappings entry. One of `container_port` and `container_port_range` is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    pub container_port: Option<u16>,
    /// None or 0: a dynamic host port (bridge); host and awsvpc use the container port.
    pub host_port: Option<u16>,
    pub protocol: crate::netdef::Protocol,
    /// containerPortRange "first-last", inclusive; host ports are dynamic.
    pub container_port_range: Option<(u16, u16)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ulimit {
    /// ECS name, e.g. "nofile".
    pub name: String,
    pub soft: i64,
    pub hard: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LinuxParameters {
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub init_process_enabled: bool,
    pub shared_memory_size_mib: Option<u32>,
    pub tmpfs: Vec<Tmpfs>,
    pub devices: Vec<Device>,
    pub max_swap_mib: Option<i64>,
    pub swappiness: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tmpfs {
    pub container_path: String,
    pub size_mib: u32,
    pub mount_options: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    pub host_path: String,
    pub container_path: Option<String>,
    /// "read", "write", "mknod"; empty means all three.
    pub permissions: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountPoint {
    pub source_volume: String,
    pub container_path: String,
    pub read_only: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeFrom {
    pub source_container: String,
    pub read_only: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DependencyCondition {
    Start,
    Complete,
    Success,
    Healthy,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dependency {
    pub container_name: String,
    pub condition: DependencyCondition,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartPolicy {
    pub enabled: bool,
    pub ignored_exit_codes: Vec<i32>,
    /// A container must run this long before it may be restarted again (ECS default 300 s).
    pub restart_attempt_period_secs: u32,
}

/// ECS stop codes that Berth reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StopCode {
    TaskFailedToStart,
    EssentialContainerExited,
    UserInitiated,
}

impl StopCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TaskFailedToStart => "TaskFailedToStart",
            Self::EssentialContainerExited => "EssentialContainerExited",
            Self::UserInitiated => "UserInitiated",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_in_utc() {
        use std::time::{Duration, UNIX_EPOCH};
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        assert_eq!(rfc3339(t), "2026-11-18T11:06:40Z");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00Z");
    }
}
