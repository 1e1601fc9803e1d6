//! Secrets: registry logins for repositoryCredentials. The API shows their names and ARNs,
//! never the login; a login is put into a payload only when it is sent (`agents::sessions`).

use std::sync::Arc;

use super::CpError;
use crate::clock::now_ms;
use crate::domain::ids::Arns;
use crate::domain::secrets::{self, SecretInfo};
use crate::domain::taskdef::TaskDefSpec;
use crate::state::Store;

#[derive(Clone)]
pub struct Secrets {
    store: Arc<dyn Store>,
    arns: Arns,
}

impl Secrets {
    pub fn new(store: Arc<dyn Store>, arns: Arns) -> Self {
        Self { store, arns }
    }

    /// Creates the secret `name` or replaces its login; returns it and whether it was created.
    pub fn put(&self, name: &str, body: &serde_json::Value) -> Result<(SecretInfo, bool), CpError> {
        let mut problems = Vec::new();
        if let Err(e) = secrets::check_name(name) {
            problems.push(e);
        }
        let login = match secrets::parse_login(body) {
            Ok(l) => Some(l),
            Err(p) => {
                problems.extend(p);
                None
            }
        };
        let Some(login) = login.filter(|_| problems.is_empty()) else {
            return Err(CpError::InvalidParameter(problems.join("; ")));
        };
        let (info, created) =
            self.store
                .put_secret(name, &self.arns.secret(name), &login, now_ms())?;
        // The name and ARN only: never the login.
        tracing::info!(secret.name = %info.name, secret.arn = %info.arn, created, "secret saved");
        Ok((info, created))
    }

    pub fn list(&self) -> Result<Vec<SecretInfo>, CpError> {
        Ok(self.store.list_secrets()?)
    }

    /// Deletes a secret by name or ARN. Tasks already placed that name it are sent without a
    /// login from then on (their agent may still have one).
    pub fn delete(&self, reference: &str) -> Result<SecretInfo, CpError> {
        let (info, _) = self
            .store
            .get_secret(reference)?
            .ok_or_else(|| CpError::SecretNotFound(reference.to_string()))?;
        if !self.store.delete_secret(&info.name)? {
            return Err(CpError::SecretNotFound(reference.to_string()));
        }
        tracing::info!(secret.name = %info.name, "secret deleted");
        Ok(info)
    }

    /// Every secret the task's containers name in repositoryCredentials must exist now (as ECS
    /// checks at launch; registration does not). Their logins are read when the payload is sent.
    pub fn check_repository_credentials(&self, spec: &TaskDefSpec) -> Result<(), CpError> {
        for c in &spec.containers {
            let Some(parameter) = c.repository_credentials.as_deref() else {
                continue;
            };
            if self.store.get_secret(parameter)?.is_none() {
                return Err(CpError::Client(format!(
                    "repositoryCredentials of container {}: no secret named {parameter} in \
                     berth-cp (create it with berthctl create-secret)",
                    c.name
                )));
            }
        }
        Ok(())
    }
}
