//! ECS task-definition JSON -> validated domain types, and RunTask overrides. Pure.
//!
//! The raw JSON is what we store and echo back; this module decides whether it is acceptable and
//! extracts what Berth acts on. Which fields are acted on, ignored or refused is `compat`'s table.

use serde_json::{Map, Value};
use thiserror::Error;

use crate::domain::units;

/// Which ECS error code a validation problem maps to: missing/contradictory content is a
/// ClientException, a value of the wrong type or range an InvalidParameterException (as ECS does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    Client,
    InvalidParameter,
}

#[derive(Debug, Error, PartialEq, Eq)]
#[error("{}", problems.join("; "))]
pub struct TaskDefError {
    /// The kind of the first problem: ECS answers with one error code.
    pub kind: ProblemKind,
    pub problems: Vec<String>,
}

pub const NETWORK_MODES: &[&str] = &["bridge", "host", "none", "awsvpc"];
pub const MAX_STOP_TIMEOUT: i64 = 120;
/// ECS's range for task-level `cpu` on EC2 and external instances: 0.125 to 192 vCPUs.
pub const TASK_CPU_UNITS: std::ops::RangeInclusive<i64> = 128..=196_608;
/// The least memory ECS accepts for a container's `memory` or `memoryReservation` ("don't
/// specify less than 6 MiB", for Docker 20.10 and later; the agent itself needs 4 MiB). A task's
/// `memory` holds at least one container, so it has the same floor.
pub const MIN_MEMORY_MIB: i64 = 6;

#[derive(Debug, Clone, PartialEq)]
pub struct TaskDefSpec {
    pub family: String,
    pub network_mode: String,
    /// Task-level CPU units and MiB, when given.
    pub cpu: Option<i64>,
    pub memory: Option<i64>,
    pub containers: Vec<ContainerDef>,
    /// The definition's `volumes`, as given (a JSON list, or null).
    pub volumes: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ContainerDef {
    pub name: String,
    pub image: String,
    pub essential: bool,
    pub entry_point: Vec<String>,
    /// None: use the image's Cmd. Some(empty) is an explicit empty command.
    pub command: Option<Vec<String>>,
    pub environment: Vec<(String, String)>,
    pub working_directory: Option<String>,
    pub user: Option<String>,
    pub cpu: Option<i64>,
    pub memory: Option<i64>,
    pub memory_reservation: Option<i64>,
    pub stop_timeout: Option<i64>,
    /// portMappings, checked against the task's network mode.
    pub port_mappings: Vec<PortMapping>,
    /// The healthCheck; None without one, or with `["NONE"]`.
    pub health_check: Option<HealthCheck>,
    /// `repositoryCredentials.credentialsParameter`: the name or ARN of a secret held by
    /// berth-cp, whose login the agent pulls the image with.
    pub repository_credentials: Option<String>,
    /// The container definition as given, with overrides applied by `apply_overrides`: the
    /// agent reads every field it supports from this.
    pub raw: Value,
}

/// A container's healthCheck, validated, with ECS's defaults applied. The agent runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// As given: `["CMD", program, args...]` or `["CMD-SHELL", command]`.
    pub command: Vec<String>,
    /// Seconds.
    pub interval: i64,
    pub timeout: i64,
    pub retries: i64,
    pub start_period: i64,
}

/// ECS's limits and defaults for a healthCheck's interval, timeout, retries and startPeriod.
pub const HEALTH_INTERVAL: std::ops::RangeInclusive<i64> = 5..=300;
pub const DEFAULT_HEALTH_INTERVAL: i64 = 30;
pub const HEALTH_TIMEOUT: std::ops::RangeInclusive<i64> = 2..=60;
pub const DEFAULT_HEALTH_TIMEOUT: i64 = 5;
pub const HEALTH_RETRIES: std::ops::RangeInclusive<i64> = 1..=10;
pub const DEFAULT_HEALTH_RETRIES: i64 = 3;
pub const HEALTH_START_PERIOD: std::ops::RangeInclusive<i64> = 0..=300;
pub const DEFAULT_HEALTH_START_PERIOD: i64 = 0;

const HEALTH_COMMAND_FORMS: &str =
    r#"["CMD", "program", "arg", ...], ["CMD-SHELL", "command"] or ["NONE"]"#;

/// What a task definition says about one of its containers' health: whether the container is
/// essential and whether it has a healthCheck (other than `["NONE"]`). RunTask's overrides
/// change neither, so the task definition a task was made from answers for the task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthDef {
    pub name: String,
    pub essential: bool,
    pub health_check: bool,
}

/// Whether a healthCheck command runs something: `CMD` or `CMD-SHELL` followed by at least one
/// string (so not `["NONE"]`).
fn runs_a_check(command: &[String]) -> bool {
    match command.split_first() {
        Some((kind, rest)) => (kind == "CMD" || kind == "CMD-SHELL") && !rest.is_empty(),
        None => false,
    }
}

/// The [`HealthDef`] of each container of a stored definition. Lenient, unlike `parse`: a
/// definition registered under older rules is read as far as it goes.
pub fn health_defs(raw: &Value) -> Vec<HealthDef> {
    raw.get("containerDefinitions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| {
            let command: Vec<String> = c
                .get("healthCheck")
                .and_then(|h| h.get("command"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect();
            Some(HealthDef {
                name: c.get("name")?.as_str()?.to_string(),
                essential: c.get("essential").and_then(Value::as_bool).unwrap_or(true),
                health_check: runs_a_check(&command),
            })
        })
        .collect()
}

/// A transport protocol of a port mapping.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "tcp" => Some(Self::Tcp),
            "udp" => Some(Self::Udp),
            _ => None,
        }
    }
}

/// One portMappings entry, validated. Exactly one of `container_port` and
/// `container_port_range` is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PortMapping {
    pub protocol: Protocol,
    pub container_port: Option<u16>,
    /// containerPortRange "first-last", inclusive.
    pub container_port_range: Option<(u16, u16)>,
    /// 0 when omitted: a dynamic host port in bridge mode, the container port otherwise.
    pub host_port: u16,
}

impl PortMapping {
    /// The container ports, first and last (the same for a single port).
    pub fn container_ports(&self) -> (u16, u16) {
        match (self.container_port, self.container_port_range) {
            (_, Some(range)) => range,
            (Some(p), None) => (p, p),
            (None, None) => (0, 0),
        }
    }
}

/// Host ports of one protocol, first to last inclusive: what a task holds on its instance.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct PortRange {
    pub protocol: Protocol,
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub fn single(protocol: Protocol, port: u16) -> Self {
        Self {
            protocol,
            first: port,
            last: port,
        }
    }

    pub fn overlaps(&self, other: &PortRange) -> bool {
        self.protocol == other.protocol && self.first <= other.last && other.first <= self.last
    }
}

impl std::fmt::Display for PortRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.first == self.last {
            write!(f, "{}/{}", self.first, self.protocol.as_str())
        } else {
            write!(f, "{}-{}/{}", self.first, self.last, self.protocol.as_str())
        }
    }
}

/// What a task asks of an instance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Needs {
    pub cpu: i64,
    pub memory: i64,
}

impl TaskDefSpec {
    /// Task-level values win; otherwise the containers' sum (memoryReservation is what the
    /// scheduler reserves, memory the hard limit).
    pub fn needs(&self) -> Needs {
        let memory = self.memory.unwrap_or_else(|| {
            self.containers
                .iter()
                .map(|c| c.memory_reservation.or(c.memory).unwrap_or(0))
                .sum()
        });
        let cpu = self
            .cpu
            .unwrap_or_else(|| self.containers.iter().map(|c| c.cpu.unwrap_or(0)).sum());
        Needs { cpu, memory }
    }

    /// The fixed host ports the task holds on its instance, as ECS counts RESOURCE:PORTS: in
    /// host mode every container port (ranges included), in bridge mode every non-zero
    /// hostPort. Dynamic host ports, and awsvpc tasks (their own address), need none.
    pub fn host_ports(&self) -> Vec<PortRange> {
        let mut out: Vec<PortRange> = Vec::new();
        for m in self.containers.iter().flat_map(|c| &c.port_mappings) {
            let range = match self.network_mode.as_str() {
                "host" => {
                    let (first, last) = m.container_ports();
                    PortRange {
                        protocol: m.protocol,
                        first,
                        last,
                    }
                }
                "bridge" if m.host_port != 0 => PortRange::single(m.protocol, m.host_port),
                _ => continue,
            };
            if !out.contains(&range) {
                out.push(range);
            }
        }
        out.sort();
        out
    }
}

/// Collects problems so one response lists them all.
#[derive(Default)]
struct Problems(Vec<(ProblemKind, String)>);

