//! Clusters: named on creation (or first use by an activation code), deleted (INACTIVE) once
//! empty, and ACTIVE again when created anew.

use std::sync::Arc;

use super::CpError;
use crate::clock::now_ms;
use crate::domain::cluster::deletion_refusal;
use crate::domain::ids::valid_cluster_name;
use crate::state::{ClusterCounts, ClusterRecord, Store};

#[derive(Clone)]
pub struct Clusters {
    store: Arc<dyn Store>,
}

/// A cluster as DescribeClusters shows it.
#[derive(Debug, Clone)]
pub struct ClusterView {
    pub record: ClusterRecord,
    pub counts: ClusterCounts,
}

impl Clusters {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// Every operation on a cluster's contents first checks the cluster exists (and is ACTIVE:
    /// ECS answers a deleted cluster as one not found).
    pub fn require(&self, name: &str) -> Result<(), CpError> {
        if self.store.cluster_exists(name)? {
            Ok(())
        } else {
            Err(CpError::ClusterNotFound(name.to_string()))
        }
    }

    pub fn create(&self, name: &str) -> Result<ClusterView, CpError> {
        if !valid_cluster_name(name) {
            return Err(CpError::InvalidParameter(format!(
                "clusterName: {name:?} must be 1-255 letters, digits, hyphens or underscores"
            )));
        }
        let record = self.store.create_cluster(name, now_ms())?;
        self.view(record)
    }

    pub fn list(&self) -> Result<Vec<String>, CpError> {
        Ok(self.store.list_clusters()?)
    }

    /// The cluster, ACTIVE or INACTIVE, or None when there never was one of the name.
    pub fn describe(&self, name: &str) -> Result<Option<ClusterView>, CpError> {
        self.store
            .get_cluster(name)?
            .map(|record| self.view(record))
            .transpose()
    }

    /// DeleteCluster: the cluster becomes INACTIVE when nothing is left in it.
    pub fn delete(&self, name: &str) -> Result<ClusterView, CpError> {
        match self.store.deactivate_cluster(name, &deletion_refusal)? {
            None => Err(CpError::ClusterNotFound(name.to_string())),
            Some(Err(refusal)) => Err(CpError::ClusterNotEmpty(refusal)),
            Some(Ok(record)) => self.view(record),
        }
    }

    fn view(&self, record: ClusterRecord) -> Result<ClusterView, CpError> {
        let counts = self.store.cluster_counts(&record.name)?;
        Ok(ClusterView { record, counts })
    }
}
