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
    if !crate::ids::digests_equal(&instance.secret_sha256, &crate::ids::sha256_hex(secret)) {
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
    fn network_modes_attribute() {
        let mut info = InstanceInfo::default();
        assert!(info.network_modes().is_empty());
        info.attributes
            .push((NETWORK_MODES_ATTRIBUTE.into(), "bridge, host".into()));
        assert_eq!(info.network_modes(), vec!["bridge", "host"]);
    }
}