impl Problems {
    fn client(&mut self, field: &str, msg: impl std::fmt::Display) {
        self.0
            .push((ProblemKind::Client, format!("{field}: {msg}")));
    }
    fn invalid(&mut self, field: &str, msg: impl std::fmt::Display) {
        self.0
            .push((ProblemKind::InvalidParameter, format!("{field}: {msg}")));
    }
    fn finish<T>(self, value: T) -> Result<T, TaskDefError> {
        match self.0.first() {
            None => Ok(value),
            Some((kind, _)) => Err(TaskDefError {
                kind: *kind,
                problems: self.0.into_iter().map(|(_, m)| m).collect(),
            }),
        }
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Parses and validates a RegisterTaskDefinition request body.
pub fn parse(raw: &Value) -> Result<TaskDefSpec, TaskDefError> {
    let mut p = Problems::default();
    let Some(obj) = raw.as_object() else {
        p.invalid("request", "must be a JSON object");
        return Err(p.finish(()).unwrap_err());
    };

    let family = match obj.get("family") {
        None | Some(Value::Null) => {
            p.client("family", "required");
            String::new()
        }
        Some(Value::String(s)) if valid_name(s) => s.clone(),
        Some(Value::String(_)) => {
            p.invalid(
                "family",
                "must be 1-255 letters, digits, hyphens or underscores",
            );
            String::new()
        }
        Some(_) => {
            p.invalid("family", "must be a string");
            String::new()
        }
    };

    let network_mode = match opt_string(&mut p, obj, "networkMode", "networkMode") {
        None => "bridge".to_string(),
        Some(m) if NETWORK_MODES.contains(&m.as_str()) => m,
        Some(m) => {
            p.invalid(
                "networkMode",
                format!("{m:?} is not one of bridge, host, none, awsvpc"),
            );
            "bridge".to_string()
        }
    };
    let cpu = opt_units(&mut p, obj, "cpu", units::parse_cpu);
    let memory = opt_units(&mut p, obj, "memory", units::parse_memory);

    let mut containers = Vec::new();
    match obj.get("containerDefinitions") {
        None | Some(Value::Null) => p.client("containerDefinitions", "required"),
        Some(Value::Array(defs)) if defs.is_empty() => {
            p.client("containerDefinitions", "at least one container is required")
        }
        Some(Value::Array(defs)) => {
            for (i, def) in defs.iter().enumerate() {
                let path = format!("containerDefinitions[{i}]");
                if let Some(c) = parse_container(&mut p, &path, def, &network_mode) {
                    if containers.iter().any(|o: &ContainerDef| o.name == c.name) {
                        p.client(
                            &format!("{path}.name"),
                            format!("duplicate container name {:?}", c.name),
                        );
                    }
                    containers.push(c);
                }
            }
            check_dependencies(&mut p, &containers);
            check_port_conflicts(&mut p, &network_mode, &containers);
            if !containers.is_empty() && !containers.iter().any(|c| c.essential) {
                p.client(
                    "containerDefinitions",
                    "no essential container: at least one container must be essential",
                );
            }
            check_resources(&mut p, cpu, memory, &containers, &|i, key| match i {
                Some(i) => format!("containerDefinitions[{i}].{key}"),
                None => key.to_string(),
            });
            if memory.is_none() {
                for (i, c) in containers.iter().enumerate() {
                    if c.memory.is_none() && c.memory_reservation.is_none() {
                        p.client(
                            &format!("containerDefinitions[{i}].memory"),
                            "memory or memoryReservation is required when the task has no task-level memory",
                        );
                    }
                }
            }
        }
        Some(_) => p.invalid("containerDefinitions", "must be a list"),
    }

    p.finish(TaskDefSpec {
        family,
        network_mode,
        cpu,
        memory,
        containers,
        volumes: obj.get("volumes").cloned().unwrap_or(Value::Null),
    })
}

fn parse_container(
    p: &mut Problems,
    path: &str,
    def: &Value,
    network_mode: &str,
) -> Option<ContainerDef> {
    let Some(obj) = def.as_object() else {
        p.invalid(path, "must be an object");
        return None;
    };
    let f = |name: &str| format!("{path}.{name}");

    let name = match opt_string(p, obj, "name", &f("name")) {
        None => {
            p.client(&f("name"), "required");
            String::new()
        }
        Some(n) if valid_name(&n) => n,
        Some(n) => {
            p.invalid(
                &f("name"),
                format!("{n:?} must be 1-255 letters, digits, hyphens or underscores"),
            );
            n
        }
    };
    let image = match opt_string(p, obj, "image", &f("image")) {
        Some(i) if !i.trim().is_empty() => i,
        _ => {
            p.client(&f("image"), "required");
            String::new()
        }
    };
    let essential = match obj.get("essential") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            p.invalid(&f("essential"), "must be true or false");
            true
        }
    };
    let cpu = opt_non_negative(p, obj, "cpu", &f("cpu"));
    let memory = opt_non_negative(p, obj, "memory", &f("memory"));
    let memory_reservation = opt_non_negative(p, obj, "memoryReservation", &f("memoryReservation"));
    let stop_timeout = opt_non_negative(p, obj, "stopTimeout", &f("stopTimeout"));
    if let Some(t) = stop_timeout {
        if t > MAX_STOP_TIMEOUT {
            p.invalid(
                &f("stopTimeout"),
                format!("{t} is more than the maximum of {MAX_STOP_TIMEOUT} seconds"),
            );
        }
    }

    lifecycle_fields(p, obj, &f);
    let health_check = health_check(p, obj, &f);
    let repository_credentials = repository_credentials(p, obj, &f);
    let port_mappings = port_mappings(p, obj, &f, network_mode);
    network_fields(p, obj, &f, network_mode);

    Some(ContainerDef {
        name,
        image,
        essential,
        entry_point: opt_string_list(p, obj, "entryPoint", &f("entryPoint")).unwrap_or_default(),
        command: opt_string_list(p, obj, "command", &f("command")),
        environment: key_values(p, obj.get("environment"), &f("environment")),
        working_directory: opt_string(p, obj, "workingDirectory", &f("workingDirectory")),
        user: opt_string(p, obj, "user", &f("user")),
        cpu,
        memory,
        memory_reservation,
        stop_timeout,
        port_mappings,
        health_check,
        repository_credentials,
        raw: def.clone(),
    })
}

/// `repositoryCredentials`: an object with a non-empty string `credentialsParameter` (a secret's
/// name or ARN). The secret need not exist yet: RunTask checks.
fn repository_credentials(
    p: &mut Problems,
    obj: &Map<String, Value>,
    f: &dyn Fn(&str) -> String,
) -> Option<String> {
    let rc = match obj.get("repositoryCredentials") {
        None | Some(Value::Null) => return None,
        Some(Value::Object(rc)) => rc,
        Some(_) => {
            p.client(
                &f("repositoryCredentials"),
                "must be an object {\"credentialsParameter\": \"<secret name or ARN>\"}",
            );
            return None;
        }
    };
    let path = f("repositoryCredentials.credentialsParameter");
    match rc.get("credentialsParameter") {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
        None | Some(Value::Null) => {
            p.client(
                &path,
                "required: the name or ARN of a secret held by berth-cp (berthctl create-secret)",
            );
            None
        }
        Some(Value::String(_)) => {
            p.client(&path, "must not be empty");
            None
        }
        Some(_) => {
            p.client(&path, "must be a string (a secret's name or ARN)");
            None
        }
    }
}

/// A container's healthCheck, as ECS checks it at registration. None without one, with
/// `["NONE"]`, or when its command is not valid (reported).
fn health_check(
    p: &mut Problems,
    obj: &Map<String, Value>,
    f: &dyn Fn(&str) -> String,
) -> Option<HealthCheck> {
    let h = match obj.get("healthCheck") {
        None | Some(Value::Null) => return None,
        Some(Value::Object(h)) => h,
        Some(_) => {
            p.invalid(&f("healthCheck"), "must be an object");
            return None;
        }
    };
    let g = |key: &str| f(&format!("healthCheck.{key}"));
    let command = health_command(p, h, &g("command"));
    let number =
        |p: &mut Problems, key: &str, default: i64, range: std::ops::RangeInclusive<i64>| {
            let unit = if key == "retries" { "" } else { " seconds" };
            match h.get(key) {
                None | Some(Value::Null) => default,
                Some(v) => match v.as_i64() {
                    Some(n) if range.contains(&n) => n,
                    _ => {
                        p.invalid(
                            &g(key),
                            format!(
                                "{v} must be between {} and {}{unit}",
                                range.start(),
                                range.end()
                            ),
                        );
                        default
                    }
                },
            }
        };
    let interval = number(p, "interval", DEFAULT_HEALTH_INTERVAL, HEALTH_INTERVAL);
    let timeout = number(p, "timeout", DEFAULT_HEALTH_TIMEOUT, HEALTH_TIMEOUT);
    let retries = number(p, "retries", DEFAULT_HEALTH_RETRIES, HEALTH_RETRIES);
    let start_period = number(
        p,
        "startPeriod",
        DEFAULT_HEALTH_START_PERIOD,
        HEALTH_START_PERIOD,
    );
    Some(HealthCheck {
        command: command?,
        interval,
        timeout,
        retries,
        start_period,
    })
}

/// A healthCheck's command: Some when it runs a check; None for `["NONE"]`, or when it is not
/// valid (reported).
fn health_command(p: &mut Problems, h: &Map<String, Value>, path: &str) -> Option<Vec<String>> {
    let command = match h.get("command") {
        None | Some(Value::Null) => {
            p.client(path, format!("required: {HEALTH_COMMAND_FORMS}"));
            return None;
        }
        Some(_) => opt_string_list(p, h, "command", path)?,
    };
    let Some((kind, rest)) = command.split_first() else {
        p.client(path, format!("empty: it must be {HEALTH_COMMAND_FORMS}"));
        return None;
    };
    let program = rest.first().is_some_and(|a| !a.trim().is_empty());
    let shell_command = rest.iter().any(|a| !a.trim().is_empty());
    let runs = match kind.as_str() {
        "NONE" if rest.is_empty() => false,
        "NONE" => {
            p.invalid(path, "[\"NONE\"] takes nothing after NONE");
            false
        }
        "CMD" if !program => {
            p.client(path, CMD_EXAMPLE);
            false
        }
        "CMD-SHELL" if !shell_command => {
            p.client(path, CMD_SHELL_EXAMPLE);
            false
        }
        "CMD" | "CMD-SHELL" => true,
        other => {
            p.invalid(
                path,
                format!(
                    "{other:?} is not CMD, CMD-SHELL or NONE: the command must be {HEALTH_COMMAND_FORMS}"
                ),
            );
            false
        }
    };
    runs.then_some(command)
}

