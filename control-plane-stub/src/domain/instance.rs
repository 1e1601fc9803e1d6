//! Container instances and activation codes, and the pure rules for admitting an agent.

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// What the agent reported about itself at registration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct InstanceInfo {
    pub hostname: String,
    pub resources: Vec<Resource>,
    pub attributes: Vec<(String, String)>,
    pub agent_version: String,
    pub agent_hash: String,
    pub containerd_version: String,
}

/// ECS's Resource shape: CPU and MEMORY are INTEGER, PORTS and PORTS_UDP are STRINGSET.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Resource {
    pub name: String,
    pub kind: String,
    pub integer_value: i64,
    pub string_set_value: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    pub id: String,
    pub cluster: String,
    pub secret_sha256: String,
    pub revoked: bool,
    pub registered_at_ms: i64,
    pub last_heartbeat_ms: Option<i64>,
    pub last_state_change_seq: u64,
    pub info: InstanceInfo,
    /// What the agent's heartbeats said about containerd; None before the first heartbeat.
    pub health: Option<RuntimeHealth>,
    /// What users set on the instance: its status and custom attributes.
    pub state: InstanceState,
}

/// ECS's container-instance status as users set it (UpdateContainerInstancesState); a revoked
/// instance is INACTIVE whatever this says.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InstanceStatus {
    #[default]
    Active,
    Draining,
}

impl InstanceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceStatus::Active => "ACTIVE",
            InstanceStatus::Draining => "DRAINING",
        }
    }

    pub fn parse(s: &str) -> Option<InstanceStatus> {
        match s {
            "ACTIVE" => Some(InstanceStatus::Active),
            "DRAINING" => Some(InstanceStatus::Draining),
            _ => None,
        }
    }
}

/// The part of an instance that users change through the API (the agent never does).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceState {
    #[serde(default)]
    pub status: InstanceStatus,
    /// PutAttributes' custom attributes, by name (a value may be empty).
    #[serde(default)]
    pub attributes: Vec<(String, String)>,
}

/// ECS's limit of custom attributes per resource.
pub const MAX_CUSTOM_ATTRIBUTES: usize = 10;

/// ECS's rules for an attribute set by PutAttributes: a name of 1–128 letters, digits, `-_/.`
/// (not in the `ecs.` or `berth.` namespaces, which agents report), a value of at most 128
/// letters, digits, hyphens, underscores, periods, at signs, slashes, colons and spaces.
pub fn check_custom_attribute(name: &str, value: Option<&str>) -> Result<(), String> {
    if !crate::domain::placement::valid_attribute_name(name) {
        return Err(format!(
            "attribute name {:?} must be 1-128 letters, digits, hyphens, underscores, slashes or periods",
            truncate(name)
        ));
    }
    if ["ecs.", "com.amazonaws.ecs.", "berth."]
        .iter()
        .any(|p| name.starts_with(p))
    {
        return Err(format!(
            "attribute name {name:?}: the ecs., com.amazonaws.ecs. and berth. prefixes are reserved for the attributes agents report"
        ));
    }
    if let Some(v) = value {
        let ok = v.len() <= 128
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.@/: ".contains(c));
        if !ok {
            return Err(format!(
                "attribute {name}: value {:?} must be at most 128 letters, digits, spaces or -_.@/:",
                truncate(v)
            ));
        }
    }
    Ok(())
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

impl Instance {
    /// Every attribute placement and ListAttributes see: what the agent registered, then the
    /// custom ones (PutAttributes of a name the agent also reports wins).
    pub fn attributes(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .info
            .attributes
            .iter()
            .filter(|(n, _)| !self.state.attributes.iter().any(|(c, _)| c == n))
            .cloned()
            .collect();
        out.extend(self.state.attributes.iter().cloned());
        out
    }

    /// ACTIVE, DRAINING or INACTIVE (revoked).
    pub fn status(&self) -> &'static str {
        if self.revoked {
            "INACTIVE"
        } else {
            self.state.status.as_str()
        }
    }

    /// Whether new tasks may be placed here.
    pub fn takes_tasks(&self) -> bool {
        !self.revoked && self.state.status == InstanceStatus::Active
    }
}

/// The container runtime's health as the instance's heartbeats report it.
///
/// Persisted with the instance (not kept beside the in-memory sessions) so that
/// `lastStatusChange` survives a control-plane restart: it is when containerd last changed
/// between healthy and not, which a restart of berth-cp does not change. The write costs
/// nothing extra: the heartbeat time was already stored on every heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuntimeHealth {
    /// `containerd_healthy` of the last heartbeat.
    pub containerd_healthy: bool,
    /// When the last heartbeat was received (the control plane's clock).
    pub updated_at_ms: i64,
    /// When `containerd_healthy` last took its current value (the first heartbeat counts).
    pub changed_at_ms: i64,
}

