//! Agent configuration: a TOML file, then `BERTH_*` environment variables over it. Every problem
//! is collected and reported at once; `main` exits with [`EXIT_BAD_CONFIG`], which the systemd
//! unit lists in `RestartPreventExitStatus=` because restarting cannot fix it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// EX_CONFIG from sysexits.h: also used when the control plane refuses our registration.
pub const EXIT_BAD_CONFIG: i32 = 78;

/// ECS's default reserved TCP ports (ECS_RESERVED_PORTS).
const DEFAULT_RESERVED_TCP: &[u16] = &[22, 2375, 2376, 51678, 51679];

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub cluster: String,
    pub endpoint: String,
    pub data_dir: PathBuf,
    pub activation_code: Option<String>,
    pub containerd: ContainerdSection,
    pub reserved_memory_mib: u64,
    pub reserved_tcp_ports: Vec<u16>,
    pub reserved_udp_ports: Vec<u16>,
    pub logs: LogsSection,
    /// Seconds a stopped task's containers, volumes and logs are kept before cleanup.
    pub task_cleanup_wait_secs: u64,
    /// Seconds the control plane's task manifest may disagree with the agent about a task
    /// before the agent stops it (unlisted) or reports it STOPPED (never received).
    pub manifest_grace_secs: u64,
    pub cgroups: CgroupsSection,
    /// `[network]`; its reserved ports are the top-level ones.
    pub network: crate::network::NetworkConfig,
    pub images: ImagesSection,
    /// `[instance]`: what placement knows this host by.
    pub instance: InstanceSection,
    /// `[introspection] listen`: where the ECS agent's introspection API is served; None when
    /// it is "off".
    pub introspection_listen: Option<std::net::SocketAddr>,
}

/// ECS's introspection port, on loopback only: the API shows every task of the host.
pub const DEFAULT_INTROSPECTION_LISTEN: &str = "127.0.0.1:51678";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct IntrospectionSection {
    listen: Option<String>,
}

/// `[instance]`: the attributes this host registers for placement (ECS_INSTANCE_ATTRIBUTES and
/// the availability zone an external instance has no metadata service to learn).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InstanceSection {
    /// `ecs.availability-zone`: what services spread over by default.
    pub availability_zone: String,
    /// `ecs.instance-type`.
    pub instance_type: String,
    /// Custom attributes, by name.
    pub attributes: std::collections::BTreeMap<String, String>,
}

impl Default for InstanceSection {
    fn default() -> Self {
        Self {
            availability_zone: "default".into(),
            instance_type: "external".into(),
            attributes: Default::default(),
        }
    }
}

/// `[images]`: pulling images from registries (ECS_IMAGE_PULL_BEHAVIOR and friends).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImagesSection {
    /// "default", "always", "once" or "prefer-cached".
    pub pull_behavior: String,
    /// Registries ("host[:port]") spoken to over plain HTTP.
    pub insecure_registries: Vec<String>,
    /// Layers of one image downloaded at once.
    pub parallel_layer_downloads: usize,
    /// Attempts of a pull that fails for a reason worth retrying (connection, 5xx, 429).
    pub pull_attempts: u32,
    /// Logins by registry ("host[:port]"; Docker Hub is "docker.io").
    pub credentials: std::collections::BTreeMap<String, RegistryLogin>,
    /// Image cleanup (ECS_DISABLE_IMAGE_CLEANUP, ECS_IMAGE_CLEANUP_INTERVAL,
    /// ECS_IMAGE_MINIMUM_CLEANUP_AGE, ECS_NUM_IMAGES_DELETE_PER_CYCLE).
    pub cleanup_enabled: bool,
    pub cleanup_interval_secs: u64,
    pub minimum_image_age_secs: u64,
    pub images_per_cycle: usize,
    /// Images never removed (as tasks name them: "busybox", "registry:5000/app:1").
    pub pinned: Vec<String>,
}

impl Default for ImagesSection {
    fn default() -> Self {
        Self {
            pull_behavior: "default".into(),
            insecure_registries: Vec::new(),
            parallel_layer_downloads: 3,
            pull_attempts: 3,
            credentials: Default::default(),
            cleanup_enabled: true,
            cleanup_interval_secs: 30 * 60,
            minimum_image_age_secs: 3600,
            images_per_cycle: 5,
            pinned: Vec::new(),
        }
    }
}

/// A registry login (`username`, `password`); its password is never printed.
pub type RegistryLogin = crate::model::Credentials;

pub const DEFAULT_BRIDGE: &str = "berth0";
pub const DEFAULT_BRIDGE_SUBNET: &str = "10.231.0.0/16";
pub const DEFAULT_GATEWAY_DEVICE: &str = "berth-tasks";
pub const DEFAULT_TASK_SUBNET: &str = "10.232.0.0/16";
pub const DEFAULT_NFT_TABLE: &str = "berth";
pub const DEFAULT_NAME_PREFIX: &str = "bth";
pub const DEFAULT_NETNS_DIR: &str = "/run/netns";
/// ECS's dynamic host ports when the kernel's ephemeral range cannot be read.
pub const FALLBACK_DYNAMIC_PORTS: (u16, u16) = (49153, 65535);
const IP_LOCAL_PORT_RANGE: &str = "/proc/sys/net/ipv4/ip_local_port_range";

/// `[network]` as written: task networking (see `crate::network`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct NetworkSection {
    bridge: Option<String>,
    bridge_subnet: Option<String>,
    gateway_device: Option<String>,
    task_subnet: Option<String>,
    nft_table: Option<String>,
    name_prefix: Option<String>,
    netns_dir: Option<PathBuf>,
    /// "first-last", inclusive.
    dynamic_ports: Option<String>,
}