const CMD_EXAMPLE: &str =
    r#"CMD needs the program to run after it, e.g. ["CMD", "/bin/check", "--quick"]"#;
const CMD_SHELL_EXAMPLE: &str = r#"CMD-SHELL needs the shell command after it, e.g. ["CMD-SHELL", "curl -f http://localhost/ || exit 1"]"#;

fn opt_string(p: &mut Problems, obj: &Map<String, Value>, key: &str, path: &str) -> Option<String> {
    match obj.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            p.invalid(path, "must be a string");
            None
        }
    }
}

fn opt_string_list(
    p: &mut Problems,
    obj: &Map<String, Value>,
    key: &str,
    path: &str,
) -> Option<Vec<String>> {
    match obj.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => Some(
            items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
        ),
        Some(_) => {
            p.invalid(path, "must be a list of strings");
            None
        }
    }
}

fn key_values(p: &mut Problems, v: Option<&Value>, path: &str) -> Vec<(String, String)> {
    let items = match v {
        None | Some(Value::Null) => return Vec::new(),
        Some(Value::Array(items)) => items,
        Some(_) => {
            p.invalid(path, "must be a list of {name, value}");
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let name = item.get("name").and_then(Value::as_str);
        let value = item.get("value").and_then(Value::as_str).unwrap_or("");
        match name {
            Some(n) if !n.is_empty() => out.push((n.to_string(), value.to_string())),
            _ => p.invalid(&format!("{path}[{i}].name"), "required"),
        }
    }
    out
}

fn opt_non_negative(
    p: &mut Problems,
    obj: &Map<String, Value>,
    key: &str,
    path: &str,
) -> Option<i64> {
    match obj.get(key) {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_i64() {
            Some(n) if (0..=i32::MAX as i64).contains(&n) => Some(n),
            Some(n) => {
                p.invalid(path, format!("{n} must be a non-negative integer"));
                None
            }
            None => {
                p.invalid(path, format!("{v} must be a non-negative integer"));
                None
            }
        },
    }
}

const MAX_PORT: i64 = 65_535;

/// "first-last" with 1 <= first < last <= 65535.
pub fn parse_port_range(s: &str) -> Option<(u16, u16)> {
    let (a, b) = s.split_once('-')?;
    let a: u16 = a.trim().parse().ok()?;
    let b: u16 = b.trim().parse().ok()?;
    (a >= 1 && a < b).then_some((a, b))
}

/// One container's portMappings, as ECS checks them for the task's network mode. Conflicts
/// between mappings are `check_port_conflicts`'s.
fn port_mappings(
    p: &mut Problems,
    obj: &Map<String, Value>,
    f: &dyn Fn(&str) -> String,
    network_mode: &str,
) -> Vec<PortMapping> {
    let items = match obj.get("portMappings") {
        None | Some(Value::Null) => return Vec::new(),
        Some(Value::Array(items)) => items,
        Some(_) => {
            p.invalid(&f("portMappings"), "must be a list");
            return Vec::new();
        }
    };
    if network_mode == "none" && !items.is_empty() {
        p.client(
            &f("portMappings"),
            "not allowed with networkMode none: its containers have no network to map ports from",
        );
        return Vec::new();
    }
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = f(&format!("portMappings[{i}]"));
        let g = |k: &str| format!("{path}.{k}");
        let Some(m) = item.as_object() else {
            p.invalid(&path, "must be an object");
            continue;
        };
        let port = |p: &mut Problems, key: &str, min: i64| -> Result<Option<u16>, ()> {
            match m.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => match v.as_i64() {
                    Some(n) if (min..=MAX_PORT).contains(&n) => Ok(Some(n as u16)),
                    _ => {
                        p.invalid(
                            &g(key),
                            format!("{v} must be a port number from {min} to {MAX_PORT}"),
                        );
                        Err(())
                    }
                },
            }
        };
        let (Ok(container_port), Ok(host_port)) =
            (port(p, "containerPort", 1), port(p, "hostPort", 0))
        else {
            continue;
        };
        let host_port = host_port.unwrap_or(0);
        let range = match m.get("containerPortRange") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => match parse_port_range(s) {
                Some(r) => Some(r),
                None => {
                    p.invalid(
                        &g("containerPortRange"),
                        format!(
                            "{s:?} must be \"first-last\", ports from 1 to {MAX_PORT} with first below last"
                        ),
                    );
                    continue;
                }
            },
            Some(_) => {
                p.invalid(&g("containerPortRange"), "must be a string \"first-last\"");
                continue;
            }
        };
        let protocol = match m.get("protocol") {
            None | Some(Value::Null) => Protocol::Tcp,
            Some(Value::String(s)) => match Protocol::parse(s) {
                Some(proto) => proto,
                None => {
                    p.invalid(&g("protocol"), format!("{s:?} is not tcp or udp"));
                    continue;
                }
            },
            Some(_) => {
                p.invalid(&g("protocol"), "must be a string");
                continue;
            }
        };
        match (container_port, range) {
            (None, None) => {
                p.client(
                    &g("containerPort"),
                    "required (or containerPortRange for a range of ports)",
                );
                continue;
            }
            (Some(_), Some(_)) => {
                p.client(&path, "give containerPort or containerPortRange, not both");
                continue;
            }
            _ => {}
        }
        if host_port != 0 {
            if let Some((a, b)) = range {
                let why = match network_mode {
                    "bridge" => "the host ports of a range are dynamic".to_string(),
                    mode => format!("in {mode} network mode a range is bound on the same ports"),
                };
                p.client(
                    &g("hostPort"),
                    format!("must be omitted with containerPortRange {a}-{b}: {why}"),
                );
                continue;
            }
            if let Some(c) = container_port
                .filter(|c| *c != host_port && matches!(network_mode, "host" | "awsvpc"))
            {
                p.client(
                    &g("hostPort"),
                    format!(
                        "{host_port} must be omitted or equal to containerPort ({c}) in {network_mode} network mode"
                    ),
                );
                continue;
            }
        }
        out.push(PortMapping {
            protocol,
            container_port,
            container_port_range: range,
            host_port,
        });
    }
    out
}

/// Ports mapped twice in one task: a container port (with its protocol) may be mapped once,
/// since a task's containers share one network namespace on Berth (ECS allows it once per
/// container); and, in bridge mode, a fixed hostPort once. In host and awsvpc mode the host
/// port is the container port, so the first rule covers both.
fn check_port_conflicts(p: &mut Problems, network_mode: &str, containers: &[ContainerDef]) {
    let mut seen: Vec<(String, PortRange, Option<PortRange>)> = Vec::new();
    for (i, c) in containers.iter().enumerate() {
        for (j, m) in c.port_mappings.iter().enumerate() {
            let label = format!("containerDefinitions[{i}].portMappings[{j}]");
            let (first, last) = m.container_ports();
            let ports = PortRange {
                protocol: m.protocol,
                first,
                last,
            };
            let host = (network_mode == "bridge" && m.host_port != 0)
                .then(|| PortRange::single(m.protocol, m.host_port));
            if let Some((other, _, _)) = seen.iter().find(|(_, o, _)| o.overlaps(&ports)) {
                let key = if m.container_port_range.is_some() {
                    "containerPortRange"
                } else {
                    "containerPort"
                };
                p.client(
                    &format!("{label}.{key}"),
                    format!(
                        "{ports} is already mapped by {other}: a task's containers share one network namespace"
                    ),
                );
            } else if let Some((other, _, _)) = host.and_then(|h| {
                seen.iter()
                    .find(|(_, _, o)| o.is_some_and(|o| o.overlaps(&h)))
            }) {
                p.client(
                    &format!("{label}.hostPort"),
                    format!(
                        "{} is already the hostPort of {other}",
                        host.expect("checked")
                    ),
                );
            }
            seen.push((label, ports, host));
        }
    }
}

/// ECS's dnsSearchDomains pattern: ^[a-zA-Z0-9-.]{0,253}[a-zA-Z0-9]$.
fn valid_search_domain(s: &str) -> bool {
    (1..=254).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// hostname, dnsServers, dnsSearchDomains and extraHosts of one container.
fn network_fields(
    p: &mut Problems,
    obj: &Map<String, Value>,
    f: &dyn Fn(&str) -> String,
    network_mode: &str,
) {
    let ipv4 = |s: &str| s.parse::<std::net::Ipv4Addr>().is_ok();
    if let Some(h) = opt_string(p, obj, "hostname", &f("hostname")) {
        if network_mode == "awsvpc" {
            p.client(
                &f("hostname"),
                format!("{h:?}: hostname is not supported when networkMode is awsvpc (as on ECS)"),
            );
        }
    }
    for (i, s) in opt_string_list(p, obj, "dnsServers", &f("dnsServers"))
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        if !ipv4(s) {
            p.invalid(
                &f(&format!("dnsServers[{i}]")),
                format!("{s:?} is not an IPv4 address"),
            );
        }
    }
    for (i, s) in opt_string_list(p, obj, "dnsSearchDomains", &f("dnsSearchDomains"))
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        if !valid_search_domain(s) {
            p.invalid(
                &f(&format!("dnsSearchDomains[{i}]")),
                format!("{s:?} is not a domain name (letters, digits, '-' and '.', at most 254)"),
            );
        }
    }
    match obj.get("extraHosts") {
        None | Some(Value::Null) => {}
        Some(Value::Array(hosts)) => {
            for (i, h) in hosts.iter().enumerate() {
                let path = f(&format!("extraHosts[{i}]"));
                let Some(h) = h.as_object() else {
                    p.invalid(&path, "must be an object {hostname, ipAddress}");
                    continue;
                };
                match opt_string(p, h, "hostname", &format!("{path}.hostname")) {
                    Some(n) if !n.trim().is_empty() && !n.contains(char::is_whitespace) => {}
                    Some(n) => p.invalid(
                        &format!("{path}.hostname"),
                        format!("{n:?} is not a host name"),
                    ),
                    None => p.client(&format!("{path}.hostname"), "required"),
                }
                match opt_string(p, h, "ipAddress", &format!("{path}.ipAddress")) {
                    Some(a) if ipv4(&a) => {}
                    Some(a) => p.invalid(
                        &format!("{path}.ipAddress"),
                        format!("{a:?} is not an IPv4 address"),
                    ),
                    None => p.client(&format!("{path}.ipAddress"), "required"),
                }
            }
        }
        Some(_) => p.invalid(&f("extraHosts"), "must be a list of {hostname, ipAddress}"),
    }
}

