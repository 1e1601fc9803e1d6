//! ECS container definitions and volumes, as JSON from the control plane, into domain types.
//! Pure. The control plane validated them already; the agent checks again (defence in depth)
//! and turns every problem into a task that stops with a reason, never a crash.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::health;
use crate::model::{
    ContainerExtra, ContainerSpec, Dependency, DependencyCondition, Device, HealthCheck,
    LinuxParameters, MountPoint, PortMapping, RestartPolicy, Tmpfs, Ulimit, Volume, VolumeFrom,
    VolumeKind, DEFAULT_STOP_TIMEOUT_SECS,
};
use crate::network::Protocol;

/// ECS limits.
pub const MAX_STOP_TIMEOUT_SECS: i64 = 120;
pub const DEFAULT_RESTART_ATTEMPT_PERIOD_SECS: u32 = 300;
pub const RESTART_ATTEMPT_PERIOD_RANGE: std::ops::RangeInclusive<i64> = 60..=1800;

/// Fields that mean nothing on a Berth host (or are not acted on yet): accepted and reported.
const IGNORED_FIELDS: &[&str] = &[
    "pseudoTerminal",
    "interactive",
    "disableNetworking",
    "links",
    "secrets",
    "repositoryCredentials",
    "firelensConfiguration",
    "systemControls",
    "resourceRequirements",
    "environmentFiles",
    "credentialSpecs",
    "dockerSecurityOptions",
    "versionConsistency",
];

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct RawContainer {
    name: String,
    image: String,
    essential: Option<bool>,
    entry_point: Option<Vec<String>>,
    command: Option<Vec<String>>,
    environment: Vec<RawKeyValue>,
    working_directory: Option<String>,
    user: Option<String>,
    cpu: Option<i64>,
    memory: Option<i64>,
    memory_reservation: Option<i64>,
    stop_timeout: Option<i64>,
    start_timeout: Option<i64>,
    hostname: Option<String>,
    readonly_root_filesystem: Option<bool>,
    privileged: Option<bool>,
    ulimits: Vec<RawUlimit>,
    docker_labels: BTreeMap<String, String>,
    linux_parameters: Option<RawLinux>,
    mount_points: Vec<RawMountPoint>,
    volumes_from: Vec<RawVolumeFrom>,
    depends_on: Vec<RawDependency>,
    restart_policy: Option<RawRestartPolicy>,
    log_configuration: Option<RawLogConfiguration>,
    port_mappings: Vec<RawPortMapping>,
    dns_servers: Vec<String>,
    dns_search_domains: Vec<String>,
    extra_hosts: Vec<RawExtraHost>,
    health_check: Option<RawHealthCheck>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct RawHealthCheck {
    command: Vec<String>,
    interval: Option<i64>,
    timeout: Option<i64>,
    retries: Option<i64>,
    start_period: Option<i64>,
}

/// A portMappings entry; `name` and `appProtocol` (Service Connect) are accepted and ignored.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct RawPortMapping {
    container_port: Option<i64>,
    host_port: Option<i64>,
    protocol: Option<String>,
    container_port_range: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawExtraHost {
    hostname: String,
    ip_address: String,
}

#[derive(Deserialize)]
struct RawKeyValue {
    name: String,
    #[serde(default)]
    value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawUlimit {
    name: String,
    soft_limit: i64,
    hard_limit: i64,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct RawLinux {
    capabilities: Option<RawCapabilities>,
    init_process_enabled: Option<bool>,
    shared_memory_size: Option<i64>,
    tmpfs: Vec<RawTmpfs>,
    devices: Vec<RawDevice>,
    max_swap: Option<i64>,
    swappiness: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RawCapabilities {
    add: Vec<String>,
    drop: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawTmpfs {
    container_path: String,
    size: i64,
    #[serde(default)]
    mount_options: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDevice {
    host_path: String,
    container_path: Option<String>,
    #[serde(default)]
    permissions: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawMountPoint {
    source_volume: String,
    container_path: String,
    #[serde(default)]
    read_only: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawVolumeFrom {
    source_container: String,
    #[serde(default)]
    read_only: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDependency {
    container_name: String,
    condition: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct RawRestartPolicy {
    enabled: bool,
    ignored_exit_codes: Vec<i32>,
    restart_attempt_period: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct RawLogConfiguration {
    log_driver: Option<String>,
    options: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawVolume {
    name: String,
    #[serde(default)]
    host: Option<RawHost>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawHost {
    source_path: Option<String>,
}

/// Parses one container definition; problems are appended to `problems`, each naming its field.
pub fn container(json: &str, problems: &mut Vec<String>) -> Option<ContainerSpec> {
    let value: Value = match serde_json::from_str(json) {
        Ok(v) => v,
        Err(e) => {
            problems.push(format!("container definition is not JSON: {e}"));
            return None;
        }
    };
    let raw: RawContainer = match serde_json::from_value(value.clone()) {
        Ok(r) => r,
        Err(e) => {
            problems.push(format!("container definition: {e}"));
            return None;
        }
    };
    let name = raw.name.clone();
    let mut bad =
        |field: &str, msg: String| problems.push(format!("container {name:?}: {field} {msg}"));

    let non_negative = |v: Option<i64>, field: &str, bad: &mut dyn FnMut(&str, String)| match v {
        Some(n) if n < 0 => {
            bad(field, format!("{n} must not be negative"));
            0
        }
        Some(n) => n.min(u32::MAX as i64) as u32,
        None => 0,
    };
    let cpu = non_negative(raw.cpu, "cpu", &mut bad);
    let memory_mib = non_negative(raw.memory, "memory", &mut bad);
    let memory_reservation_mib =
        non_negative(raw.memory_reservation, "memoryReservation", &mut bad);
    let stop_timeout_secs = match raw.stop_timeout {
        None | Some(0) => DEFAULT_STOP_TIMEOUT_SECS,
        Some(t) if (1..=MAX_STOP_TIMEOUT_SECS).contains(&t) => t as u32,
        Some(t) => {
            bad(
                "stopTimeout",
                format!("{t} is outside 0-{MAX_STOP_TIMEOUT_SECS}"),
            );
            DEFAULT_STOP_TIMEOUT_SECS
        }
    };
    let start_timeout_secs = match raw.start_timeout {
        None => None,
        Some(t) if t >= 0 => Some(t.min(u32::MAX as i64) as u32),
        Some(t) => {
            bad("startTimeout", format!("{t} must not be negative"));
            None
        }
    };
    let linux = raw
        .linux_parameters
        .map(|l| linux(l, &mut bad))
        .unwrap_or_default();
    let depends_on = raw
        .depends_on
        .into_iter()
        .filter_map(|d| {
            let condition = match d.condition.as_str() {
                "START" => DependencyCondition::Start,
                "COMPLETE" => DependencyCondition::Complete,
                "SUCCESS" => DependencyCondition::Success,
                "HEALTHY" => DependencyCondition::Healthy,
                other => {
                    bad(
                        "dependsOn",
                        format!("condition {other:?} is not START, COMPLETE, SUCCESS or HEALTHY"),
                    );
                    return None;
                }
            };
            Some(Dependency {
                container_name: d.container_name,
                condition,
            })
        })
        .collect();
    let health_check = raw.health_check.and_then(|h| health_check(h, &mut bad));
    let restart_policy = raw.restart_policy.map(|r| {
        let period = match r.restart_attempt_period {
            None => DEFAULT_RESTART_ATTEMPT_PERIOD_SECS,
            Some(p) if RESTART_ATTEMPT_PERIOD_RANGE.contains(&p) => p as u32,
            Some(p) => {
                bad(
                    "restartPolicy.restartAttemptPeriod",
                    format!("{p} is outside 60-1800 seconds"),
                );
                DEFAULT_RESTART_ATTEMPT_PERIOD_SECS
            }
        };
        RestartPolicy {
            enabled: r.enabled,
            ignored_exit_codes: r.ignored_exit_codes,
            restart_attempt_period_secs: period,
        }
    });
    let ulimits = raw
        .ulimits
        .into_iter()
        .filter_map(|u| {
            if u.soft_limit > u.hard_limit || u.soft_limit < 0 {
                bad(
                    "ulimits",
                    format!(
                        "{}: softLimit {} must be between 0 and hardLimit {}",
                        u.name, u.soft_limit, u.hard_limit
                    ),
                );
                return None;
            }
            Some(Ulimit {
                name: u.name,
                soft: u.soft_limit,
                hard: u.hard_limit,
            })
        })
        .collect();
    let mut ignored_fields: Vec<String> = value
        .as_object()
        .map(|o| {
            o.keys()
                .filter(|k| IGNORED_FIELDS.contains(&k.as_str()))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    ignored_fields.sort();
    let port_mappings = raw
        .port_mappings
        .into_iter()
        .filter_map(|m| port_mapping(m, &mut bad))
        .collect();
    let dns_servers = raw
        .dns_servers
        .into_iter()
        .filter(|s| {
            let ok = s.parse::<std::net::IpAddr>().is_ok();
            if !ok {
                bad("dnsServers", format!("{s:?} is not an IP address"));
            }
            ok
        })
        .collect();
    let dns_search_domains = raw
        .dns_search_domains
        .into_iter()
        .filter(|d| {
            let ok = is_domain_name(d);
            if !ok {
                bad("dnsSearchDomains", format!("{d:?} is not a domain name"));
            }
            ok
        })
        .collect();
    let extra_hosts = raw
        .extra_hosts
        .into_iter()
        .filter_map(|h| {
            if !is_domain_name(&h.hostname) {
                bad(
                    "extraHosts",
                    format!("hostname {:?} is not a host name", h.hostname),
                );
                return None;
            }
            if h.ip_address.parse::<std::net::IpAddr>().is_err() {
                bad(
                    "extraHosts",
                    format!(
                        "{}: ipAddress {:?} is not an IP address",
                        h.hostname, h.ip_address
                    ),
                );
                return None;
            }
            Some((h.hostname, h.ip_address))
        })
        .collect();
    let (log_driver, log_options) = match raw.log_configuration {
        Some(l) => (l.log_driver, l.options.into_iter().collect()),
        None => (None, Vec::new()),
    };
    let non_empty = |s: Option<String>| s.filter(|s| !s.is_empty());
    Some(ContainerSpec {
        essential: raw.essential.unwrap_or(true),
        entry_point: raw.entry_point.filter(|e| !e.is_empty()),
        command: raw.command,
        environment: raw
            .environment
            .into_iter()
            .map(|kv| (kv.name, kv.value))
            .collect(),
        working_directory: non_empty(raw.working_directory),
        user: non_empty(raw.user),
        cpu,
        memory_mib,
        memory_reservation_mib,
        stop_timeout_secs,
        extra: ContainerExtra {
            hostname: non_empty(raw.hostname),
            readonly_root_filesystem: raw.readonly_root_filesystem.unwrap_or(false),
            privileged: raw.privileged.unwrap_or(false),
            ulimits,
            labels: raw.docker_labels.into_iter().collect(),
            linux,
            mount_points: raw
                .mount_points
                .into_iter()
                .map(|m| MountPoint {
                    source_volume: m.source_volume,
                    container_path: m.container_path,
                    read_only: m.read_only,
                })
                .collect(),
            volumes_from: raw
                .volumes_from
                .into_iter()
                .map(|v| VolumeFrom {
                    source_container: v.source_container,
                    read_only: v.read_only,
                })
                .collect(),
            depends_on,
            start_timeout_secs,
            restart_policy,
            log_driver,
            log_options,
            port_mappings,
            dns_servers,
            dns_search_domains,
            extra_hosts,
            health_check,
            ignored_fields,
            registry_auth: None,
        },
        name: raw.name,
        image: raw.image,
    })
}

/// One portMappings entry: exactly one of containerPort and containerPortRange ("a-b").
fn port_mapping(m: RawPortMapping, bad: &mut dyn FnMut(&str, String)) -> Option<PortMapping> {
    let protocol = match m.protocol.as_deref().map(str::to_ascii_lowercase) {
        None => Protocol::Tcp,
        Some(p) => match Protocol::parse(&p) {
            Some(p) => p,
            None => {
                bad(
                    "portMappings.protocol",
                    format!("{:?} is not tcp or udp", m.protocol.unwrap_or_default()),
                );
                return None;
            }
        },
    };
    let port = |v: i64, field: &str, min: i64, bad: &mut dyn FnMut(&str, String)| {
        if (min..=65535).contains(&v) {
            Some(v as u16)
        } else {
            bad(field, format!("{v} is outside {min}-65535"));
            None
        }
    };
    let host_port = match m.host_port {
        None => None,
        Some(h) => Some(port(h, "portMappings.hostPort", 0, bad)?),
    };
    match (m.container_port, m.container_port_range) {
        (Some(p), None) => Some(PortMapping {
            container_port: Some(port(p, "portMappings.containerPort", 1, bad)?),
            host_port,
            protocol,
            container_port_range: None,
        }),
        (None, Some(range)) => {
            let parsed = range.split_once('-').and_then(|(a, b)| {
                let a: u16 = a.trim().parse().ok()?;
                let b: u16 = b.trim().parse().ok()?;
                (a >= 1 && a <= b).then_some((a, b))
            });
            let Some(parsed) = parsed else {
                bad(
                    "portMappings.containerPortRange",
                    format!("{range:?} is not a port range like \"8000-8010\" within 1-65535"),
                );
                return None;
            };
            if host_port.is_some_and(|h| h != 0) {
                bad(
                    "portMappings.hostPort",
                    format!("cannot be set with containerPortRange {range:?}: the agent picks the host ports"),
                );
                return None;
            }
            Some(PortMapping {
                container_port: None,
                host_port: None,
                protocol,
                container_port_range: Some(parsed),
            })
        }
        (Some(_), Some(_)) => {
            bad(
                "portMappings",
                "an entry has both containerPort and containerPortRange".into(),
            );
            None
        }
        (None, None) => {
            bad(
                "portMappings",
                "an entry needs containerPort or containerPortRange".into(),
            );
            None
        }
    }
}

/// A DNS name: dot-separated labels of letters, digits, '-' and '_', 253 characters at most.
fn is_domain_name(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

/// healthCheck with ECS's defaults; values outside ECS's ranges are problems, as at
/// registration. `["NONE"]` means no check.
fn health_check(h: RawHealthCheck, bad: &mut dyn FnMut(&str, String)) -> Option<HealthCheck> {
    let args = match health::exec_args(&h.command) {
        Ok(args) => args?,
        Err(e) => {
            bad("healthCheck.command", e);
            return None;
        }
    };
    let mut field = |name: &str, value: Option<i64>, default: u32, (lo, hi): (u32, u32)| match value
    {
        None => default,
        Some(v) if (i64::from(lo)..=i64::from(hi)).contains(&v) => v as u32,
        Some(v) => {
            bad(
                &format!("healthCheck.{name}"),
                format!("{v} is outside {lo}-{hi}"),
            );
            default
        }
    };
    Some(HealthCheck {
        args,
        interval_secs: field(
            "interval",
            h.interval,
            health::DEFAULT_INTERVAL_SECS,
            health::INTERVAL_RANGE,
        ),
        timeout_secs: field(
            "timeout",
            h.timeout,
            health::DEFAULT_TIMEOUT_SECS,
            health::TIMEOUT_RANGE,
        ),
        retries: field(
            "retries",
            h.retries,
            health::DEFAULT_RETRIES,
            health::RETRIES_RANGE,
        ),
        start_period_secs: field(
            "startPeriod",
            h.start_period,
            health::DEFAULT_START_PERIOD_SECS,
            health::START_PERIOD_RANGE,
        ),
    })
}

fn linux(l: RawLinux, bad: &mut dyn FnMut(&str, String)) -> LinuxParameters {
    let caps = l.capabilities.unwrap_or_default();
    let positive_mib = |v: i64, field: &str, bad: &mut dyn FnMut(&str, String)| {
        if v <= 0 {
            bad(field, format!("{v} must be a positive number of MiB"));
            None
        } else {
            Some(v.min(u32::MAX as i64) as u32)
        }
    };
    let shared_memory_size_mib = l
        .shared_memory_size
        .and_then(|v| positive_mib(v, "linuxParameters.sharedMemorySize", bad));
    let tmpfs = l
        .tmpfs
        .into_iter()
        .filter_map(|t| {
            let size = positive_mib(t.size, "linuxParameters.tmpfs.size", bad)?;
            Some(Tmpfs {
                container_path: t.container_path,
                size_mib: size,
                mount_options: t.mount_options,
            })
        })
        .collect();
    let swappiness = match l.swappiness {
        None => None,
        Some(s) if (0..=100).contains(&s) => Some(s as u32),
        Some(s) => {
            bad(
                "linuxParameters.swappiness",
                format!("{s} is outside 0-100"),
            );
            None
        }
    };
    if let Some(s) = l.max_swap {
        if s < 0 {
            bad(
                "linuxParameters.maxSwap",
                format!("{s} must not be negative"),
            );
        }
    }
    LinuxParameters {
        cap_add: caps.add,
        cap_drop: caps.drop,
        init_process_enabled: l.init_process_enabled.unwrap_or(false),
        shared_memory_size_mib,
        tmpfs,
        devices: l
            .devices
            .into_iter()
            .map(|d| Device {
                host_path: d.host_path,
                container_path: d.container_path,
                permissions: d.permissions,
            })
            .collect(),
        max_swap_mib: l.max_swap.filter(|s| *s >= 0),
        swappiness,
    }
}

/// Parses a task definition's `volumes` list (empty string: none).
pub fn volumes(json: &str, problems: &mut Vec<String>) -> Vec<Volume> {
    if json.trim().is_empty() || json.trim() == "null" {
        return Vec::new();
    }
    let raw: Vec<RawVolume> = match serde_json::from_str(json) {
        Ok(v) => v,
        Err(e) => {
            problems.push(format!("volumes: {e}"));
            return Vec::new();
        }
    };
    raw.into_iter()
        .map(|v| {
            let kind = match v.host.and_then(|h| h.source_path).filter(|p| !p.is_empty()) {
                Some(source_path) => {
                    if !source_path.starts_with('/') {
                        problems.push(format!(
                            "volumes: {:?}: host.sourcePath {source_path:?} must be absolute",
                            v.name
                        ));
                    }
                    VolumeKind::Host { source_path }
                }
                None => VolumeKind::Task,
            };
            Volume { name: v.name, kind }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_definition() {
        let json = r#"{
            "name": "web", "image": "nginx", "essential": false,
            "command": ["a"], "environment": [{"name": "K", "value": "V"}],
            "user": "app", "hostname": "h", "readonlyRootFilesystem": true,
            "ulimits": [{"name": "nofile", "softLimit": 10, "hardLimit": 20}],
            "dockerLabels": {"team": "x"},
            "linuxParameters": {"capabilities": {"add": ["NET_ADMIN"], "drop": ["MKNOD"]},
                "initProcessEnabled": true, "sharedMemorySize": 64,
                "tmpfs": [{"containerPath": "/scratch", "size": 16}], "swappiness": 10},
            "mountPoints": [{"sourceVolume": "data", "containerPath": "/data", "readOnly": true}],
            "volumesFrom": [{"sourceContainer": "other"}],
            "dependsOn": [{"containerName": "db", "condition": "HEALTHY"}],
            "restartPolicy": {"enabled": true, "ignoredExitCodes": [0], "restartAttemptPeriod": 60},
            "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": "g"}},
            "pseudoTerminal": true, "portMappings": []
        }"#;
        let mut problems = Vec::new();
        let c = container(json, &mut problems).unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        assert!(!c.essential);
        assert_eq!(c.stop_timeout_secs, DEFAULT_STOP_TIMEOUT_SECS);
        let x = &c.extra;
        assert!(x.readonly_root_filesystem);
        assert_eq!(x.ulimits[0].hard, 20);
        assert_eq!(x.labels, [("team".to_string(), "x".to_string())]);
        assert_eq!(x.linux.cap_add, ["NET_ADMIN"]);
        assert!(x.linux.init_process_enabled);
        assert_eq!(x.linux.tmpfs[0].size_mib, 16);
        assert!(x.mount_points[0].read_only);
        assert_eq!(x.depends_on[0].condition, DependencyCondition::Healthy);
        assert_eq!(
            x.restart_policy
                .as_ref()
                .unwrap()
                .restart_attempt_period_secs,
            60
        );
        assert_eq!(x.log_driver.as_deref(), Some("awslogs"));
        assert_eq!(x.ignored_fields, ["pseudoTerminal"]);
        assert!(x.port_mappings.is_empty());
    }

    #[test]
    fn parses_network_fields() {
        let json = r#"{
            "name": "web", "image": "nginx",
            "portMappings": [
                {"containerPort": 80},
                {"containerPort": 53, "hostPort": 5353, "protocol": "udp", "name": "dns"},
                {"containerPort": 8080, "hostPort": 0, "protocol": "tcp", "appProtocol": "http"},
                {"containerPortRange": "7000-7010", "protocol": "UDP"}
            ],
            "dnsServers": ["10.0.0.2", "fd00::53"],
            "dnsSearchDomains": ["corp.example", "lab.example."],
            "extraHosts": [{"hostname": "db", "ipAddress": "10.0.0.5"}],
            "links": ["other"]
        }"#;
        let mut problems = Vec::new();
        let c = container(json, &mut problems).unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        let x = &c.extra;
        assert_eq!(
            x.port_mappings,
            [
                PortMapping {
                    container_port: Some(80),
                    host_port: None,
                    protocol: Protocol::Tcp,
                    container_port_range: None,
                },
                PortMapping {
                    container_port: Some(53),
                    host_port: Some(5353),
                    protocol: Protocol::Udp,
                    container_port_range: None,
                },
                PortMapping {
                    container_port: Some(8080),
                    host_port: Some(0),
                    protocol: Protocol::Tcp,
                    container_port_range: None,
                },
                PortMapping {
                    container_port: None,
                    host_port: None,
                    protocol: Protocol::Udp,
                    container_port_range: Some((7000, 7010)),
                },
            ]
        );
        assert_eq!(x.dns_servers, ["10.0.0.2", "fd00::53"]);
        assert_eq!(x.dns_search_domains, ["corp.example", "lab.example."]);
        assert_eq!(x.extra_hosts, [("db".to_string(), "10.0.0.5".to_string())]);
        assert_eq!(x.ignored_fields, ["links"]);
    }

    #[test]
    fn names_bad_network_fields() {
        let json = r#"{"name": "c", "image": "i",
            "portMappings": [
                {"containerPort": 0},
                {"containerPort": 80, "hostPort": 70000},
                {"containerPort": 80, "protocol": "sctp"},
                {"containerPortRange": "9-8"},
                {"containerPortRange": "80"},
                {"containerPortRange": "1-2", "hostPort": 5},
                {"containerPort": 1, "containerPortRange": "1-2"},
                {"hostPort": 80},
                {"containerPort": 443}
            ],
            "dnsServers": ["dns.example"],
            "dnsSearchDomains": ["bad domain"],
            "extraHosts": [{"hostname": "db", "ipAddress": "nowhere"},
                           {"hostname": "a b", "ipAddress": "10.0.0.1"}]}"#;
        let mut problems = Vec::new();
        let c = container(json, &mut problems).unwrap();
        assert_eq!(problems.len(), 12, "{problems:#?}");
        let all = problems.join("\n");
        for needle in [
            "portMappings.containerPort 0 is outside 1-65535",
            "portMappings.hostPort 70000 is outside 0-65535",
            "portMappings.protocol \"sctp\" is not tcp or udp",
            "portMappings.containerPortRange \"9-8\"",
            "portMappings.containerPortRange \"80\"",
            "portMappings.hostPort cannot be set with containerPortRange",
            "both containerPort and containerPortRange",
            "needs containerPort or containerPortRange",
            "dnsServers \"dns.example\" is not an IP address",
            "dnsSearchDomains \"bad domain\"",
            "extraHosts db: ipAddress \"nowhere\"",
            "extraHosts hostname \"a b\"",
        ] {
            assert!(all.contains(needle), "{needle} missing in {all}");
        }
        assert!(all.starts_with("container \"c\": "), "{all}");
        // What was valid is kept.
        assert_eq!(c.extra.port_mappings.len(), 1);
        assert_eq!(c.extra.port_mappings[0].container_port, Some(443));
    }

    #[test]
    fn names_bad_fields() {
        let json = r#"{"name": "c", "image": "i", "memory": -1, "stopTimeout": 500,
            "dependsOn": [{"containerName": "x", "condition": "SOON"}],
            "restartPolicy": {"enabled": true, "restartAttemptPeriod": 5},
            "ulimits": [{"name": "nofile", "softLimit": 30, "hardLimit": 20}]}"#;
        let mut problems = Vec::new();
        container(json, &mut problems).unwrap();
        let all = problems.join("\n");
        for field in [
            "memory",
            "stopTimeout",
            "dependsOn",
            "restartAttemptPeriod",
            "ulimits",
        ] {
            assert!(all.contains(field), "{field} missing in {all}");
        }
        let mut problems = Vec::new();
        assert!(container(r#"{"name": 5}"#, &mut problems).is_none());
        assert_eq!(problems.len(), 1);
    }

    #[test]
    fn volumes_host_and_task() {
        let mut problems = Vec::new();
        let v = volumes(
            r#"[{"name": "h", "host": {"sourcePath": "/srv"}}, {"name": "t"}, {"name": "t2", "host": {}}]"#,
            &mut problems,
        );
        assert!(problems.is_empty());
        assert_eq!(
            v[0].kind,
            VolumeKind::Host {
                source_path: "/srv".into()
            }
        );
        assert_eq!(v[1].kind, VolumeKind::Task);
        assert_eq!(v[2].kind, VolumeKind::Task);
        assert!(volumes("", &mut problems).is_empty());
        volumes(
            r#"[{"name": "r", "host": {"sourcePath": "rel"}}]"#,
            &mut problems,
        );
        assert_eq!(problems.len(), 1);
    }
}