/// Task cgroups: `<root>/<task id>` (v1: in each controller; v2: below /sys/fs/cgroup), with
/// the task's containers below it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CgroupsSection {
    pub root: String,
    /// The CFS period a task-level `cpu` quota is counted in.
    pub cpu_period_us: u64,
    /// pids.max of every task cgroup; unlimited when unset.
    pub pids_limit: Option<u64>,
}

impl Default for CgroupsSection {
    fn default() -> Self {
        Self {
            root: "/berth".into(),
            cpu_period_us: crate::cgroups::DEFAULT_CPU_PERIOD_US,
            pids_limit: None,
        }
    }
}

/// ECS_ENGINE_TASK_CLEANUP_WAIT_DURATION's default: 3 hours.
pub const DEFAULT_TASK_CLEANUP_WAIT_SECS: u64 = 3 * 3600;
/// A week: beyond that a stopped task's leftovers are forgotten rather than kept.
const MAX_TASK_CLEANUP_WAIT_SECS: u64 = 7 * 24 * 3600;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TasksSection {
    task_cleanup_wait_secs: Option<u64>,
    manifest_grace_secs: Option<u64>,
}

/// Five control-plane manifests at their default interval (60 s): long enough that a payload
/// and a manifest crossing on the wire, or a control plane restarting, never stop a task.
pub const DEFAULT_MANIFEST_GRACE_SECS: u64 = 300;

/// Container log rotation: each container's log is rotated at `max_size_mib`, keeping at most
/// `max_files` files (the live one included).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogsSection {
    pub max_size_mib: u64,
    pub max_files: u32,
}

