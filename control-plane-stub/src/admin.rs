//! Offline administration on the data directory: activation codes and instance revocation.
//! Works while `serve` runs on the same directory (SQLite WAL + busy timeout).

use std::path::Path;

use thiserror::Error;

use crate::clock::now_ms;
use crate::domain::ids::{self, valid_cluster_name};
use crate::domain::instance::ActivationCode;
use crate::state::{ActivationStore, ClusterStore, InstanceStore, SqliteStore, StoreError};

#[derive(Debug, Error)]
pub enum AdminError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Invalid(String),
    #[error("no such {0}")]
    NotFound(String),
}

/// Creates the cluster if needed and returns a new code.
pub fn create_activation(
    data_dir: &Path,
    cluster: &str,
    uses: i64,
    expires_in_secs: i64,
) -> Result<String, AdminError> {
    let mut problems = Vec::new();
    if !valid_cluster_name(cluster) {
        problems.push(format!(
            "--cluster: {cluster:?} must be 1-255 letters, digits, hyphens or underscores"
        ));
    }
    if uses < 1 {
        problems.push(format!("--uses: {uses} must be at least 1"));
    }
    if expires_in_secs < 1 {
        problems.push(format!(
            "--expires-in: {expires_in_secs} must be at least 1 second"
        ));
    }
    if !problems.is_empty() {
        return Err(AdminError::Invalid(problems.join("; ")));
    }
    let store = SqliteStore::open(data_dir)?;
    let now = now_ms();
    // An activation code is how a cluster comes to exist: a deleted one becomes ACTIVE again.
    store.create_cluster(cluster, now, &Default::default())?;
    let code = ids::new_activation_code();
    store.insert_activation(
        &ids::sha256_hex(&code),
        &ActivationCode {
            cluster: cluster.to_string(),
            uses_left: uses,
            expires_at_ms: now.saturating_add(expires_in_secs.saturating_mul(1000)),
            revoked: false,
        },
        now,
    )?;
    Ok(code)
}

pub fn revoke_activation(data_dir: &Path, code: &str) -> Result<(), AdminError> {
    let store = SqliteStore::open(data_dir)?;
    if store.revoke_activation(&ids::sha256_hex(code.trim()))? {
        Ok(())
    } else {
        Err(AdminError::NotFound("activation code".into()))
    }
}

pub fn revoke_instance(data_dir: &Path, instance: &str) -> Result<(), AdminError> {
    let store = SqliteStore::open(data_dir)?;
    if store.revoke_instance(ids::resource_id(instance))? {
        Ok(())
    } else {
        Err(AdminError::NotFound(format!("instance {instance}")))
    }
}
