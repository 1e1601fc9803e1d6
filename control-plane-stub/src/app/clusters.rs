//! Clusters: named on creation (or first use by an activation code), never deleted.

use std::sync::Arc;

use super::CpError;
use crate::clock::now_ms;
use crate::domain::ids::valid_cluster_name;
use crate::state::{ClusterCounts, Store};

#[derive(Clone)]
pub struct Clusters {
    store: Arc<dyn Store>,
}

impl Clusters {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// Every operation on a cluster's contents first checks the cluster exists.
    pub fn require(&self, name: &str) -> Result<(), CpError> {
        if self.store.cluster_exists(name)? {
            Ok(())
        } else {
            Err(CpError::ClusterNotFound(name.to_string()))
        }
    }

    pub fn create(&self, name: &str) -> Result<(), CpError> {
        if !valid_cluster_name(name) {
            return Err(CpError::InvalidParameter(format!(
                "clusterName: {name:?} must be 1-255 letters, digits, hyphens or underscores"
            )));
        }
        self.store.ensure_cluster(name, now_ms())?;
        Ok(())
    }

    pub fn list(&self) -> Result<Vec<String>, CpError> {
        Ok(self.store.list_clusters()?)
    }

    /// The cluster's counts, or None when there is no such cluster.
    pub fn counts(&self, name: &str) -> Result<Option<ClusterCounts>, CpError> {
        if !self.store.cluster_exists(name)? {
            return Ok(None);
        }
        Ok(Some(self.store.cluster_counts(name)?))
    }
}