impl Default for LogsSection {
    fn default() -> Self {
        Self {
            max_size_mib: crate::logs::DEFAULT_MAX_SIZE_MIB,
            max_files: crate::logs::DEFAULT_MAX_FILES,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContainerdSection {
    pub socket: String,
    pub namespace: String,
    pub snapshotter: String,
    pub call_timeout_secs: u64,
}

impl Default for ContainerdSection {
    fn default() -> Self {
        Self {
            socket: "/run/containerd/containerd.sock".into(),
            namespace: "berth".into(),
            snapshotter: "overlayfs".into(),
            call_timeout_secs: 30,
        }
    }
}

impl ContainerdSection {
    pub fn call_timeout(&self) -> Duration {
        Duration::from_secs(self.call_timeout_secs)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    cluster: Option<String>,
    endpoint: Option<String>,
    data_dir: Option<PathBuf>,
    activation_code: Option<String>,
    #[serde(default)]
    containerd: ContainerdSection,
    #[serde(default)]
    resources: ResourcesSection,
    #[serde(default)]
    logs: LogsSection,
    /// Accepted at the top level or in `[tasks]`.
    task_cleanup_wait_secs: Option<u64>,
    #[serde(default)]
    tasks: TasksSection,
    #[serde(default)]
    cgroups: CgroupsSection,
    #[serde(default)]
    network: NetworkSection,
    #[serde(default)]
    images: ImagesSection,
    #[serde(default)]
    instance: InstanceSection,
    #[serde(default)]
    introspection: IntrospectionSection,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ResourcesSection {
    reserved_memory_mib: u64,
    reserved_tcp_ports: Vec<u16>,
    reserved_udp_ports: Vec<u16>,
}

impl Default for ResourcesSection {
    fn default() -> Self {
        Self {
            reserved_memory_mib: 0,
            reserved_tcp_ports: DEFAULT_RESERVED_TCP.to_vec(),
            reserved_udp_ports: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
pub struct ConfigErrors(pub Vec<String>);

/// Reads the file (if any) and applies the environment over it.
pub fn load(path: Option<&Path>, env: &HashMap<String, String>) -> Result<Config, ConfigErrors> {
    let mut errors = Vec::new();
    let file = match path {
        None => FileConfig::default(),
        Some(p) => match std::fs::read_to_string(p) {
            Ok(text) => match toml::from_str::<FileConfig>(&text) {
                Ok(f) => f,
                Err(e) => {
                    errors.push(format!("{}: {}", p.display(), e.message()));
                    FileConfig::default()
                }
            },
            Err(e) => {
                errors.push(format!("{}: {e}", p.display()));
                FileConfig::default()
            }
        },
    };
    resolve(file, env, errors)
}

fn resolve(
    file: FileConfig,
    env: &HashMap<String, String>,
    mut errors: Vec<String>,
) -> Result<Config, ConfigErrors> {
    let var = |k: &str| env.get(k).filter(|v| !v.is_empty()).cloned();
    let mut containerd = file.containerd;
    if let Some(v) = var("BERTH_CONTAINERD_SOCKET") {
        containerd.socket = v;
    }
    if let Some(v) = var("BERTH_CONTAINERD_NAMESPACE") {
        containerd.namespace = v;
    }
    let mut reserved_memory_mib = file.resources.reserved_memory_mib;
    if let Some(v) = var("BERTH_RESERVED_MEMORY_MIB") {
        match v.parse() {
            Ok(n) => reserved_memory_mib = n,
            Err(_) => errors.push(format!(
                "BERTH_RESERVED_MEMORY_MIB: {v:?} is not a whole number of MiB"
            )),
        }
    }
    let mut logs = file.logs;
    if let Some(v) = var("BERTH_LOG_MAX_SIZE_MIB") {
        match v.parse() {
            Ok(n) => logs.max_size_mib = n,
            Err(_) => errors.push(format!(
                "BERTH_LOG_MAX_SIZE_MIB: {v:?} is not a whole number of MiB"
            )),
        }
    }
    if let Some(v) = var("BERTH_LOG_MAX_FILES") {
        match v.parse() {
            Ok(n) => logs.max_files = n,
            Err(_) => errors.push(format!("BERTH_LOG_MAX_FILES: {v:?} is not a whole number")),
        }
    }
    if let (Some(top), Some(section)) = (
        file.task_cleanup_wait_secs,
        file.tasks.task_cleanup_wait_secs,
    ) {
        if top != section {
            errors.push(format!(
                "task_cleanup_wait_secs is set twice ({top} at the top level, {section} in [tasks])"
            ));
        }
    }
    let mut task_cleanup_wait_secs = file
        .task_cleanup_wait_secs
        .or(file.tasks.task_cleanup_wait_secs)
        .unwrap_or(DEFAULT_TASK_CLEANUP_WAIT_SECS);
    if let Some(v) = var("BERTH_TASK_CLEANUP_WAIT_SECS") {
        match v.parse() {
            Ok(n) => task_cleanup_wait_secs = n,
            Err(_) => errors.push(format!(
                "BERTH_TASK_CLEANUP_WAIT_SECS: {v:?} is not a whole number of seconds"
            )),
        }
    }
    let network = resolve_network(
        file.network,
        &var,
        &file.resources.reserved_tcp_ports,
        &file.resources.reserved_udp_ports,
        &mut errors,
    );
    let cfg = Config {
        cluster: var("BERTH_CLUSTER")
            .or(file.cluster)
            .unwrap_or_else(|| "default".into()),
        endpoint: var("BERTH_ENDPOINT")
            .or(file.endpoint)
            .unwrap_or_else(|| "http://127.0.0.1:7081".into()),
        data_dir: var("BERTH_DATA_DIR")
            .map(PathBuf::from)
            .or(file.data_dir)
            .unwrap_or_else(|| "/var/lib/berth".into()),
        activation_code: var("BERTH_ACTIVATION_CODE").or(file.activation_code),
        containerd,
        reserved_memory_mib,
        reserved_tcp_ports: file.resources.reserved_tcp_ports,
        reserved_udp_ports: file.resources.reserved_udp_ports,
        logs,
        task_cleanup_wait_secs,
        manifest_grace_secs: file
            .tasks
            .manifest_grace_secs
            .unwrap_or(DEFAULT_MANIFEST_GRACE_SECS),
        cgroups: file.cgroups,
        network,
        images: ImagesSection {
            pull_behavior: var("BERTH_IMAGE_PULL_BEHAVIOR").unwrap_or(file.images.pull_behavior),
            ..file.images
        },
        instance: resolve_instance(file.instance, &var, &mut errors),
        introspection_listen: resolve_introspection(file.introspection, &var, &mut errors),
    };
    validate(&cfg, &mut errors);
    if errors.is_empty() {
        Ok(cfg)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// `[introspection] listen` with BERTH_INTROSPECTION_LISTEN over it: an address, or "off".
fn resolve_introspection(
    file: IntrospectionSection,
    var: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<String>,
) -> Option<std::net::SocketAddr> {
    let (source, value) = match var("BERTH_INTROSPECTION_LISTEN") {
        Some(v) => ("BERTH_INTROSPECTION_LISTEN", v),
        None => (
            "[introspection] listen",
            file.listen
                .unwrap_or_else(|| DEFAULT_INTROSPECTION_LISTEN.into()),
        ),
    };
    if value == "off" {
        return None;
    }
    match value.parse() {
        Ok(addr) => Some(addr),
        Err(_) => {
            errors.push(format!(
                "{source}: {value:?} is not an address and port (such as {DEFAULT_INTROSPECTION_LISTEN}) or \"off\""
            ));
            None
        }
    }
}

/// `[instance]` with BERTH_AVAILABILITY_ZONE, BERTH_INSTANCE_TYPE and BERTH_INSTANCE_ATTRIBUTES
/// (a JSON object, as ECS_INSTANCE_ATTRIBUTES) over it; names and values checked as ECS checks
/// PutAttributes.
fn resolve_instance(
    mut instance: InstanceSection,
    var: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<String>,
) -> InstanceSection {
    if let Some(v) = var("BERTH_AVAILABILITY_ZONE") {
        instance.availability_zone = v;
    }
    if let Some(v) = var("BERTH_INSTANCE_TYPE") {
        instance.instance_type = v;
    }
    if let Some(v) = var("BERTH_INSTANCE_ATTRIBUTES") {
        match serde_json::from_str::<std::collections::BTreeMap<String, String>>(&v) {
            Ok(extra) => instance.attributes.extend(extra),
            Err(e) => errors.push(format!(
                "BERTH_INSTANCE_ATTRIBUTES: not a JSON object of strings ({e})"
            )),
        }
    }
    let valid_name = |n: &str| {
        (1..=128).contains(&n.len())
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_/.".contains(c))
    };
    let valid_value = |v: &str| {
        (1..=128).contains(&v.len())
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_/.:@ ".contains(c))
    };
    for (key, value) in [
        ("instance.availability_zone", &instance.availability_zone),
        ("instance.instance_type", &instance.instance_type),
    ] {
        if !valid_value(value) {
            errors.push(format!(
                "{key}: {value:?} must be 1-128 letters, digits, spaces or -_/.:@"
            ));
        }
    }
    for (name, value) in &instance.attributes {
        if !valid_name(name) {
            errors.push(format!(
                "instance.attributes: {name:?} must be 1-128 letters, digits, hyphens, underscores, slashes or periods"
            ));
        } else if ["ecs.", "com.amazonaws.ecs.", "berth."]
            .iter()
            .any(|p| name.starts_with(p))
        {
            // Its own attributes (capabilities among them) come with these: one name, one value.
            errors.push(format!(
                "instance.attributes: {name:?}: the ecs., com.amazonaws.ecs. and berth. prefixes are the agent's own"
            ));
        }
        if !valid_value(value) {
            errors.push(format!(
                "instance.attributes.{name}: {value:?} must be 1-128 letters, digits, spaces or -_/.:@"
            ));
        }
    }
    instance
}

/// `[network]` with the environment over it. What does not parse is reported and replaced by
/// its default, so that `validate` still checks the rest.
fn resolve_network(
    file: NetworkSection,
    var: &dyn Fn(&str) -> Option<String>,
    reserved_tcp_ports: &[u16],
    reserved_udp_ports: &[u16],
    errors: &mut Vec<String>,
) -> crate::network::NetworkConfig {
    use crate::network::Cidr;
    // The value and where it came from, for messages.
    let pick = |env: &str, key: &str, file: Option<String>| match var(env) {
        Some(v) => Some((v, env.to_string())),
        None => file.map(|v| (v, format!("network.{key}"))),
    };
    let mut subnet = |env: &str, key: &str, file: Option<String>, default: &str| {
        let default: Cidr = default.parse().expect("default subnet");
        match pick(env, key, file) {
            None => default,
            Some((v, from)) => v.parse().unwrap_or_else(|_| {
                errors.push(format!(
                    "{from}: {v:?} is not an IPv4 network like \"10.231.0.0/16\""
                ));
                default
            }),
        }
    };
    let bridge_subnet = subnet(
        "BERTH_NETWORK_BRIDGE_SUBNET",
        "bridge_subnet",
        file.bridge_subnet,
        DEFAULT_BRIDGE_SUBNET,
    );
    let task_subnet = subnet(
        "BERTH_NETWORK_TASK_SUBNET",
        "task_subnet",
        file.task_subnet,
        DEFAULT_TASK_SUBNET,
    );
    let dynamic_ports = match pick(
        "BERTH_NETWORK_DYNAMIC_PORTS",
        "dynamic_ports",
        file.dynamic_ports,
    ) {
        None => kernel_ephemeral_ports(std::fs::read_to_string(IP_LOCAL_PORT_RANGE).ok()),
        Some((v, from)) => parse_port_range(&v).unwrap_or_else(|| {
            errors.push(format!(
                "{from}: {v:?} is not a port range like \"49153-65535\""
            ));
            FALLBACK_DYNAMIC_PORTS
        }),
    };
    let text = |env: &str, file: Option<String>, default: &str| {
        var(env).or(file).unwrap_or_else(|| default.into())
    };
    crate::network::NetworkConfig {
        bridge: text("BERTH_NETWORK_BRIDGE", file.bridge, DEFAULT_BRIDGE),
        bridge_subnet,
        gateway_device: file
            .gateway_device
            .unwrap_or_else(|| DEFAULT_GATEWAY_DEVICE.into()),
        task_subnet,
        nft_table: text("BERTH_NETWORK_NFT_TABLE", file.nft_table, DEFAULT_NFT_TABLE),
        name_prefix: text(
            "BERTH_NETWORK_NAME_PREFIX",
            file.name_prefix,
            DEFAULT_NAME_PREFIX,
        ),
        netns_dir: file.netns_dir.unwrap_or_else(|| DEFAULT_NETNS_DIR.into()),
        dynamic_ports,
        reserved_tcp_ports: reserved_tcp_ports.to_vec(),
        reserved_udp_ports: reserved_udp_ports.to_vec(),
    }
}

/// "first-last" (inclusive), both ports.
fn parse_port_range(s: &str) -> Option<(u16, u16)> {
    let (a, b) = s.split_once('-')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

/// ECS's default dynamic host ports: the kernel's ephemeral range (the text of
/// /proc/sys/net/ipv4/ip_local_port_range, "32768\t60999") when it is readable and sane, else
/// 49153-65535.
fn kernel_ephemeral_ports(text: Option<String>) -> (u16, u16) {
    text.and_then(|t| {
        let mut words = t.split_whitespace().map(|w| w.parse::<u16>().ok());
        match (words.next()??, words.next()??, words.next()) {
            (first, last, None) if first >= 1024 && first <= last => Some((first, last)),
            _ => None,
        }
    })
    .unwrap_or(FALLBACK_DYNAMIC_PORTS)
}

fn validate_network(n: &crate::network::NetworkConfig, errors: &mut Vec<String>) {
    // The kernel's rule for link names (dev_valid_name).
    let link_ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 15
            && s != "."
            && s != ".."
            && !s.chars().any(|c| c == '/' || c == ':' || c.is_whitespace())
    };
    for (key, name) in [("bridge", &n.bridge), ("gateway_device", &n.gateway_device)] {
        if !link_ok(name) {
            errors.push(format!(
                "network.{key} {name:?}: an interface name of 1-15 characters without '/', ':' or spaces"
            ));
        }
    }
    if n.bridge == n.gateway_device {
        errors.push(format!(
            "network.gateway_device {:?}: must differ from network.bridge",
            n.gateway_device
        ));
    }
    for (key, subnet) in [
        ("bridge_subnet", n.bridge_subnet),
        ("task_subnet", n.task_subnet),
    ] {
        if !(8..=30).contains(&subnet.prefix_len) {
            errors.push(format!(
                "network.{key} {subnet}: the prefix length must be between /8 and /30"
            ));
        }
    }
    if n.bridge_subnet.overlaps(&n.task_subnet) {
        errors.push(format!(
            "network.bridge_subnet {} and network.task_subnet {} overlap",
            n.bridge_subnet, n.task_subnet
        ));
    }
    if n.nft_table.is_empty()
        || !n
            .nft_table
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        errors.push(format!(
            "network.nft_table {:?}: letters, digits and underscores",
            n.nft_table
        ));
    }
    let prefix = &n.name_prefix;
    if !(1..=5).contains(&prefix.len())
        || !prefix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    {
        errors.push(format!(
            "network.name_prefix {prefix:?}: 1-5 lowercase letters or digits"
        ));
    }
    if !n.netns_dir.is_absolute() {
        errors.push(format!(
            "network.netns_dir {:?}: must be an absolute path",
            n.netns_dir.display()
        ));
    }
    let (first, last) = n.dynamic_ports;
    if first > last || first < 1024 {
        errors.push(format!(
            "network.dynamic_ports {first}-{last}: the first port must be at least 1024 and not above the last"
        ));
    }
}

fn validate(cfg: &Config, errors: &mut Vec<String>) {
    let name_ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 255
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    };
    if !name_ok(&cfg.cluster) {
        errors.push(format!(
            "cluster {:?}: 1-255 letters, digits, hyphens or underscores",
            cfg.cluster
        ));
    }
    if !(cfg.endpoint.starts_with("http://") || cfg.endpoint.starts_with("https://")) {
        errors.push(format!(
            "endpoint {:?}: must be an http:// or https:// URL of the control plane",
            cfg.endpoint
        ));
    }
    if !cfg.data_dir.is_absolute() {
        errors.push(format!(
            "data_dir {:?}: must be an absolute path",
            cfg.data_dir.display()
        ));
    }
    // containerd's namespace rule: a DNS-label-like identifier.
    let ns = &cfg.containerd.namespace;
    let ns_ok = !ns.is_empty()
        && ns.len() <= 76
        && ns.starts_with(|c: char| c.is_ascii_alphanumeric())
        && ns.ends_with(|c: char| c.is_ascii_alphanumeric())
        && ns
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ns_ok {
        errors.push(format!(
            "containerd.namespace {ns:?}: letters, digits, '-', '_' and '.', starting and ending with a letter or digit"
        ));
    }
    if cfg.containerd.socket.is_empty() {
        errors.push("containerd.socket: must not be empty".into());
    }
    if cfg.containerd.snapshotter.is_empty() {
        errors.push("containerd.snapshotter: must not be empty".into());
    }
    if !(1..=600).contains(&cfg.containerd.call_timeout_secs) {
        errors.push(format!(
            "containerd.call_timeout_secs {}: must be between 1 and 600",
            cfg.containerd.call_timeout_secs
        ));
    }
    if !(1..=10_240).contains(&cfg.logs.max_size_mib) {
        errors.push(format!(
            "logs.max_size_mib {}: must be between 1 and 10240",
            cfg.logs.max_size_mib
        ));
    }
    if !(1..=100).contains(&cfg.logs.max_files) {
        errors.push(format!(
            "logs.max_files {}: must be between 1 and 100",
            cfg.logs.max_files
        ));
    }
    if cfg.task_cleanup_wait_secs > MAX_TASK_CLEANUP_WAIT_SECS {
        errors.push(format!(
            "task_cleanup_wait_secs {}: must be at most {MAX_TASK_CLEANUP_WAIT_SECS} (a week)",
            cfg.task_cleanup_wait_secs
        ));
    }
    if crate::images::PullBehavior::parse(&cfg.images.pull_behavior).is_none() {
        errors.push(format!(
            "images.pull_behavior {:?}: must be \"default\", \"always\", \"once\" or \"prefer-cached\"",
            cfg.images.pull_behavior
        ));
    }
    if !(1..=16).contains(&cfg.images.parallel_layer_downloads) {
        errors.push(format!(
            "images.parallel_layer_downloads {}: must be between 1 and 16",
            cfg.images.parallel_layer_downloads
        ));
    }
    if !(1..=86_400).contains(&cfg.images.cleanup_interval_secs) {
        errors.push(format!(
            "images.cleanup_interval_secs {}: must be between 1 and 86400",
            cfg.images.cleanup_interval_secs
        ));
    }
    if !(1..=1000).contains(&cfg.images.images_per_cycle) {
        errors.push(format!(
            "images.images_per_cycle {}: must be between 1 and 1000",
            cfg.images.images_per_cycle
        ));
    }
    for p in &cfg.images.pinned {
        if let Err(e) = crate::registry::Reference::parse(p) {
            errors.push(format!("images.pinned {p:?}: {e}"));
        }
    }
    if !(1..=10).contains(&cfg.images.pull_attempts) {
        errors.push(format!(
            "images.pull_attempts {}: must be between 1 and 10",
            cfg.images.pull_attempts
        ));
    }
    if !(1..=86_400).contains(&cfg.manifest_grace_secs) {
        errors.push(format!(
            "tasks.manifest_grace_secs {}: must be between 1 and 86400 (a day)",
            cfg.manifest_grace_secs
        ));
    }
    let root = &cfg.cgroups.root;
    let root_ok = root.starts_with('/')
        && root.len() > 1
        && root.split('/').skip(1).all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        });
    if !root_ok {
        errors.push(format!(
            "cgroups.root {root:?}: an absolute cgroup path below the root, like \"/berth\" (letters, digits, '-', '_', '.')"
        ));
    }
    if !(1000..=1_000_000).contains(&cfg.cgroups.cpu_period_us) {
        errors.push(format!(
            "cgroups.cpu_period_us {}: must be between 1000 and 1000000",
            cfg.cgroups.cpu_period_us
        ));
    }
    if cfg.cgroups.pids_limit == Some(0) {
        errors.push("cgroups.pids_limit: must be at least 1 when set".into());
    }
    if let Some(code) = &cfg.activation_code {
        if code.trim() != code || code.is_empty() {
            errors.push("activation_code: must not be empty or carry surrounding spaces".into());
        }
    }
    validate_network(&cfg.network, errors);
}

/// The log filter from `BERTH_LOG`, else `RUST_LOG`, else `info`: comma-separated `level` and
/// `target=level` directives (`info,berth_agent=debug`), targets matched by module-path prefix.
/// tracing-subscriber's `Targets` rather than its `EnvFilter`: the latter's span and field
/// directives (`[span]`, `{field}`) cost a regex engine's worth of resident code (issue #9), so
/// they are refused here with the variable's name rather than silently ignored.
pub fn log_filter(
    env: &HashMap<String, String>,
) -> Result<tracing_subscriber::filter::Targets, String> {
    let (name, value) = match ["BERTH_LOG", "RUST_LOG"]
        .iter()
        .find_map(|n| env.get(*n).map(|v| (*n, v.trim())))
    {
        Some((_, "")) | None => return Ok("info".parse().expect("a valid filter")),
        Some(found) => found,
    };
    if value.contains(['[', ']', '{', '}']) {
        return Err(format!(
            "{name} {value:?}: span and field filters are not supported; use `level` or \
             `target=level` directives separated by commas (e.g. info,berth_agent=debug)"
        ));
    }
    value.parse().map_err(|e| {
        format!(
            "{name} {value:?}: {e}; use `level` or `target=level` directives separated by \
             commas (e.g. info,berth_agent=debug)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
        let file: FileConfig = toml::from_str(toml_text).unwrap();
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        resolve(file, &env, Vec::new())
    }

    #[test]
    fn defaults_and_environment_overrides() {
        let cfg = parse(
            "cluster = \"prod\"\n[containerd]\nnamespace = \"x\"\n",
            &[
                ("BERTH_CLUSTER", "lab"),
                ("BERTH_RESERVED_MEMORY_MIB", "256"),
            ],
        )
        .unwrap();
        assert_eq!(cfg.cluster, "lab");
        assert_eq!(cfg.containerd.namespace, "x");
        assert_eq!(cfg.containerd.snapshotter, "overlayfs");
        assert_eq!(cfg.reserved_memory_mib, 256);
        assert_eq!(cfg.reserved_tcp_ports, DEFAULT_RESERVED_TCP);
    }

    #[test]
    fn instance_attributes_from_file_and_environment() {
        let cfg = parse("", &[]).unwrap();
        assert_eq!(cfg.instance, InstanceSection::default());
        assert_eq!(cfg.instance.availability_zone, "default");
        let cfg = parse(
            "[instance]\navailability_zone = \"lab-1a\"\n[instance.attributes]\nrack = \"r1\"\n",
            &[
                ("BERTH_AVAILABILITY_ZONE", "lab-1b"),
                ("BERTH_INSTANCE_ATTRIBUTES", r#"{"gpu": "yes"}"#),
            ],
        )
        .unwrap();
        assert_eq!(cfg.instance.availability_zone, "lab-1b");
        assert_eq!(cfg.instance.attributes["rack"], "r1");
        assert_eq!(cfg.instance.attributes["gpu"], "yes");
        let err = parse(
            "[instance.attributes]\n\"has space\" = \"x\"\n\"ecs.mine\" = \"y\"\nok = \"\"\n\"com.amazonaws.ecs.capability.mine\" = \"y\"\n",
            &[("BERTH_INSTANCE_ATTRIBUTES", "[1]")],
        )
        .unwrap_err();
        assert_eq!(err.0.len(), 5, "{err}");
    }

    #[test]
    fn reports_every_error_at_once() {
        let err = parse(
            "cluster = \"bad name\"\nendpoint = \"ftp://x\"\ndata_dir = \"rel\"\n[containerd]\nnamespace = \"-x\"\n",
            &[("BERTH_RESERVED_MEMORY_MIB", "lots")],
        )
        .unwrap_err();
        assert_eq!(err.0.len(), 5, "{err}");
        let text = err.to_string();
        for field in [
            "cluster",
            "endpoint",
            "data_dir",
            "namespace",
            "BERTH_RESERVED_MEMORY_MIB",
        ] {
            assert!(text.contains(field), "{field} missing from {text}");
        }
    }

    #[test]
    fn introspection_listens_on_loopback_51678_unless_moved_or_off() {
        let cfg = parse("", &[]).unwrap();
        assert_eq!(
            cfg.introspection_listen,
            Some("127.0.0.1:51678".parse().unwrap())
        );
        let cfg = parse("[introspection]\nlisten = \"127.0.0.1:9000\"\n", &[]).unwrap();
        assert_eq!(
            cfg.introspection_listen,
            Some("127.0.0.1:9000".parse().unwrap())
        );
        let cfg = parse(
            "[introspection]\nlisten = \"127.0.0.1:9000\"\n",
            &[("BERTH_INTROSPECTION_LISTEN", "off")],
        )
        .unwrap();
        assert_eq!(cfg.introspection_listen, None);
        let err = parse("[introspection]\nlisten = \"localhost\"\n", &[]).unwrap_err();
        assert!(
            err.to_string()
                .contains("[introspection] listen: \"localhost\""),
            "{err}"
        );
    }

    #[test]
    fn log_limits_from_file_and_environment() {
        let cfg = parse("", &[]).unwrap();
        assert_eq!(cfg.logs, LogsSection::default());
        let cfg = parse(
            "[logs]\nmax_size_mib = 1\nmax_files = 3\n",
            &[("BERTH_LOG_MAX_FILES", "7")],
        )
        .unwrap();
        assert_eq!((cfg.logs.max_size_mib, cfg.logs.max_files), (1, 7));
        let err = parse(
            "[logs]\nmax_size_mib = 0\n",
            &[("BERTH_LOG_MAX_FILES", "many")],
        )
        .unwrap_err();
        assert_eq!(err.0.len(), 2, "{err}");
        assert!(
            err.0.iter().any(|e| e.contains("logs.max_size_mib")),
            "{err}"
        );
        assert!(
            err.0.iter().any(|e| e.contains("BERTH_LOG_MAX_FILES")),
            "{err}"
        );
    }

    #[test]
    fn task_cleanup_wait_from_either_place_and_the_environment() {
        assert_eq!(
            parse("", &[]).unwrap().task_cleanup_wait_secs,
            DEFAULT_TASK_CLEANUP_WAIT_SECS
        );
        assert_eq!(
            parse("task_cleanup_wait_secs = 0\n", &[])
                .unwrap()
                .task_cleanup_wait_secs,
            0
        );
        let cfg = parse("[tasks]\ntask_cleanup_wait_secs = 60\n", &[]).unwrap();
        assert_eq!(cfg.task_cleanup_wait_secs, 60);
        let cfg = parse("", &[("BERTH_TASK_CLEANUP_WAIT_SECS", "5")]).unwrap();
        assert_eq!(cfg.task_cleanup_wait_secs, 5);
        let err = parse(
            "task_cleanup_wait_secs = 1\n[tasks]\ntask_cleanup_wait_secs = 2\n",
            &[("BERTH_TASK_CLEANUP_WAIT_SECS", "soon")],
        )
        .unwrap_err();
        assert_eq!(err.0.len(), 2, "{err}");
        assert_eq!(
            parse("", &[]).unwrap().manifest_grace_secs,
            DEFAULT_MANIFEST_GRACE_SECS
        );
        assert_eq!(
            parse("[tasks]\nmanifest_grace_secs = 5\n", &[])
                .unwrap()
                .manifest_grace_secs,
            5
        );
        let cfg = parse(
            "[images]\npull_behavior = \"once\"\ninsecure_registries = [\"127.0.0.1:5000\"]\n\
             [images.credentials.\"127.0.0.1:5000\"]\nusername = \"u\"\npassword = \"secret\"\n",
            &[],
        )
        .unwrap();
        assert_eq!(cfg.images.pull_behavior, "once");
        assert_eq!(cfg.images.insecure_registries, ["127.0.0.1:5000"]);
        assert!(
            !format!("{cfg:?}").contains("secret"),
            "a password in Debug output"
        );
        let err = parse("[images]\npull_behavior = \"sometimes\"\n", &[]).unwrap_err();
        assert!(err.to_string().contains("pull_behavior"), "{err}");
        let err = parse("[tasks]\nmanifest_grace_secs = 0\n", &[]).unwrap_err();
        assert!(err.to_string().contains("manifest_grace_secs"), "{err}");
        let err = parse("task_cleanup_wait_secs = 99999999\n", &[]).unwrap_err();
        assert!(err.to_string().contains("task_cleanup_wait_secs"), "{err}");
    }

    #[test]
    fn cgroups_section_defaults_and_checks() {
        let cfg = parse("", &[]).unwrap();
        assert_eq!(cfg.cgroups, CgroupsSection::default());
        assert_eq!(cfg.cgroups.root, "/berth");
        let cfg = parse(
            "[cgroups]\nroot = \"/berth-test/x\"\ncpu_period_us = 50000\npids_limit = 64\n",
            &[],
        )
        .unwrap();
        assert_eq!(cfg.cgroups.root, "/berth-test/x");
        assert_eq!(cfg.cgroups.pids_limit, Some(64));
        let err = parse(
            "[cgroups]\nroot = \"berth/../x\"\ncpu_period_us = 1\npids_limit = 0\n",
            &[],
        )
        .unwrap_err();
        assert_eq!(err.0.len(), 3, "{err}");
        assert!(parse("[cgroups]\nroot = \"/a/../b\"\n", &[]).is_err());
    }

    #[test]
    fn network_section_defaults() {
        let cfg = parse("", &[]).unwrap();
        let n = &cfg.network;
        assert_eq!(n.bridge, "berth0");
        assert_eq!(n.bridge_subnet.to_string(), "10.231.0.0/16");
        assert_eq!(n.gateway_device, "berth-tasks");
        assert_eq!(n.task_subnet.to_string(), "10.232.0.0/16");
        assert_eq!(n.nft_table, "berth");
        assert_eq!(n.name_prefix, "bth");
        assert_eq!(n.netns_dir, Path::new("/run/netns"));
        assert_eq!(n.reserved_tcp_ports, DEFAULT_RESERVED_TCP);
        assert!(n.reserved_udp_ports.is_empty());
        let kernel = kernel_ephemeral_ports(std::fs::read_to_string(IP_LOCAL_PORT_RANGE).ok());
        assert_eq!(n.dynamic_ports, kernel);
    }

    #[test]
    fn dynamic_ports_default_to_the_kernels_ephemeral_range() {
        assert_eq!(
            kernel_ephemeral_ports(Some("32768\t60999\n".into())),
            (32768, 60999)
        );
        for text in [
            None,
            Some(""),
            Some("9 8"),
            Some("80 90"),
            Some("1 2 3"),
            Some("x y"),
        ] {
            assert_eq!(
                kernel_ephemeral_ports(text.map(String::from)),
                FALLBACK_DYNAMIC_PORTS,
                "{text:?}"
            );
        }
    }

    #[test]
    fn network_section_from_file_and_environment() {
        let cfg = parse(
            "[resources]\nreserved_tcp_ports = [22]\nreserved_udp_ports = [53]\n\
             [network]\nbridge = \"br-x\"\nbridge_subnet = \"172.30.0.9/24\"\n\
             gateway_device = \"gw-x\"\ntask_subnet = \"172.31.0.0/20\"\n\
             nft_table = \"t_1\"\nname_prefix = \"t1\"\nnetns_dir = \"/run/berth/netns\"\n\
             dynamic_ports = \"40000-40100\"\n",
            &[],
        )
        .unwrap();
        let n = &cfg.network;
        assert_eq!(n.bridge, "br-x");
        assert_eq!(n.bridge_subnet.to_string(), "172.30.0.0/24");
        assert_eq!(n.gateway_device, "gw-x");
        assert_eq!(n.task_subnet.to_string(), "172.31.0.0/20");
        assert_eq!(
            (n.nft_table.as_str(), n.name_prefix.as_str()),
            ("t_1", "t1")
        );
        assert_eq!(n.netns_dir, Path::new("/run/berth/netns"));
        assert_eq!(n.dynamic_ports, (40000, 40100));
        assert_eq!(
            (
                n.reserved_tcp_ports.as_slice(),
                n.reserved_udp_ports.as_slice()
            ),
            (&[22][..], &[53][..])
        );

        let cfg = parse(
            "[network]\nbridge = \"br-x\"\ndynamic_ports = \"40000-40100\"\n",
            &[
                ("BERTH_NETWORK_BRIDGE", "br-env"),
                ("BERTH_NETWORK_BRIDGE_SUBNET", "10.50.0.0/16"),
                ("BERTH_NETWORK_TASK_SUBNET", "10.51.0.0/16"),
                ("BERTH_NETWORK_NFT_TABLE", "berth_e2e"),
                ("BERTH_NETWORK_NAME_PREFIX", "e2e"),
                ("BERTH_NETWORK_DYNAMIC_PORTS", "50000-50010"),
            ],
        )
        .unwrap();
        let n = &cfg.network;
        assert_eq!(n.bridge, "br-env");
        assert_eq!(n.bridge_subnet.to_string(), "10.50.0.0/16");
        assert_eq!(n.task_subnet.to_string(), "10.51.0.0/16");
        assert_eq!(n.nft_table, "berth_e2e");
        assert_eq!(n.name_prefix, "e2e");
        assert_eq!(n.dynamic_ports, (50000, 50010));
    }

    #[test]
    fn network_section_checks() {
        let err = parse(
            "[network]\nbridge = \"a/b\"\ngateway_device = \"sixteen-chars-xx\"\n\
             bridge_subnet = \"10.0.0.0/31\"\ntask_subnet = \"10.0.0.0/8\"\n\
             nft_table = \"no-dash\"\nname_prefix = \"Berth1\"\nnetns_dir = \"run/netns\"\n\
             dynamic_ports = \"1000-2000\"\n",
            &[],
        )
        .unwrap_err();
        let text = err.to_string();
        for needle in [
            "network.bridge \"a/b\"",
            "network.gateway_device \"sixteen-chars-xx\"",
            "network.bridge_subnet 10.0.0.0/31",
            "overlap",
            "network.nft_table",
            "network.name_prefix",
            "network.netns_dir",
            "network.dynamic_ports 1000-2000",
        ] {
            assert!(text.contains(needle), "{needle} missing from {text}");
        }
        assert_eq!(err.0.len(), 8, "{err}");

        // What does not parse is named with where it came from.
        let err = parse(
            "[network]\nbridge_subnet = \"10.0.0.0\"\ndynamic_ports = \"9000-8000\"\n",
            &[
                ("BERTH_NETWORK_TASK_SUBNET", "10.1.0.0/40"),
                ("BERTH_NETWORK_NAME_PREFIX", "toolong"),
            ],
        )
        .unwrap_err();
        let text = err.to_string();
        for needle in [
            "network.bridge_subnet: \"10.0.0.0\"",
            "BERTH_NETWORK_TASK_SUBNET: \"10.1.0.0/40\"",
            "network.dynamic_ports 9000-8000",
            "network.name_prefix \"toolong\"",
        ] {
            assert!(text.contains(needle), "{needle} missing from {text}");
        }
        assert_eq!(err.0.len(), 4, "{err}");
        let err = parse("", &[("BERTH_NETWORK_DYNAMIC_PORTS", "many")]).unwrap_err();
        assert!(
            err.to_string().contains("BERTH_NETWORK_DYNAMIC_PORTS"),
            "{err}"
        );
        let err = parse(
            "[network]\nbridge = \"same\"\ngateway_device = \"same\"\n",
            &[],
        )
        .unwrap_err();
        assert!(err.to_string().contains("must differ"), "{err}");
        assert!(toml::from_str::<FileConfig>("[network]\nbrige = \"x\"\n").is_err());
    }

    /// The example configuration we ship must load: install.sh copies it to /etc/berth.
    #[test]
    fn the_packaged_example_config_loads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/agent.toml");
        let cfg = load(Some(&path), &HashMap::new()).unwrap();
        assert_eq!(cfg.containerd.namespace, "berth");
        assert_eq!(cfg.network, parse("", &[]).unwrap().network);
    }

    #[test]
    fn unknown_keys_are_refused() {
        let path = std::env::temp_dir().join(format!("berth-cfg-{}.toml", fastrand::u64(..)));
        std::fs::write(&path, "clustr = \"typo\"\n").unwrap();
        let err = load(Some(&path), &HashMap::new()).unwrap_err();
        std::fs::remove_file(&path).unwrap();
        assert!(err.to_string().contains("clustr"), "{err}");
    }

    #[test]
    fn log_filter_takes_berth_log_then_rust_log_then_info() {
        use tracing::Level;
        let env = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let f = log_filter(&env(&[])).unwrap();
        assert!(f.would_enable("berth_agent::engine", &Level::INFO));
        assert!(!f.would_enable("berth_agent::engine", &Level::DEBUG));
        let f = log_filter(&env(&[("RUST_LOG", "  ")])).unwrap();
        assert!(f.would_enable("h2", &Level::INFO));

        let f = log_filter(&env(&[("RUST_LOG", "warn,berth_agent=debug")])).unwrap();
        assert!(f.would_enable("berth_agent::session", &Level::DEBUG));
        assert!(!f.would_enable("berth_agent::session", &Level::TRACE));
        assert!(!f.would_enable("h2::proto", &Level::INFO));
        assert!(f.would_enable("h2::proto", &Level::WARN));

        let f = log_filter(&env(&[("RUST_LOG", "warn"), ("BERTH_LOG", "DEBUG,h2=off")])).unwrap();
        assert!(f.would_enable("berth_agent", &Level::DEBUG));
        assert!(!f.would_enable("h2", &Level::ERROR));
    }

    #[test]
    fn log_filter_refuses_what_it_cannot_honour() {
        let env = |v: &str| HashMap::from([("BERTH_LOG".to_string(), v.to_string())]);
        for bad in [
            "berth_agent=loud",
            "info,[session]=debug",
            "berth_agent[{id=1}]=trace",
        ] {
            let err = log_filter(&env(bad)).unwrap_err();
            assert!(err.starts_with("BERTH_LOG "), "{err}");
            assert!(err.contains("target=level"), "{err}");
        }
    }
}