/// ECS's bounds for restartPolicy.restartAttemptPeriod (seconds) and its default.
pub const RESTART_ATTEMPT_PERIOD: std::ops::RangeInclusive<i64> = 60..=1800;
const MAX_IGNORED_EXIT_CODES: usize = 50;
const DEPENDENCY_CONDITIONS: &[&str] = &["START", "COMPLETE", "SUCCESS", "HEALTHY"];

/// The shape of dependsOn, startTimeout and restartPolicy in one container definition.
fn lifecycle_fields(p: &mut Problems, obj: &Map<String, Value>, f: &dyn Fn(&str) -> String) {
    opt_non_negative(p, obj, "startTimeout", &f("startTimeout"));
    match obj.get("dependsOn") {
        None | Some(Value::Null) => {}
        Some(Value::Array(deps)) => {
            for (i, d) in deps.iter().enumerate() {
                let path = f(&format!("dependsOn[{i}]"));
                let Some(d) = d.as_object() else {
                    p.invalid(&path, "must be an object");
                    continue;
                };
                if opt_string(p, d, "containerName", &format!("{path}.containerName")).is_none() {
                    p.client(&format!("{path}.containerName"), "required");
                }
                match opt_string(p, d, "condition", &format!("{path}.condition")) {
                    None => p.client(&format!("{path}.condition"), "required"),
                    Some(c) if DEPENDENCY_CONDITIONS.contains(&c.as_str()) => {}
                    Some(c) => p.invalid(
                        &format!("{path}.condition"),
                        format!("{c:?} is not one of START, COMPLETE, SUCCESS, HEALTHY"),
                    ),
                }
            }
        }
        Some(_) => p.invalid(&f("dependsOn"), "must be a list"),
    }
    match obj.get("restartPolicy") {
        None | Some(Value::Null) => {}
        Some(Value::Object(r)) => {
            match r.get("enabled") {
                Some(Value::Bool(_)) => {}
                None | Some(Value::Null) => p.client(&f("restartPolicy.enabled"), "required"),
                Some(_) => p.invalid(&f("restartPolicy.enabled"), "must be true or false"),
            }
            match r.get("ignoredExitCodes") {
                None | Some(Value::Null) => {}
                Some(Value::Array(codes))
                    if codes
                        .iter()
                        .all(|c| c.as_i64().is_some_and(|c| i32::try_from(c).is_ok())) =>
                {
                    if codes.len() > MAX_IGNORED_EXIT_CODES {
                        p.invalid(
                            &f("restartPolicy.ignoredExitCodes"),
                            format!("at most {MAX_IGNORED_EXIT_CODES} exit codes"),
                        );
                    }
                }
                Some(_) => p.invalid(
                    &f("restartPolicy.ignoredExitCodes"),
                    "must be a list of integers",
                ),
            }
            match r.get("restartAttemptPeriod") {
                None | Some(Value::Null) => {}
                Some(v) => match v.as_i64() {
                    Some(n) if RESTART_ATTEMPT_PERIOD.contains(&n) => {}
                    _ => p.invalid(
                        &f("restartPolicy.restartAttemptPeriod"),
                        format!("{v} must be between 60 and 1800 seconds"),
                    ),
                },
            }
        }
        Some(_) => p.invalid(&f("restartPolicy"), "must be an object"),
    }
}

/// dependsOn across containers: names that exist, no self-dependency, no cycle, no COMPLETE or
/// SUCCESS on an essential container (its exit stops the task, so nothing could ever start
/// after it), and HEALTHY only on a container with a healthCheck.
fn check_dependencies(p: &mut Problems, containers: &[ContainerDef]) {
    let deps_of = |c: &ContainerDef| -> Vec<(String, String)> {
        c.raw
            .get("dependsOn")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|d| {
                Some((
                    d.get("containerName")?.as_str()?.to_string(),
                    d.get("condition")?.as_str()?.to_string(),
                ))
            })
            .collect()
    };
    for (i, c) in containers.iter().enumerate() {
        for (j, (name, condition)) in deps_of(c).into_iter().enumerate() {
            let path = format!("containerDefinitions[{i}].dependsOn[{j}]");
            if name == c.name {
                p.client(
                    &format!("{path}.containerName"),
                    format!("container {name:?} cannot depend on itself"),
                );
                continue;
            }
            let Some(dep) = containers.iter().find(|o| o.name == name) else {
                p.client(
                    &format!("{path}.containerName"),
                    format!("no container named {name:?} in the task definition"),
                );
                continue;
            };
            if condition == "HEALTHY" && dep.health_check.is_none() {
                // As ECS: HEALTHY needs a container with a health check. An invalid healthCheck
                // is reported with it.
                let why = match dep.raw.get("healthCheck") {
                    None | Some(Value::Null) => Some(format!("{name:?} has no healthCheck")),
                    Some(h) if h.get("command") == Some(&serde_json::json!(["NONE"])) => Some(
                        format!("the healthCheck of {name:?} is [\"NONE\"], which disables it"),
                    ),
                    Some(_) => None,
                };
                if let Some(why) = why {
                    p.client(
                        &format!("{path}.condition"),
                        format!(
                            "HEALTHY on {name:?} can never be met: {why}; give {name:?} a healthCheck, or use START"
                        ),
                    );
                }
            }
            if dep.essential && (condition == "COMPLETE" || condition == "SUCCESS") {
                p.client(
                    &format!("{path}.condition"),
                    format!(
                        "{condition} on {name:?} can never be met: {name:?} is essential, so its exit stops the task; make it non-essential"
                    ),
                );
            }
        }
    }
    // Depth-first search over the names; a name met again on the current path closes a cycle.
    let graph: Vec<(String, Vec<String>)> = containers
        .iter()
        .map(|c| {
            (
                c.name.clone(),
                deps_of(c).into_iter().map(|d| d.0).collect(),
            )
        })
        .collect();
    fn visit(
        name: &str,
        graph: &[(String, Vec<String>)],
        path: &mut Vec<String>,
        done: &mut std::collections::HashSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == name) {
            let mut cycle = path[at..].to_vec();
            cycle.push(name.to_string());
            return Some(cycle);
        }
        if !done.insert(name.to_string()) {
            return None;
        }
        path.push(name.to_string());
        let next = graph
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, d)| d.clone());
        for d in next.unwrap_or_default() {
            if d != name {
                if let Some(c) = visit(&d, graph, path, done) {
                    return Some(c);
                }
            }
        }
        path.pop();
        None
    }
    let mut done = std::collections::HashSet::new();
    if let Some(cycle) = graph
        .iter()
        .find_map(|(n, _)| visit(n, &graph, &mut Vec::new(), &mut done))
    {
        p.client(
            "containerDefinitions.dependsOn",
            format!("dependencies form a cycle: {}", cycle.join(" -> ")),
        );
    }
}

