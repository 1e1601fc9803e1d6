//! Container instances as the API shows them, and the placement snapshot of a cluster.

use std::sync::Arc;

use super::clusters::Clusters;
use super::CpError;
use crate::agents::Agents;
use crate::domain::ids::{self, Arns};
use crate::domain::instance::{Instance, InstanceStatus};
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

    /// UpdateContainerInstancesState: each instance named (id or ARN) set ACTIVE or DRAINING.
    /// Returns the instances changed and the references that named none of the cluster's.
    /// A DRAINING instance takes no new task; the service scheduler moves its service tasks.
    pub fn set_status(
        &self,
        cluster: &str,
        references: &[String],
        status: InstanceStatus,
    ) -> Result<(Vec<InstanceView>, Vec<String>), CpError> {
        self.clusters.require(cluster)?;
        let mut changed = Vec::new();
        let mut missing = Vec::new();
        for r in references {
            let id = ids::resource_id(r);
            let found = self
                .store
                .get_instance(id)?
                .filter(|i| i.cluster == cluster && !i.revoked);
            let Some(instance) = found else {
                missing.push(r.clone());
                continue;
            };
            self.store
                .modify_instance_state(&instance.id, &mut |state| {
                    state.status = status;
                    Ok(())
                })?;
            tracing::info!(instance.id = %instance.id, status = status.as_str(), "container instance status set");
            changed.push(instance.id);
        }
        self.agents.changed.notify_one();
        let views = self
            .views(cluster)?
            .into_iter()
            .filter(|v| changed.contains(&v.instance.id))
            .collect();
        Ok((views, missing))
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
