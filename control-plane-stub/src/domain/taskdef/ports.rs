//! portMappings: protocols, port ranges, what a task holds on its instance, and the checks ECS makes for each network mode.

use super::*;

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

pub(super) const MAX_PORT: i64 = 65_535;

/// "first-last" with 1 <= first < last <= 65535.
pub fn parse_port_range(s: &str) -> Option<(u16, u16)> {
    let (a, b) = s.split_once('-')?;
    let a: u16 = a.trim().parse().ok()?;
    let b: u16 = b.trim().parse().ok()?;
    (a >= 1 && a < b).then_some((a, b))
}

/// One container's portMappings, as ECS checks them for the task's network mode. Conflicts
/// between mappings are `check_port_conflicts`'s.
pub(super) fn port_mappings(
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
pub(super) fn check_port_conflicts(
    p: &mut Problems,
    network_mode: &str,
    containers: &[ContainerDef],
) {
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
