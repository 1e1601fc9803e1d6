//! Container instances as the API shows them, and the placement snapshot of a cluster.

use std::sync::Arc;

use super::clusters::Clusters;
use super::CpError;
use crate::agents::Agents;
use crate::clock::now_ms;
use crate::domain::ids::{self, Arns};
use crate::domain::instance::{Instance, InstanceStatus};
use crate::domain::task::{Task, TaskStatus};
use crate::domain::taskdef::{Needs, PortRange};
use crate::scheduler::placement::Candidate;
use crate::scheduler::usage::{self, Snapshot};
use crate::state::{Deregistration, Store, TaskFilter};

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

    /// DeregisterContainerInstance: the instance becomes INACTIVE and its agent's session is
    /// ended with PERMISSION_DENIED, so the agent stops (it exits with its "refused" status and
    /// systemd does not restart it) and cannot register again with its credential. With
    /// `force`, its tasks are orphaned (STOPPED here, their containers left to the host) and
    /// services replace them elsewhere; without it, an instance with tasks is refused.
    pub fn deregister(
        &self,
        cluster: &str,
        reference: &str,
        force: bool,
    ) -> Result<InstanceView, CpError> {
        self.clusters.require(cluster)?;
        let id = ids::resource_id(reference);
        let found = self
            .store
            .get_instance(id)?
            .filter(|i| i.cluster == cluster && !i.revoked);
        let Some(instance) = found else {
            return Err(CpError::InvalidParameter(format!(
                "Container instance {reference} not found in cluster {cluster}, or already deregistered"
            )));
        };
        match self.store.deregister_instance(&instance.id, force, now_ms())? {
            Deregistration::NoSuchInstance => {
                return Err(CpError::InvalidParameter(format!(
                    "Container instance {reference} not found in cluster {cluster}"
                )))
            }
            Deregistration::HasTasks(n) => {
                return Err(CpError::InvalidParameter(format!(
                    "Found {n} tasks not stopped on container instance {}: stop them first, or deregister with force (they are then orphaned and services replace them)",
                    instance.id
                )))
            }
            Deregistration::Done(orphaned) => {
                tracing::info!(instance.id = %instance.id, orphaned = orphaned.len(), "container instance deregistered");
            }
        }
        self.agents.sessions.end(
            &instance.id,
            tonic::Status::permission_denied("container instance deregistered"),
        );
        self.agents.changed.notify_one();
        self.views(cluster)?
            .into_iter()
            .find(|v| v.instance.id == instance.id)
            .ok_or_else(|| {
                CpError::InvalidParameter(format!("Container instance {reference} vanished"))
            })
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