impl RuntimeHealth {
    /// The record after a heartbeat saying `containerd_healthy` at `now_ms`.
    pub fn observe(prev: Option<RuntimeHealth>, containerd_healthy: bool, now_ms: i64) -> Self {
        let changed_at_ms = match prev {
            Some(p) if p.containerd_healthy == containerd_healthy => p.changed_at_ms,
            _ => now_ms,
        };
        Self {
            containerd_healthy,
            updated_at_ms: now_ms,
            changed_at_ms,
        }
    }

    /// This check's own status: what the last heartbeat said.
    pub fn check_status(&self) -> HealthState {
        if self.containerd_healthy {
            HealthState::Ok
        } else {
            HealthState::Impaired
        }
    }
}

/// ECS's InstanceHealthCheckState (INITIALIZING is never produced: an agent reports at once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthState {
    Ok,
    Impaired,
    InsufficientData,
}

impl HealthState {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthState::Ok => "OK",
            HealthState::Impaired => "IMPAIRED",
            HealthState::InsufficientData => "INSUFFICIENT_DATA",
        }
    }
}

/// An instance's overallStatus: INSUFFICIENT_DATA without a heartbeat or while its agent is not
/// connected (the last report may be stale), IMPAIRED when the last heartbeat said containerd
/// is not healthy, else OK.
pub fn overall_health(health: Option<&RuntimeHealth>, connected: bool) -> HealthState {
    match health {
        Some(h) if connected => h.check_status(),
        _ => HealthState::InsufficientData,
    }
}

/// The agent attribute listing the network modes an instance can run.
pub const NETWORK_MODES_ATTRIBUTE: &str = "berth.network-modes";

impl InstanceInfo {
    pub fn integer_resource(&self, name: &str) -> i64 {
        self.resources
            .iter()
            .find(|r| r.name == name)
            .map(|r| r.integer_value)
            .unwrap_or(0)
    }

