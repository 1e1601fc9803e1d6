//! Container instances as the API shows them, and the placement snapshot of a cluster.

use std::sync::Arc;

use super::clusters::Clusters;
use super::CpError;
use crate::agents::Agents;
use crate::domain::ids::Arns;
use crate::domain::instance::Instance;
use crate::domain::task::{Task, TaskStatus};
use crate::domain::taskdef::{Needs, PortRange};
use crate::scheduler::placement::Candidate;
use crate::scheduler::usage::{self, Snapshot};
use crate::state::{Store, TaskFilter};

/// An instance with what the API shows about it beyond the stored record.
pub struct InstanceView {
    pub instance: Instance,
    pub connected: bool,
    pub used: Needs,
    /// Host ports held: the instance's reserved ports and its tasks' fixed host ports.
    pub used_ports: Vec<PortRange>,
    pub running_tasks: i64,
    pub pending_tasks: i64,
}

#[derive(Clone)]
pub struct Instances {
    store: Arc<dyn Store>,
    agents: Arc<Agents>,
    clusters: Clusters,
    arns: Arns,
}

impl Instances {
    pub fn new(store: Arc<dyn Store>, agents: Arc<Agents>, clusters: Clusters, arns: Arns) -> Self {
        Self {
            store,
            agents,
            clusters,
            arns,
        }
    }

    fn active_tasks(&self, cluster: &str) -> Result<Vec<Task>, CpError> {
        Ok(self.store.list_tasks(&TaskFilter {
            cluster: Some(cluster.to_string()),
            not_stopped: true,
            ..TaskFilter::default()
        })?)
    }

    /// The cluster's instances, each with its use and its tasks counted.
    pub fn views(&self, cluster: &str) -> Result<Vec<InstanceView>, CpError> {
        self.clusters.require(cluster)?;
        let connected = self.agents.connected();
        let active = self.active_tasks(cluster)?;
        Ok(self
            .store
            .list_instances(cluster)?
            .into_iter()
            .map(|instance| {
                let mine: Vec<&Task> = active
                    .iter()
                    .filter(|t| t.instance_id == instance.id)
                    .collect();
                InstanceView {
                    connected: connected.contains(&instance.id),
                    used: usage::sum_needs(mine.iter().copied()),
                    used_ports: usage::used_ports(&instance.info, mine.iter().copied()),
                    running_tasks: mine
                        .iter()
                        .filter(|t| t.last_status == TaskStatus::Running)
                        .count() as i64,
                    pending_tasks: mine
                        .iter()
                        .filter(|t| t.last_status != TaskStatus::Running)
                        .count() as i64,
                    instance,
                }
            })
            .collect())
    }

    /// The cluster's placement candidates, read now.
    pub fn candidates(&self, cluster: &str) -> Result<Vec<Candidate>, CpError> {
        let connected = self.agents.connected();
        let active = self.active_tasks(cluster)?;
        let snapshot = Snapshot {
            instances: self.store.list_instances(cluster)?,
            active_tasks: &active,
            connected: &connected,
        };
        Ok(usage::candidates(snapshot, &self.arns))
    }
}
