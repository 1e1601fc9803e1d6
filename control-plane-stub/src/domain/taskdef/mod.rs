//! ECS task-definition JSON -> validated domain types, and RunTask overrides. Pure.
//!
//! The raw JSON is what we store and echo back; this module decides whether it is acceptable and
//! extracts what Berth acts on. Which fields are acted on, ignored or refused is `compat`'s table.

use serde_json::{Map, Value};
use thiserror::Error;

use crate::domain::placement::{self, ConstraintSpec};
use crate::domain::units;

mod health;
mod lifecycle;
mod network;
mod overrides;
mod ports;
mod requirements;
mod resources;
mod status;
#[cfg(test)]
mod tests;

pub use health::*;
pub use lifecycle::RESTART_ATTEMPT_PERIOD;
use lifecycle::*;
use network::*;
pub use overrides::*;
pub use ports::*;
pub use requirements::{first_missing, required_attributes};
use resources::*;
pub use status::*;

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
    /// `placementConstraints` (memberOf only, as ECS allows in a task definition): applied to
    /// every placement of its tasks, with the request's own.
    pub placement_constraints: Vec<ConstraintSpec>,
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

    let placement_constraints =
        parse_placement_constraints(&mut p, obj.get("placementConstraints"));
    p.finish(TaskDefSpec {
        family,
        network_mode,
        cpu,
        memory,
        containers,
        volumes: obj.get("volumes").cloned().unwrap_or(Value::Null),
        placement_constraints,
    })
}

/// A task definition's placementConstraints: at most 10, memberOf with a valid expression.
fn parse_placement_constraints(p: &mut Problems, v: Option<&Value>) -> Vec<ConstraintSpec> {
    const KEY: &str = "placementConstraints";
    let specs: Vec<ConstraintSpec> = match v {
        None | Some(Value::Null) => return Vec::new(),
        Some(v) => match serde_json::from_value(v.clone()) {
            Ok(specs) => specs,
            Err(_) => {
                p.invalid(
                    KEY,
                    "must be a list of {\"type\": \"memberOf\", \"expression\": \"…\"}",
                );
                return Vec::new();
            }
        },
    };
    if let Some(i) = specs.iter().position(|c| c.kind != "memberOf") {
        p.client(
            &format!("{KEY}[{i}].type"),
            "a task definition takes memberOf constraints only",
        );
        return Vec::new();
    }
    match placement::parse_constraints(&specs, KEY) {
        Ok(_) => specs,
        Err(e) => {
            p.client(KEY, e.0);
            Vec::new()
        }
    }
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