    /// Absent attribute: no mode is supported, so nothing is placed on an agent that did not say.
    pub fn network_modes(&self) -> Vec<String> {
        self.attributes
            .iter()
            .find(|(n, _)| n == NETWORK_MODES_ATTRIBUTE)
            .map(|(_, v)| {
                v.split(',')
                    .map(|m| m.trim().to_string())
                    .filter(|m| !m.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ActivationCode {
    pub cluster: String,
    pub uses_left: i64,
    pub expires_at_ms: i64,
    pub revoked: bool,
}

/// Why a registration or session is refused. The messages are shown to operators as they are.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum Refusal {
    #[error("activation code unknown")]
    UnknownCode,
    #[error("activation code expired")]
    CodeExpired,
    #[error("activation code has no uses left")]
    CodeUsedUp,
    #[error("activation code revoked")]
    CodeRevoked,
    #[error("activation code is for cluster {code_cluster}, not {requested}")]
    WrongCluster {
        code_cluster: String,
        requested: String,
    },
    #[error("instance credential rejected")]
    CredentialRejected,
    #[error("instance revoked")]
    InstanceRevoked,
}

/// Checks the attributes an agent registers: each name once (placement and the query language
/// read one value per name) and not empty.
pub fn check_reported_attributes(attributes: &[(String, String)]) -> Result<(), String> {
    for (i, (name, _)) in attributes.iter().enumerate() {
        if name.is_empty() {
            return Err(format!("attributes[{i}]: a name is required"));
        }
        if attributes[..i].iter().any(|(earlier, _)| earlier == name) {
            let name: String = name.chars().take(128).collect();
            return Err(format!("attributes[{i}]: {name:?} is registered twice"));
        }
    }
    Ok(())
}

/// Whether an activation code may register a new instance in `cluster` now.
pub fn check_activation(
    code: Option<&ActivationCode>,
    cluster: &str,
    now_ms: i64,
) -> Result<(), Refusal> {
    let code = code.ok_or(Refusal::UnknownCode)?;
    if code.revoked {
        return Err(Refusal::CodeRevoked);
    }
    if code.cluster != cluster {
        return Err(Refusal::WrongCluster {
            code_cluster: code.cluster.clone(),
            requested: cluster.to_string(),
        });
    }
    if now_ms >= code.expires_at_ms {
        return Err(Refusal::CodeExpired);
    }
    if code.uses_left <= 0 {
        return Err(Refusal::CodeUsedUp);
    }
    Ok(())
}

/// Whether a presented secret belongs to this instance.
pub fn check_credential(instance: Option<&Instance>, secret: &str) -> Result<(), Refusal> {
    let instance = instance.ok_or(Refusal::CredentialRejected)?;
    if !crate::domain::ids::digests_equal(
        &instance.secret_sha256,
        &crate::domain::ids::sha256_hex(secret),
    ) {
        return Err(Refusal::CredentialRejected);
    }
    if instance.revoked {
        return Err(Refusal::InstanceRevoked);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agents_prefixes_are_not_custom_attributes() {
        for name in [
            "ecs.os-type",
            "com.amazonaws.ecs.capability.x",
            "berth.kernel",
        ] {
            assert!(check_custom_attribute(name, None)
                .unwrap_err()
                .contains("reserved"));
        }
        assert!(check_custom_attribute("rack", Some("r1")).is_ok());
    }

    #[test]
    fn an_attribute_is_registered_once() {
        let a = |n: &str| (n.to_string(), String::new());
        assert!(check_reported_attributes(&[a("x"), a("y")]).is_ok());
        assert!(check_reported_attributes(&[a("x"), a("y"), a("x")])
            .unwrap_err()
            .contains("attributes[2]: \"x\" is registered twice"));
        assert!(check_reported_attributes(&[a("")]).is_err());
    }

    fn code() -> ActivationCode {
        ActivationCode {
            cluster: "prod".into(),
            uses_left: 1,
            expires_at_ms: 100,
            revoked: false,
        }
    }

    #[test]
    fn activation_rules() {
        assert_eq!(check_activation(Some(&code()), "prod", 50), Ok(()));
        assert_eq!(
            check_activation(None, "prod", 50),
            Err(Refusal::UnknownCode)
        );
        assert_eq!(
            check_activation(Some(&code()), "prod", 100),
            Err(Refusal::CodeExpired)
        );
        let used = ActivationCode {
            uses_left: 0,
            ..code()
        };
        assert_eq!(
            check_activation(Some(&used), "prod", 1),
            Err(Refusal::CodeUsedUp)
        );
        let revoked = ActivationCode {
            revoked: true,
            ..code()
        };
        assert_eq!(
            check_activation(Some(&revoked), "prod", 1),
            Err(Refusal::CodeRevoked)
        );
        assert_eq!(
            check_activation(Some(&code()), "dev", 1)
                .unwrap_err()
                .to_string(),
            "activation code is for cluster prod, not dev"
        );
    }

    #[test]
    fn runtime_health_records_when_it_changed() {
        let first = RuntimeHealth::observe(None, true, 10);
        assert_eq!(
            first,
            RuntimeHealth {
                containerd_healthy: true,
                updated_at_ms: 10,
                changed_at_ms: 10
            }
        );
        let same = RuntimeHealth::observe(Some(first), true, 20);
        assert_eq!((same.updated_at_ms, same.changed_at_ms), (20, 10));
        let down = RuntimeHealth::observe(Some(same), false, 30);
        assert_eq!((down.updated_at_ms, down.changed_at_ms), (30, 30));
        assert_eq!(down.check_status(), HealthState::Impaired);
        let still = RuntimeHealth::observe(Some(down), false, 40);
        assert_eq!((still.updated_at_ms, still.changed_at_ms), (40, 30));
        let up = RuntimeHealth::observe(Some(still), true, 50);
        assert_eq!((up.changed_at_ms, up.check_status()), (50, HealthState::Ok));
    }

    #[test]
    fn overall_health_status() {
        let ok = RuntimeHealth::observe(None, true, 1);
        let bad = RuntimeHealth::observe(None, false, 1);
        assert_eq!(overall_health(None, true), HealthState::InsufficientData);
        assert_eq!(overall_health(None, false), HealthState::InsufficientData);
        assert_eq!(overall_health(Some(&ok), true), HealthState::Ok);
        assert_eq!(overall_health(Some(&bad), true), HealthState::Impaired);
        assert_eq!(
            overall_health(Some(&ok), false),
            HealthState::InsufficientData
        );
        assert_eq!(
            overall_health(Some(&bad), false),
            HealthState::InsufficientData
        );
        assert_eq!(HealthState::InsufficientData.as_str(), "INSUFFICIENT_DATA");
    }

    #[test]
    fn network_modes_attribute() {
        let mut info = InstanceInfo::default();
        assert!(info.network_modes().is_empty());
        info.attributes
            .push((NETWORK_MODES_ATTRIBUTE.into(), "bridge, host".into()));
        assert_eq!(info.network_modes(), vec!["bridge", "host"]);
    }
}
