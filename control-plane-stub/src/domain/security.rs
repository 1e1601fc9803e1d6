//! Security groups for awsvpc tasks: named sets of ingress rules that berth-cp keeps and RunTask
//! names in `networkConfiguration.awsvpcConfiguration.securityGroups`. A task gets the union of
//! its groups' rules when it starts (TaskSpec.ingress); changing a group later does not change
//! running tasks. Pure apart from the random id.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// ECS's limit on security groups per awsvpcConfiguration.
pub const MAX_GROUPS_PER_TASK: usize = 5;
/// EC2's default limit on inbound rules per group.
pub const MAX_RULES: usize = 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IngressProtocol {
    Tcp,
    Udp,
    /// Every protocol and port.
    All,
}

impl IngressProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            IngressProtocol::Tcp => "tcp",
            IngressProtocol::Udp => "udp",
            IngressProtocol::All => "all",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "tcp" => Some(Self::Tcp),
            "udp" => Some(Self::Udp),
            "all" | "-1" => Some(Self::All),
            _ => None,
        }
    }
}

/// One allowed ingress: a protocol, a port range and an IPv4 source range. `all` rules cover
/// ports 0-65535.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IngressRule {
    pub protocol: IngressProtocol,
    pub from_port: u16,
    pub to_port: u16,
    /// Canonical IPv4 CIDR, e.g. "10.0.0.0/8".
    pub cidr: String,
}

impl IngressRule {
    /// The rule in berthctl's `--ingress` syntax: `tcp:80:0.0.0.0/0`, `tcp:8000-8010:…`,
    /// `all::…`.
    pub fn spec(&self) -> String {
        match self.protocol {
            IngressProtocol::All => format!("all::{}", self.cidr),
            p if self.from_port == self.to_port => {
                format!("{}:{}:{}", p.as_str(), self.from_port, self.cidr)
            }
            p => format!(
                "{}:{}-{}:{}",
                p.as_str(),
                self.from_port,
                self.to_port,
                self.cidr
            ),
        }
    }

    pub fn to_json(&self) -> Value {
        json!({
            "protocol": self.protocol.as_str(),
            "fromPort": self.from_port,
            "toPort": self.to_port,
            "cidr": self.cidr,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityGroup {
    /// "sg-" and 17 hex digits, as EC2's.
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub ingress: Vec<IngressRule>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// What a PUT asks for: the group's new content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupContent {
    pub description: String,
    pub ingress: Vec<IngressRule>,
}

pub fn new_group_id() -> String {
    let id = crate::domain::ids::new_id();
    format!("sg-{}", &id[..17])
}

pub fn is_group_id(s: &str) -> bool {
    s.strip_prefix("sg-")
        .is_some_and(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit()))
}

/// Names as EC2 allows them, narrowed to what is easy to type and put in a URL path; a name
/// cannot start with "sg-", so a reference is unambiguously a name or an id.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 255
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(format!(
            "name: {name:?} must be 1-255 letters, digits, '-', '_' or '.'"
        ));
    }
    if name.starts_with("sg-") {
        return Err(format!(
            "name: {name:?} cannot start with \"sg-\" (that is how ids start)"
        ));
    }
    Ok(())
}

/// A canonical IPv4 CIDR: address/prefix with no host bits set.
pub fn parse_cidr(s: &str) -> Result<String, String> {
    let Some((addr, len)) = s.split_once('/') else {
        return Err(format!(
            "{s:?} is not an IPv4 CIDR (address/prefix, e.g. {s}/32)"
        ));
    };
    let (Ok(addr), Ok(len)) = (addr.parse::<Ipv4Addr>(), len.parse::<u8>()) else {
        return Err(format!(
            "{s:?} is not an IPv4 CIDR (address/prefix, e.g. 10.0.0.0/8)"
        ));
    };
    if len > 32 {
        return Err(format!("{s:?}: the prefix length is at most 32"));
    }
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    let network = Ipv4Addr::from(u32::from(addr) & mask);
    if network != addr {
        return Err(format!(
            "{s:?} has host bits set: did you mean {network}/{len}?"
        ));
    }
    Ok(format!("{addr}/{len}"))
}

fn rule(
    protocol: IngressProtocol,
    ports: Option<(u16, u16)>,
    cidr: &str,
) -> Result<IngressRule, String> {
    let cidr = parse_cidr(cidr)?;
    let (from_port, to_port) = match (protocol, ports) {
        (IngressProtocol::All, _) => (0, 65_535),
        (_, Some((a, b))) if a <= b => (a, b),
        (_, Some((a, b))) => {
            return Err(format!(
                "port range {a}-{b}: the first port is above the last"
            ))
        }
        (p, None) => {
            return Err(format!(
                "a {} rule needs a port or a port range",
                p.as_str()
            ))
        }
    };
    Ok(IngressRule {
        protocol,
        from_port,
        to_port,
        cidr,
    })
}

/// berthctl's `--ingress PROTOCOL:PORT[-PORT]:CIDR`, or `all::CIDR`.
pub fn parse_ingress_spec(s: &str) -> Result<IngressRule, String> {
    let bad = |why: String| {
        format!(
            "--ingress {s:?}: {why} (want tcp:80:0.0.0.0/0, udp:5000-5010:10.0.0.0/8 or all::CIDR)"
        )
    };
    let mut parts = s.splitn(3, ':');
    let (Some(proto), Some(ports), Some(cidr)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad("not PROTOCOL:PORTS:CIDR".into()));
    };
    let protocol = IngressProtocol::parse(proto)
        .ok_or_else(|| bad(format!("{proto:?} is not tcp, udp or all")))?;
    let ports = match (protocol, ports) {
        (IngressProtocol::All, _) | (_, "") => None,
        (_, p) => {
            let (a, b) = p.split_once('-').unwrap_or((p, p));
            match (a.parse::<u16>(), b.parse::<u16>()) {
                (Ok(a), Ok(b)) => Some((a, b)),
                _ => return Err(bad(format!("{p:?} is not a port or a range first-last"))),
            }
        }
    };
    rule(protocol, ports, cidr).map_err(bad)
}

