//! Registration: an activation code makes a new instance and its credential; the credential
//! then authenticates every later registration and session.

use crate::domain::ids;
use crate::domain::instance::{check_credential, Instance, InstanceInfo, Refusal};
use crate::state::StoreError;

use super::Agents;

/// A successful registration.
pub struct Registered {
    pub instance_id: String,
    /// Only on first registration.
    pub secret: Option<String>,
}

impl Agents {
    pub fn register_with_code(
        &self,
        cluster: &str,
        code: &str,
        info: InstanceInfo,
    ) -> Result<Result<Registered, Refusal>, StoreError> {
        let secret = ids::new_secret();
        let now = crate::clock::now_ms();
        let instance = Instance {
            id: ids::new_id(),
            cluster: cluster.to_string(),
            secret_sha256: ids::sha256_hex(&secret),
            revoked: false,
            registered_at_ms: now,
            last_heartbeat_ms: None,
            last_state_change_seq: 0,
            info,
            health: None,
            state: Default::default(),
        };
        Ok(self
            .store
            .register_with_activation(&ids::sha256_hex(code), &instance, now)?
            .map(|()| Registered {
                instance_id: instance.id,
                secret: Some(secret),
            }))
    }

    /// Checks a credential; on success returns the instance.
    pub fn authenticate(
        &self,
        instance_id: &str,
        secret: &str,
    ) -> Result<Result<Instance, Refusal>, StoreError> {
        let instance = self.store.get_instance(instance_id)?;
        Ok(check_credential(instance.as_ref(), secret).map(|()| instance.expect("checked")))
    }

    pub fn register_with_credential(
        &self,
        cluster: &str,
        instance_id: &str,
        secret: &str,
        info: InstanceInfo,
    ) -> Result<Result<Registered, Refusal>, StoreError> {
        let instance = match self.authenticate(instance_id, secret)? {
            Ok(i) => i,
            Err(r) => return Ok(Err(r)),
        };
        if instance.cluster != cluster {
            // The credential is bound to its cluster: moving an instance needs a new activation.
            return Ok(Err(Refusal::CredentialRejected));
        }
        self.store.update_instance_info(&instance.id, &info)?;
        Ok(Ok(Registered {
            instance_id: instance.id,
            secret: None,
        }))
    }

    pub fn still_allowed(&self, instance_id: &str) -> Result<bool, StoreError> {
        Ok(self
            .store
            .get_instance(instance_id)?
            .is_some_and(|i| !i.revoked))
    }

    pub fn container_instance_arn(&self, cluster: &str, instance_id: &str) -> String {
        self.arns.container_instance(cluster, instance_id)
    }
}