/// The resource rules ECS applies at registration, and again to a task's definition with its
/// RunTask overrides applied. `field(Some(i), key)` names container `i`'s field `key`,
/// `field(None, key)` the task-level one. ECS answers all of these with a ClientException.
fn check_resources(
    p: &mut Problems,
    task_cpu: Option<i64>,
    task_memory: Option<i64>,
    containers: &[ContainerDef],
    field: &dyn Fn(Option<usize>, &str) -> String,
) {
    if let Some(cpu) = task_cpu {
        if !TASK_CPU_UNITS.contains(&cpu) {
            p.client(
                &field(None, "cpu"),
                format!(
                    "{cpu} CPU units is outside the range for EC2 and external instances: \
                     {} (0.125 vCPU) to {} (192 vCPU)",
                    TASK_CPU_UNITS.start(),
                    TASK_CPU_UNITS.end()
                ),
            );
        }
    }
    if let Some(memory) = task_memory {
        if memory < MIN_MEMORY_MIB {
            p.client(
                &field(None, "memory"),
                format!("{memory} MiB is below the minimum of {MIN_MEMORY_MIB} MiB"),
            );
        }
    }
    for (i, c) in containers.iter().enumerate() {
        for (key, value) in [
            ("memory", c.memory),
            ("memoryReservation", c.memory_reservation),
        ] {
            if let Some(v) = value.filter(|v| *v < MIN_MEMORY_MIB) {
                p.client(
                    &field(Some(i), key),
                    format!("{v} MiB is below the minimum of {MIN_MEMORY_MIB} MiB"),
                );
            }
        }
        if let (Some(m), Some(r)) = (c.memory, c.memory_reservation) {
            if r > m {
                p.invalid(
                    &field(Some(i), "memoryReservation"),
                    format!("{r} must not be greater than memory ({m})"),
                );
            }
        }
        if let (Some(m), Some(task)) = (c.memory, task_memory) {
            if m > task {
                p.client(
                    &field(Some(i), "memory"),
                    format!("{m} MiB is more than the task's memory ({task} MiB)"),
                );
            }
        }
    }
    // What the containers reserve together must fit in the task: each container reserves its
    // memoryReservation, else its memory (hard limits may add up to more, as in ECS).
    if let Some(task) = task_memory {
        let reserved: i64 = containers
            .iter()
            .map(|c| c.memory_reservation.or(c.memory).unwrap_or(0))
            .sum();
        if reserved > task {
            p.client(
                &field(None, "memory"),
                format!(
                    "the containers reserve {reserved} MiB together (memoryReservation, else \
                     memory), more than the task's {task} MiB"
                ),
            );
        }
    }
    if let Some(task) = task_cpu {
        let sum: i64 = containers.iter().map(|c| c.cpu.unwrap_or(0)).sum();
        if sum > task {
            p.client(
                &field(None, "cpu"),
                format!("the containers' cpu adds up to {sum} units, more than the task's {task}"),
            );
        }
    }
}

/// Task-level cpu/memory: ECS sends strings; numbers are accepted too since people write them.
fn opt_units(
    p: &mut Problems,
    obj: &Map<String, Value>,
    key: &str,
    parse: fn(&str) -> Result<i64, units::UnitError>,
) -> Option<i64> {
    let text = match obj.get(key) {
        None | Some(Value::Null) => return None,
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => {
            p.invalid(key, "must be a string");
            return None;
        }
    };
    match parse(&text) {
        Ok(v) => Some(v),
        Err(e) => {
            p.invalid(key, e);
            None
        }
    }
}

// ---------------------------------------------------------------- RunTask overrides

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    pub containers: Vec<ContainerOverride>,
    pub cpu: Option<i64>,
    pub memory: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerOverride {
    pub name: String,
    pub command: Option<Vec<String>>,
    pub environment: Vec<(String, String)>,
    pub cpu: Option<i64>,
    pub memory: Option<i64>,
    pub memory_reservation: Option<i64>,
}

/// Parses RunTask's `overrides` member.
pub fn parse_overrides(raw: Option<&Value>) -> Result<Overrides, TaskDefError> {
    let mut p = Problems::default();
    let obj = match raw {
        None | Some(Value::Null) => return Ok(Overrides::default()),
        Some(Value::Object(o)) => o,
        Some(_) => {
            p.invalid("overrides", "must be an object");
            return p.finish(Overrides::default());
        }
    };
    let cpu = opt_units(&mut p, obj, "cpu", units::parse_cpu);
    let memory = opt_units(&mut p, obj, "memory", units::parse_memory);
    let mut containers = Vec::new();
    match obj.get("containerOverrides") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let path = format!("overrides.containerOverrides[{i}]");
                let Some(o) = item.as_object() else {
                    p.invalid(&path, "must be an object");
                    continue;
                };
                let f = |k: &str| format!("{path}.{k}");
                let name = opt_string(&mut p, o, "name", &f("name")).unwrap_or_default();
                if name.is_empty() {
                    p.invalid(&f("name"), "required");
                }
                containers.push(ContainerOverride {
                    name,
                    command: opt_string_list(&mut p, o, "command", &f("command")),
                    environment: key_values(&mut p, o.get("environment"), &f("environment")),
                    cpu: opt_non_negative(&mut p, o, "cpu", &f("cpu")),
                    memory: opt_non_negative(&mut p, o, "memory", &f("memory")),
                    memory_reservation: opt_non_negative(
                        &mut p,
                        o,
                        "memoryReservation",
                        &f("memoryReservation"),
                    ),
                });
            }
        }
        Some(_) => p.invalid("overrides.containerOverrides", "must be a list"),
    }
    p.finish(Overrides {
        containers,
        cpu,
        memory,
    })
}

/// The definition as this task will run it: overrides applied, environment merged by name.
pub fn apply_overrides(def: &TaskDefSpec, o: &Overrides) -> Result<TaskDefSpec, TaskDefError> {
    let mut p = Problems::default();
    let mut out = def.clone();
    out.cpu = o.cpu.or(def.cpu);
    out.memory = o.memory.or(def.memory);
    for (i, co) in o.containers.iter().enumerate() {
        let Some(c) = out.containers.iter_mut().find(|c| c.name == co.name) else {
            p.invalid(
                &format!("overrides.containerOverrides[{i}].name"),
                format!("no container named {:?} in {}", co.name, def.family),
            );
            continue;
        };
        if co.command.is_some() {
            c.command = co.command.clone();
        }
        for (name, value) in &co.environment {
            match c.environment.iter_mut().find(|(n, _)| n == name) {
                Some(kv) => kv.1 = value.clone(),
                None => c.environment.push((name.clone(), value.clone())),
            }
        }
        c.cpu = co.cpu.or(c.cpu);
        c.memory = co.memory.or(c.memory);
        c.memory_reservation = co.memory_reservation.or(c.memory_reservation);
        sync_raw(c);
    }
    // The same rules as at registration; a problem names the override when one set the field.
    let names: Vec<String> = out.containers.iter().map(|c| c.name.clone()).collect();
    check_resources(&mut p, out.cpu, out.memory, &out.containers, &|i, key| {
        let overridden = |set: &dyn Fn(&ContainerOverride) -> bool| {
            o.containers
                .iter()
                .position(|co| i.is_some_and(|i| co.name == names[i]) && set(co))
        };
        let by_override = match (i, key) {
            (None, "cpu") if o.cpu.is_some() => return "overrides.cpu".to_string(),
            (None, "memory") if o.memory.is_some() => return "overrides.memory".to_string(),
            (None, _) => return key.to_string(),
            (Some(_), "cpu") => overridden(&|co| co.cpu.is_some()),
            (Some(_), "memory") => overridden(&|co| co.memory.is_some()),
            (Some(_), _) => overridden(&|co| co.memory_reservation.is_some()),
        };
        match (by_override, i) {
            (Some(j), _) => format!("overrides.containerOverrides[{j}].{key}"),
            (None, Some(i)) => format!("containerDefinitions[{i}].{key}"),
            (None, None) => key.to_string(),
        }
    });
    p.finish(out)
}