/// The body of `PUT /berth/v1/security-groups/{name}`:
/// `{"description": "...", "ingress": [{"protocol", "fromPort", "toPort", "cidr"}]}`.
pub fn parse_content(body: &Value) -> Result<GroupContent, Vec<String>> {
    let mut problems = Vec::new();
    let Some(obj) = body.as_object() else {
        return Err(vec!["request: must be a JSON object".into()]);
    };
    let description = match obj.get("description") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) if s.len() <= 255 => s.clone(),
        Some(_) => {
            problems.push("description: must be a string of at most 255 characters".into());
            String::new()
        }
    };
    let mut ingress = Vec::new();
    match obj.get("ingress") {
        None | Some(Value::Null) => {}
        Some(Value::Array(rules)) => {
            if rules.len() > MAX_RULES {
                problems.push(format!("ingress: at most {MAX_RULES} rules per group"));
            }
            for (i, r) in rules.iter().enumerate() {
                let path = format!("ingress[{i}]");
                let port = |key: &str| -> Result<Option<u16>, String> {
                    match r.get(key) {
                        None | Some(Value::Null) => Ok(None),
                        Some(v) => v
                            .as_u64()
                            .and_then(|n| u16::try_from(n).ok())
                            .map(Some)
                            .ok_or_else(|| {
                                format!("{path}.{key}: {v} is not a port from 0 to 65535")
                            }),
                    }
                };
                let protocol = match r.get("protocol").and_then(Value::as_str) {
                    Some(p) => match IngressProtocol::parse(p) {
                        Some(p) => p,
                        None => {
                            problems.push(format!("{path}.protocol: {p:?} is not tcp, udp or all"));
                            continue;
                        }
                    },
                    None => {
                        problems.push(format!("{path}.protocol: required (tcp, udp or all)"));
                        continue;
                    }
                };
                let (from, to) = match (port("fromPort"), port("toPort")) {
                    (Ok(f), Ok(t)) => (f, t),
                    (Err(e), _) | (_, Err(e)) => {
                        problems.push(e);
                        continue;
                    }
                };
                let ports = from.map(|f| (f, to.unwrap_or(f)));
                let Some(cidr) = r.get("cidr").and_then(Value::as_str) else {
                    problems.push(format!(
                        "{path}.cidr: required (an IPv4 CIDR; 0.0.0.0/0 for anywhere)"
                    ));
                    continue;
                };
                match rule(protocol, ports, cidr) {
                    Ok(r) => {
                        if !ingress.contains(&r) {
                            ingress.push(r);
                        }
                    }
                    Err(e) => problems.push(format!("{path}: {e}")),
                }
            }
        }
        Some(_) => problems.push("ingress: must be a list of rules".into()),
    }
    if problems.is_empty() {
        Ok(GroupContent {
            description,
            ingress,
        })
    } else {
        Err(problems)
    }
}

/// The rules of all `groups`, each once, in order.
pub fn union(groups: &[SecurityGroup]) -> Vec<IngressRule> {
    let mut out: Vec<IngressRule> = Vec::new();
    for r in groups.iter().flat_map(|g| &g.ingress) {
        if !out.contains(r) {
            out.push(r.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingress_specs() {
        let r = parse_ingress_spec("tcp:80:0.0.0.0/0").unwrap();
        assert_eq!(
            r,
            IngressRule {
                protocol: IngressProtocol::Tcp,
                from_port: 80,
                to_port: 80,
                cidr: "0.0.0.0/0".into()
            }
        );
        assert_eq!(r.spec(), "tcp:80:0.0.0.0/0");
        let r = parse_ingress_spec("udp:8000-8010:10.0.0.0/8").unwrap();
        assert_eq!((r.from_port, r.to_port), (8000, 8010));
        assert_eq!(r.spec(), "udp:8000-8010:10.0.0.0/8");
        let r = parse_ingress_spec("all::192.168.1.7/32").unwrap();
        assert_eq!(
            (r.protocol, r.from_port, r.to_port),
            (IngressProtocol::All, 0, 65535)
        );
        assert_eq!(r.spec(), "all::192.168.1.7/32");
        for bad in [
            "tcp:80",
            "icmp:80:0.0.0.0/0",
            "tcp::0.0.0.0/0",
            "tcp:90-80:0.0.0.0/0",
            "tcp:http:0.0.0.0/0",
            "tcp:80:10.0.0.1/8",
            "tcp:80:10.0.0.1",
            "tcp:80:10.0.0.0/33",
        ] {
            let e = parse_ingress_spec(bad).unwrap_err();
            assert!(e.starts_with("--ingress"), "{bad}: {e}");
        }
        assert!(parse_ingress_spec("tcp:80:10.0.0.1/8")
            .unwrap_err()
            .contains("did you mean 10.0.0.0/8"));
    }

    #[test]
    fn put_bodies() {
        let c = parse_content(&json!({"description": "web", "ingress": [
            {"protocol": "tcp", "fromPort": 80, "cidr": "0.0.0.0/0"},
            {"protocol": "tcp", "fromPort": 80, "toPort": 80, "cidr": "0.0.0.0/0"},
            {"protocol": "all", "cidr": "10.0.0.0/8"}
        ]}))
        .unwrap();
        assert_eq!(c.description, "web");
        assert_eq!(c.ingress.len(), 2, "duplicates collapse: {:?}", c.ingress);
        let e = parse_content(&json!({"ingress": [
            {"protocol": "tcp", "cidr": "0.0.0.0/0"},
            {"protocol": "sctp", "fromPort": 1, "cidr": "0.0.0.0/0"},
            {"protocol": "udp", "fromPort": 70000, "cidr": "0.0.0.0/0"},
            {"protocol": "udp", "fromPort": 53}
        ]}))
        .unwrap_err();
        assert_eq!(e.len(), 4, "{e:?}");
        assert!(e[0].starts_with("ingress[0]:"), "{e:?}");
        assert!(e[3].starts_with("ingress[3].cidr: required"), "{e:?}");
        assert_eq!(
            parse_content(&json!({})).unwrap().ingress,
            Vec::<IngressRule>::new()
        );
    }

    #[test]
    fn names_and_ids() {
        assert!(check_name("web-1.internal_x").is_ok());
        assert!(check_name("sg-web").is_err());
        assert!(check_name("").is_err());
        assert!(check_name("a/b").is_err());
        let id = new_group_id();
        assert_eq!(id.len(), 20);
        assert!(is_group_id(&id));
        assert!(!is_group_id("web"));
    }

    #[test]
    fn union_keeps_each_rule_once() {
        let g = |name: &str, specs: &[&str]| SecurityGroup {
            id: new_group_id(),
            name: name.into(),
            description: String::new(),
            ingress: specs
                .iter()
                .map(|s| parse_ingress_spec(s).unwrap())
                .collect(),
            created_at_ms: 0,
            updated_at_ms: 0,
        };
        let u = union(&[
            g("a", &["tcp:80:0.0.0.0/0", "udp:53:10.0.0.0/8"]),
            g("b", &["tcp:80:0.0.0.0/0", "tcp:443:0.0.0.0/0"]),
        ]);
        let specs: Vec<String> = u.iter().map(IngressRule::spec).collect();
        assert_eq!(
            specs,
            ["tcp:80:0.0.0.0/0", "udp:53:10.0.0.0/8", "tcp:443:0.0.0.0/0"]
        );
    }
}