/// Writes the overridable fields back into the raw definition the agent receives.
fn sync_raw(c: &mut ContainerDef) {
    let Some(obj) = c.raw.as_object_mut() else {
        return;
    };
    if let Some(cmd) = &c.command {
        obj.insert("command".into(), serde_json::json!(cmd));
    }
    let env: Vec<Value> = c
        .environment
        .iter()
        .map(|(name, value)| serde_json::json!({"name": name, "value": value}))
        .collect();
    obj.insert("environment".into(), Value::Array(env));
    for (key, v) in [
        ("cpu", c.cpu),
        ("memory", c.memory),
        ("memoryReservation", c.memory_reservation),
    ] {
        if let Some(v) = v {
            obj.insert(key.into(), serde_json::json!(v));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok_def() -> Value {
        json!({
            "family": "web",
            "containerDefinitions": [
                {"name": "app", "image": "nginx", "memory": 128},
                {"name": "side", "image": "busybox", "memoryReservation": 64, "essential": false}
            ]
        })
    }

    fn err(v: Value) -> TaskDefError {
        parse(&v).expect_err("should be refused")
    }

    #[test]
    fn accepts_a_plain_definition_with_defaults() {
        let d = parse(&ok_def()).unwrap();
        assert_eq!(d.family, "web");
        assert_eq!(d.network_mode, "bridge");
        assert!(d.containers[0].essential);
        assert!(!d.containers[1].essential);
        assert_eq!(
            d.needs(),
            Needs {
                cpu: 0,
                memory: 192
            }
        );
    }

    #[test]
    fn task_level_units_win() {
        let mut v = ok_def();
        v["cpu"] = json!("0.5 vCPU");
        v["memory"] = json!("1 GB");
        let d = parse(&v).unwrap();
        assert_eq!(
            d.needs(),
            Needs {
                cpu: 512,
                memory: 1024
            }
        );
    }

    #[test]
    fn family_required_and_well_formed() {
        let mut v = ok_def();
        v.as_object_mut().unwrap().remove("family");
        let e = err(v);
        assert_eq!(e.kind, ProblemKind::Client);
        assert_eq!(e.problems, vec!["family: required"]);
        let mut v = ok_def();
        v["family"] = json!("bad name!");
        assert!(err(v).problems[0].starts_with("family:"));
    }

    #[test]
    fn containers_required() {
        let e = err(json!({"family": "x", "containerDefinitions": []}));
        assert!(e.problems[0].starts_with("containerDefinitions:"));
        let e = err(json!({"family": "x"}));
        assert_eq!(e.problems, vec!["containerDefinitions: required"]);
    }

    #[test]
    fn image_and_name_required() {
        let mut v = ok_def();
        v["containerDefinitions"][1]
            .as_object_mut()
            .unwrap()
            .remove("image");
        assert_eq!(
            err(v).problems,
            vec!["containerDefinitions[1].image: required"]
        );
        let mut v = ok_def();
        v["containerDefinitions"][0]
            .as_object_mut()
            .unwrap()
            .remove("name");
        assert_eq!(
            err(v).problems,
            vec!["containerDefinitions[0].name: required"]
        );
    }

    #[test]
    fn repository_credentials_name_a_secret() {
        let mut v = ok_def();
        v["containerDefinitions"][0]["repositoryCredentials"] =
            json!({"credentialsParameter": "arn:aws:secretsmanager:r:a:secret:reg"});
        let d = parse(&v).unwrap();
        assert_eq!(
            d.containers[0].repository_credentials.as_deref(),
            Some("arn:aws:secretsmanager:r:a:secret:reg")
        );
        assert_eq!(d.containers[1].repository_credentials, None);
        for (bad, why) in [
            (json!("reg"), "containerDefinitions[0].repositoryCredentials: must be an object"),
            (json!({}), "containerDefinitions[0].repositoryCredentials.credentialsParameter: required"),
            (
                json!({"credentialsParameter": ""}),
                "containerDefinitions[0].repositoryCredentials.credentialsParameter: must not be empty",
            ),
            (
                json!({"credentialsParameter": 5}),
                "containerDefinitions[0].repositoryCredentials.credentialsParameter: must be a string",
            ),
        ] {
            let mut v = ok_def();
            v["containerDefinitions"][0]["repositoryCredentials"] = bad.clone();
            let e = err(v);
            assert_eq!(e.kind, ProblemKind::Client, "{bad}");
            assert!(e.problems[0].starts_with(why), "{bad}: {:?}", e.problems);
        }
    }

    #[test]
    fn duplicate_names_refused() {
        let mut v = ok_def();
        v["containerDefinitions"][1]["name"] = json!("app");
        assert_eq!(
            err(v).problems,
            vec!["containerDefinitions[1].name: duplicate container name \"app\""]
        );
    }

    #[test]
    fn negative_memory_is_an_invalid_parameter() {
        let mut v = ok_def();
        v["containerDefinitions"][0]["memory"] = json!(-5);
        let e = err(v);
        assert_eq!(e.kind, ProblemKind::InvalidParameter);
        assert!(e.problems[0].starts_with("containerDefinitions[0].memory:"));
    }

    #[test]
    fn non_integer_cpu_refused() {
        let mut v = ok_def();
        v["containerDefinitions"][0]["cpu"] = json!("lots");
        assert!(err(v).problems[0].starts_with("containerDefinitions[0].cpu:"));
    }

    #[test]
    fn needs_an_essential_container() {
        let mut v = ok_def();
        v["containerDefinitions"][0]["essential"] = json!(false);
        assert!(err(v).problems[0].contains("no essential container"));
    }

    #[test]
    fn reservation_not_above_memory() {
        let mut v = ok_def();
        v["containerDefinitions"][0]["memoryReservation"] = json!(256);
        assert!(err(v).problems[0].starts_with("containerDefinitions[0].memoryReservation:"));
    }

    #[test]
    fn memory_required_somewhere() {
        let mut v = ok_def();
        v["containerDefinitions"][0]
            .as_object_mut()
            .unwrap()
            .remove("memory");
        assert!(err(v.clone()).problems[0].starts_with("containerDefinitions[0].memory:"));
        v["memory"] = json!("512");
        assert!(parse(&v).is_ok());
    }

    #[test]
    fn network_mode_and_stop_timeout_checked() {
        let mut v = ok_def();
        v["networkMode"] = json!("overlay");
        assert!(err(v).problems[0].starts_with("networkMode:"));
        let mut v = ok_def();
        v["containerDefinitions"][0]["stopTimeout"] = json!(121);
        assert!(err(v).problems[0].starts_with("containerDefinitions[0].stopTimeout:"));
    }

    #[test]
    fn bad_task_memory_units() {
        let mut v = ok_def();
        v["memory"] = json!("2 parsecs");
        let e = err(v);
        assert_eq!(e.kind, ProblemKind::InvalidParameter);
        assert!(e.problems[0].starts_with("memory:"));
    }

    fn problem_fields(e: &TaskDefError) -> Vec<&str> {
        e.problems
            .iter()
            .map(|m| m.split(':').next().unwrap())
            .collect()
    }

    #[test]
    fn container_memory_not_above_task_memory() {
        let mut v = ok_def();
        v["memory"] = json!("100");
        let e = err(v.clone());
        assert_eq!(e.kind, ProblemKind::Client);
        assert_eq!(
            problem_fields(&e),
            vec!["containerDefinitions[0].memory", "memory"]
        );
        assert!(e.problems[0].contains("128 MiB is more than the task's memory (100 MiB)"));
        v["memory"] = json!("192");
        assert!(
            parse(&v).is_ok(),
            "reservations summing to the task memory fit exactly"
        );
    }

    #[test]
    fn reservations_together_not_above_task_memory() {
        let mut v = ok_def();
        v["memory"] = json!("160");
        // app reserves its memory (128), side its reservation (64): 192 > 160.
        let e = err(v.clone());
        assert_eq!(e.kind, ProblemKind::Client);
        assert_eq!(problem_fields(&e), vec!["memory"]);
        assert!(e.problems[0].contains("192 MiB"), "{e}");
        // Hard limits may add up to more than the task, as long as the reservations fit.
        v["containerDefinitions"][0]["memoryReservation"] = json!(96);
        v["containerDefinitions"][1]["memory"] = json!(160);
        assert!(parse(&v).is_ok());
    }

    #[test]
    fn container_cpu_together_not_above_task_cpu() {
        let mut v = ok_def();
        v["cpu"] = json!("256");
        v["containerDefinitions"][0]["cpu"] = json!(128);
        v["containerDefinitions"][1]["cpu"] = json!(128);
        assert!(parse(&v).is_ok(), "an exact fit is accepted");
        v["containerDefinitions"][1]["cpu"] = json!(129);
        let e = err(v);
        assert_eq!(e.kind, ProblemKind::Client);
        assert_eq!(
            e.problems,
            vec!["cpu: the containers' cpu adds up to 257 units, more than the task's 256"]
        );
    }

    #[test]
    fn task_cpu_within_the_ec2_range() {
        for (cpu, ok) in [
            ("127", false),
            ("128", true),
            ("192 vCPU", true),
            ("196609", false),
        ] {
            let mut v = ok_def();
            v["cpu"] = json!(cpu);
            match parse(&v) {
                Ok(_) => assert!(ok, "{cpu} accepted"),
                Err(e) => {
                    assert!(!ok, "{cpu} refused: {e}");
                    assert_eq!(problem_fields(&e), vec!["cpu"]);
                    assert_eq!(e.kind, ProblemKind::Client);
                }
            }
        }
    }

    #[test]
    fn memory_and_reservation_at_least_6_mib() {
        let mut v = ok_def();
        v["containerDefinitions"][0]["memory"] = json!(5);
        v["containerDefinitions"][1]["memoryReservation"] = json!(0);
        let e = err(v.clone());
        assert_eq!(e.kind, ProblemKind::Client);
        assert_eq!(
            problem_fields(&e),
            vec![
                "containerDefinitions[0].memory",
                "containerDefinitions[1].memoryReservation"
            ]
        );
        assert!(e.problems[0].contains("5 MiB is below the minimum of 6 MiB"));
        v["containerDefinitions"][0]["memory"] = json!(6);
        v["containerDefinitions"][1]["memoryReservation"] = json!(6);
        assert!(parse(&v).is_ok());
        let mut v = ok_def();
        v["memory"] = json!("5");
        assert!(problem_fields(&err(v)).contains(&"memory"));
    }

    #[test]
    fn overrides_are_checked_with_the_same_rules() {
        let mut v = ok_def();
        v["memory"] = json!("512");
        v["cpu"] = json!("256");
        let d = parse(&v).unwrap();
        let run = |o: Value| apply_overrides(&d, &parse_overrides(Some(&o)).unwrap());

        let e = run(json!({"containerOverrides": [{"name": "app", "memory": 1024}]})).unwrap_err();
        assert_eq!(e.kind, ProblemKind::Client);
        assert_eq!(
            problem_fields(&e),
            vec!["overrides.containerOverrides[0].memory", "memory"]
        );
        let e = run(json!({"memory": "100"})).unwrap_err();
        assert_eq!(
            problem_fields(&e),
            vec!["containerDefinitions[0].memory", "overrides.memory"]
        );
        let e = run(json!({"containerOverrides": [{"name": "side", "memoryReservation": 4}]}))
            .unwrap_err();
        assert_eq!(
            problem_fields(&e),
            vec!["overrides.containerOverrides[0].memoryReservation"]
        );
        let e = run(json!({"containerOverrides": [{"name": "app", "cpu": 512}]})).unwrap_err();
        assert_eq!(problem_fields(&e), vec!["cpu"]);
        assert!(run(json!({"cpu": "64"})).is_err());
        let ok = run(json!({"cpu": "1 vCPU", "containerOverrides": [{"name": "app", "cpu": 512, "memory": 448}]}))
            .unwrap();
        assert_eq!(
            ok.needs(),
            Needs {
                cpu: 1024,
                memory: 512
            }
        );
    }

    #[test]
    fn all_problems_reported_together() {
        let e = err(json!({"containerDefinitions": [{"name": "a"}]}));
        assert_eq!(e.problems.len(), 3, "{:?}", e.problems);
    }

    #[test]
    fn overrides_apply_and_merge_environment() {
        let mut v = ok_def();
        v["containerDefinitions"][0]["environment"] =
            json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]);
        let d = parse(&v).unwrap();
        let o = parse_overrides(Some(&json!({
            "containerOverrides": [{"name": "app", "command": [], "memory": 256,
                "environment": [{"name": "B", "value": "x"}, {"name": "C", "value": "3"}]}],
            "cpu": "1 vCPU"
        })))
        .unwrap();
        let e = apply_overrides(&d, &o).unwrap();
        let app = &e.containers[0];
        assert_eq!(app.command, Some(vec![]));
        assert_eq!(app.memory, Some(256));
        assert_eq!(
            app.environment,
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "x".into()),
                ("C".into(), "3".into())
            ]
        );
        assert_eq!(e.cpu, Some(1024));
        let bad =
            parse_overrides(Some(&json!({"containerOverrides": [{"name": "nope"}]}))).unwrap();
        assert!(apply_overrides(&d, &bad).is_err());
    }

    fn with_deps(app_deps: Value, side_deps: Value) -> Value {
        let mut v = ok_def();
        v["containerDefinitions"][0]["dependsOn"] = app_deps;
        v["containerDefinitions"][1]["dependsOn"] = side_deps;
        v
    }

    #[test]
    fn depends_on_start_timeout_and_restart_policy_are_accepted() {
        let mut v = with_deps(
            json!([{"containerName": "side", "condition": "SUCCESS"}]),
            Value::Null,
        );
        v["containerDefinitions"][0]["startTimeout"] = json!(30);
        v["containerDefinitions"][0]["restartPolicy"] =
            json!({"enabled": true, "ignoredExitCodes": [0], "restartAttemptPeriod": 60});
        parse(&v).unwrap();
    }

    #[test]
    fn depends_on_names_unknown_self_and_cycles() {
        let e = err(with_deps(
            json!([{"containerName": "nope", "condition": "START"}]),
            json!([{"containerName": "side", "condition": "START"}]),
        ));
        assert_eq!(e.kind, ProblemKind::Client);
        assert!(
            e.problems[0].starts_with("containerDefinitions[0].dependsOn[0].containerName:"),
            "{e:?}"
        );
        assert!(e.problems[1].contains("itself"), "{e:?}");
        let e = err(with_deps(
            json!([{"containerName": "side", "condition": "START"}]),
            json!([{"containerName": "app", "condition": "START"}]),
        ));
        assert!(
            e.problems
                .iter()
                .any(|p| p.contains("cycle: app -> side -> app")),
            "{e:?}"
        );
    }

    #[test]
    fn complete_or_success_on_an_essential_container_is_refused() {
        let e = err(with_deps(
            Value::Null,
            json!([{"containerName": "app", "condition": "COMPLETE"}]),
        ));
        assert!(e.problems[0].starts_with("containerDefinitions[1].dependsOn[0].condition:"));
        assert!(e.problems[0].contains("essential"), "{e:?}");
        // START on an essential container is fine.
        assert!(parse(&with_deps(
            Value::Null,
            json!([{"containerName": "app", "condition": "START"}])
        ))
        .is_ok());
    }

    #[test]
    fn bad_conditions_are_invalid_parameters() {
        let e = err(with_deps(
            json!([{"containerName": "side", "condition": "SOON"}]),
            Value::Null,
        ));
        assert_eq!(e.kind, ProblemKind::InvalidParameter);
        assert!(e.problems[0].starts_with("containerDefinitions[0].dependsOn[0].condition:"));
    }

    #[test]
    fn healthy_needs_a_container_with_a_health_check() {
        let healthy_on_side = || {
            with_deps(
                json!([{"containerName": "side", "condition": "HEALTHY"}]),
                Value::Null,
            )
        };
        let e = err(healthy_on_side());
        assert_eq!(e.kind, ProblemKind::Client);
        assert_eq!(
            e.problems,
            vec![
                "containerDefinitions[0].dependsOn[0].condition: HEALTHY on \"side\" can never be met: \"side\" has no healthCheck; give \"side\" a healthCheck, or use START"
            ]
        );
        let mut v = healthy_on_side();
        v["containerDefinitions"][1]["healthCheck"] = json!({"command": ["NONE"]});
        assert!(err(v).problems[0].contains("is [\"NONE\"], which disables it"));
        let mut v = healthy_on_side();
        v["containerDefinitions"][1]["healthCheck"] =
            json!({"command": ["CMD-SHELL", "pg_isready"]});
        let d = parse(&v).unwrap();
        assert!(d.containers[1].health_check.is_some());
        // A container with an invalid healthCheck gets one problem, not two.
        let mut v = healthy_on_side();
        v["containerDefinitions"][1]["healthCheck"] = json!({"command": ["pg_isready"]});
        assert_eq!(
            problem_fields(&err(v)),
            vec!["containerDefinitions[1].healthCheck.command"]
        );
    }

    fn with_check(check: Value) -> Value {
        let mut v = ok_def();
        v["containerDefinitions"][0]["healthCheck"] = check;
        v
    }

    #[test]
    fn health_checks_get_ecs_defaults() {
        let d = parse(&with_check(
            json!({"command": ["CMD-SHELL", "curl -f http://localhost/ || exit 1"]}),
        ))
        .unwrap();
        assert_eq!(
            d.containers[0].health_check,
            Some(HealthCheck {
                command: vec![
                    "CMD-SHELL".into(),
                    "curl -f http://localhost/ || exit 1".into()
                ],
                interval: 30,
                timeout: 5,
                retries: 3,
                start_period: 0,
            })
        );
        assert_eq!(d.containers[1].health_check, None);
        let d = parse(&with_check(json!({
            "command": ["CMD", "/bin/check", "--quick"],
            "interval": 5, "timeout": 60, "retries": 10, "startPeriod": 300
        })))
        .unwrap();
        let h = d.containers[0].health_check.as_ref().unwrap();
        assert_eq!(
            (h.interval, h.timeout, h.retries, h.start_period),
            (5, 60, 10, 300)
        );
        // ["NONE"] disables the check (as it disables the image's HEALTHCHECK).
        let d = parse(&with_check(json!({"command": ["NONE"]}))).unwrap();
        assert_eq!(d.containers[0].health_check, None);
    }

    #[test]
    fn health_check_values_outside_ecs_limits_are_refused() {
        let e = err(with_check(json!({
            "command": ["CMD", "true"],
            "interval": 4, "timeout": 61, "retries": 0, "startPeriod": 301
        })));
        assert_eq!(e.kind, ProblemKind::InvalidParameter);
        assert_eq!(
            e.problems,
            vec![
                "containerDefinitions[0].healthCheck.interval: 4 must be between 5 and 300 seconds",
                "containerDefinitions[0].healthCheck.timeout: 61 must be between 2 and 60 seconds",
                "containerDefinitions[0].healthCheck.retries: 0 must be between 1 and 10",
                "containerDefinitions[0].healthCheck.startPeriod: 301 must be between 0 and 300 seconds",
            ]
        );
        let e = err(with_check(
            json!({"command": ["CMD", "true"], "interval": "30"}),
        ));
        assert_eq!(
            e.problems,
            vec!["containerDefinitions[0].healthCheck.interval: \"30\" must be between 5 and 300 seconds"]
        );
        let e = err(with_check(
            json!({"command": ["CMD", "true"], "startPeriod": -1}),
        ));
        assert_eq!(
            problem_fields(&e),
            vec!["containerDefinitions[0].healthCheck.startPeriod"]
        );
    }

    #[test]
    fn health_check_commands_take_ecs_forms() {
        let command_problem = |command: Value| -> TaskDefError {
            let e = err(with_check(json!({"command": command})));
            assert_eq!(
                problem_fields(&e),
                vec!["containerDefinitions[0].healthCheck.command"],
                "{command}"
            );
            e
        };
        for (command, kind, says) in [
            (json!(["CMD"]), ProblemKind::Client, "CMD needs the program"),
            (
                json!(["CMD", " "]),
                ProblemKind::Client,
                "CMD needs the program",
            ),
            (
                json!(["CMD-SHELL"]),
                ProblemKind::Client,
                "CMD-SHELL needs the shell command",
            ),
            (
                json!(["CMD-SHELL", ""]),
                ProblemKind::Client,
                "CMD-SHELL needs the shell command",
            ),
            (
                json!(["NONE", "x"]),
                ProblemKind::InvalidParameter,
                "takes nothing after NONE",
            ),
            (json!([]), ProblemKind::Client, "empty"),
            (
                json!(["curl", "-f", "http://localhost/"]),
                ProblemKind::InvalidParameter,
                "\"curl\" is not CMD, CMD-SHELL or NONE",
            ),
            (
                json!("CMD-SHELL true"),
                ProblemKind::InvalidParameter,
                "must be a list of strings",
            ),
            (json!(null), ProblemKind::Client, "required"),
        ] {
            let e = command_problem(command.clone());
            assert_eq!(e.kind, kind, "{command}: {e}");
            assert!(e.problems[0].contains(says), "{command}: {e}");
        }
        let mut v = ok_def();
        v["containerDefinitions"][0]["healthCheck"] = json!(["CMD", "true"]);
        assert_eq!(
            err(v).problems,
            vec!["containerDefinitions[0].healthCheck: must be an object"]
        );
        // Docker joins what follows CMD-SHELL with spaces; so does the agent.
        assert!(parse(&with_check(
            json!({"command": ["CMD-SHELL", "test", "-f", "/ready"]})
        ))
        .is_ok());
    }

    #[test]
    fn health_defs_read_stored_definitions_leniently() {
        let mut v = ok_def();
        v["containerDefinitions"][0]["healthCheck"] =
            json!({"command": ["CMD", "true"], "interval": 1});
        v["containerDefinitions"][1]["healthCheck"] = json!({"command": ["NONE"]});
        v["containerDefinitions"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "odd", "essential": "yes", "healthCheck": {"command": ["CMD-SHELL", "x"]}}));
        assert_eq!(
            health_defs(&v),
            vec![
                HealthDef {
                    name: "app".into(),
                    essential: true,
                    health_check: true
                },
                HealthDef {
                    name: "side".into(),
                    essential: false,
                    health_check: false
                },
                HealthDef {
                    name: "odd".into(),
                    essential: true,
                    health_check: true
                },
            ]
        );
        assert!(health_defs(&json!({})).is_empty());
    }

    #[test]
    fn restart_policy_and_start_timeout_are_checked() {
        let mut v = ok_def();
        v["containerDefinitions"][0]["restartPolicy"] =
            json!({"enabled": true, "restartAttemptPeriod": 59, "ignoredExitCodes": ["x"]});
        v["containerDefinitions"][0]["startTimeout"] = json!(-1);
        let e = err(v);
        assert_eq!(e.kind, ProblemKind::InvalidParameter);
        for field in ["startTimeout", "restartAttemptPeriod", "ignoredExitCodes"] {
            assert!(
                e.problems.iter().any(|p| p.contains(field)),
                "{field}: {e:?}"
            );
        }
        let mut v = ok_def();
        v["containerDefinitions"][0]["restartPolicy"] = json!({});
        assert_eq!(
            err(v).problems,
            vec!["containerDefinitions[0].restartPolicy.enabled: required"]
        );
    }

    fn with_ports(mode: &str, app: Value, side: Value) -> Value {
        let mut v = ok_def();
        v["networkMode"] = json!(mode);
        v["containerDefinitions"][0]["portMappings"] = app;
        v["containerDefinitions"][1]["portMappings"] = side;
        v
    }

    fn tcp(first: u16, last: u16) -> PortRange {
        PortRange {
            protocol: Protocol::Tcp,
            first,
            last,
        }
    }

    #[test]
    fn port_mappings_give_the_fixed_host_ports_of_each_mode() {
        let bridge = parse(&with_ports(
            "bridge",
            json!([{"containerPort": 80, "hostPort": 8080}, {"containerPort": 443},
                   {"containerPortRange": "9000-9010"}]),
            json!([{"containerPort": 53, "hostPort": 53, "protocol": "udp"}]),
        ))
        .unwrap();
        assert_eq!(
            bridge.host_ports(),
            vec![tcp(8080, 8080), PortRange::single(Protocol::Udp, 53)]
        );
        assert_eq!(
            bridge.containers[0].port_mappings[2].container_port_range,
            Some((9000, 9010))
        );
        let host = parse(&with_ports(
            "host",
            json!([{"containerPort": 80, "hostPort": 80}, {"containerPortRange": "9000-9010"}]),
            json!([{"containerPort": 81}]),
        ))
        .unwrap();
        assert_eq!(
            host.host_ports(),
            vec![tcp(80, 80), tcp(81, 81), tcp(9000, 9010)]
        );
        let awsvpc = parse(&with_ports(
            "awsvpc",
            json!([{"containerPort": 80, "hostPort": 80}]),
            json!([{"containerPortRange": "9000-9010", "protocol": "udp"}]),
        ))
        .unwrap();
        assert!(
            awsvpc.host_ports().is_empty(),
            "awsvpc tasks have their own address"
        );
    }

    #[test]
    fn port_mapping_values_are_checked() {
        let e = err(with_ports(
            "bridge",
            json!([{"containerPort": 0}, {"containerPort": 70000}, {"containerPort": 80, "hostPort": -1},
                   {"containerPort": 81, "protocol": "sctp"}, {"containerPortRange": "90-80"},
                   {"containerPortRange": "x"}]),
            Value::Null,
        ));
        assert_eq!(e.kind, ProblemKind::InvalidParameter);
        assert_eq!(
            problem_fields(&e),
            vec![
                "containerDefinitions[0].portMappings[0].containerPort",
                "containerDefinitions[0].portMappings[1].containerPort",
                "containerDefinitions[0].portMappings[2].hostPort",
                "containerDefinitions[0].portMappings[3].protocol",
                "containerDefinitions[0].portMappings[4].containerPortRange",
                "containerDefinitions[0].portMappings[5].containerPortRange",
            ]
        );
        assert!(
            e.problems[1].contains("70000 must be a port number from 1 to 65535"),
            "{e}"
        );
        assert!(e.problems[3].contains("\"sctp\" is not tcp or udp"), "{e}");
        let e = err(with_ports(
            "bridge",
            json!([{"hostPort": 80}, {"containerPort": 80, "containerPortRange": "81-82"}]),
            json!({"containerPort": 80}),
        ));
        assert_eq!(e.kind, ProblemKind::Client);
        assert_eq!(
            problem_fields(&e),
            vec![
                "containerDefinitions[0].portMappings[0].containerPort",
                "containerDefinitions[0].portMappings[1]",
                "containerDefinitions[1].portMappings",
            ]
        );
    }

    #[test]
    fn host_ports_follow_the_network_mode() {
        for mode in ["host", "awsvpc"] {
            let e = err(with_ports(
                mode,
                json!([{"containerPort": 80, "hostPort": 8080}]),
                Value::Null,
            ));
            assert_eq!(
                e.problems,
                vec![format!(
                    "containerDefinitions[0].portMappings[0].hostPort: 8080 must be omitted or equal to containerPort (80) in {mode} network mode"
                )]
            );
            assert!(parse(&with_ports(
                mode,
                json!([{"containerPort": 80, "hostPort": 0}]),
                Value::Null
            ))
            .is_ok());
        }
        for mode in ["bridge", "host", "awsvpc"] {
            let e = err(with_ports(
                mode,
                json!([{"containerPortRange": "9000-9010", "hostPort": 9000}]),
                Value::Null,
            ));
            assert_eq!(e.kind, ProblemKind::Client);
            assert!(
                e.problems[0].starts_with("containerDefinitions[0].portMappings[0].hostPort: must be omitted with containerPortRange 9000-9010"),
                "{e}"
            );
        }
        let e = err(with_ports(
            "none",
            json!([{"containerPort": 80}]),
            Value::Null,
        ));
        assert_eq!(
            problem_fields(&e),
            vec!["containerDefinitions[0].portMappings"]
        );
        assert!(parse(&with_ports("none", json!([]), Value::Null)).is_ok());
    }

    #[test]
    fn a_port_is_mapped_once_per_task() {
        let e = err(with_ports(
            "bridge",
            json!([{"containerPort": 80, "hostPort": 8080}, {"containerPortRange": "9000-9010"}]),
            json!([{"containerPort": 81, "hostPort": 8080}, {"containerPort": 9005},
                   {"containerPort": 80, "protocol": "udp"}]),
        ));
        assert_eq!(e.kind, ProblemKind::Client);
        assert_eq!(
            e.problems,
            vec![
                "containerDefinitions[1].portMappings[0].hostPort: 8080/tcp is already the hostPort of containerDefinitions[0].portMappings[0]",
                "containerDefinitions[1].portMappings[1].containerPort: 9005/tcp is already mapped by containerDefinitions[0].portMappings[1]: a task's containers share one network namespace",
            ]
        );
        let e = err(with_ports(
            "host",
            json!([{"containerPort": 80}]),
            json!([{"containerPort": 80}]),
        ));
        assert_eq!(
            problem_fields(&e),
            vec!["containerDefinitions[1].portMappings[0].containerPort"]
        );
    }

    #[test]
    fn dns_and_extra_hosts_are_checked() {
        let mut v = ok_def();
        v["containerDefinitions"][0]["dnsServers"] = json!(["10.0.0.2", "::1", "dns.local"]);
        v["containerDefinitions"][0]["dnsSearchDomains"] = json!(["corp.example", "bad domain"]);
        v["containerDefinitions"][0]["extraHosts"] = json!([
            {"hostname": "db", "ipAddress": "10.0.0.5"},
            {"hostname": "cache", "ipAddress": "fe80::1"},
            {"ipAddress": "10.0.0.6"}
        ]);
        let e = err(v);
        assert_eq!(
            problem_fields(&e),
            vec![
                "containerDefinitions[0].dnsServers[1]",
                "containerDefinitions[0].dnsServers[2]",
                "containerDefinitions[0].dnsSearchDomains[1]",
                "containerDefinitions[0].extraHosts[1].ipAddress",
                "containerDefinitions[0].extraHosts[2].hostname",
            ]
        );
        assert!(
            e.problems[0].contains("\"::1\" is not an IPv4 address"),
            "{e}"
        );
        let mut v = ok_def();
        v["containerDefinitions"][0]["extraHosts"] = json!({"db": "10.0.0.5"});
        assert_eq!(
            problem_fields(&err(v)),
            vec!["containerDefinitions[0].extraHosts"]
        );
    }

    #[test]
    fn hostname_is_refused_in_awsvpc_mode_only() {
        let mut v = ok_def();
        v["containerDefinitions"][0]["hostname"] = json!("web");
        for mode in ["bridge", "host"] {
            v["networkMode"] = json!(mode);
            assert!(parse(&v).is_ok(), "{mode}");
        }
        v["networkMode"] = json!("awsvpc");
        let e = err(v);
        assert_eq!(e.kind, ProblemKind::Client);
        assert_eq!(problem_fields(&e), vec!["containerDefinitions[0].hostname"]);
        assert!(e.problems[0].contains("not supported when networkMode is awsvpc"));
    }
}
