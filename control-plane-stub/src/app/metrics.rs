//! The fleet's state for the metrics' gauges, read when Prometheus scrapes: the clusters
//! ListClusters shows with DescribeClusters' counts, every service that still has tasks
//! (ACTIVE or DRAINING) with its counts and deployments, and the connected agents.

use crate::domain::cluster::ClusterStatus;
use crate::domain::service::ServiceStatus;
use crate::metrics::{ClusterGauges, FleetSnapshot, ServiceGauges};

use super::{ControlPlane, CpError};

impl ControlPlane {
    pub fn fleet_snapshot(&self) -> Result<FleetSnapshot, CpError> {
        let mut fleet = FleetSnapshot {
            agents_connected: self.agents.connected().len() as u64,
            ..Default::default()
        };
        for name in self.clusters.list()? {
            let Some(view) = self.clusters.describe(&name)? else {
                continue;
            };
            if view.record.status != ClusterStatus::Active {
                continue;
            }
            fleet.clusters.push(ClusterGauges {
                cluster: name.clone(),
                container_instances: view.counts.instances,
                running_tasks: view.counts.running_tasks,
                pending_tasks: view.counts.pending_tasks,
                active_services: view.counts.active_services,
            });
            for service in self.services.list(&name, None)? {
                if service.status == ServiceStatus::Inactive {
                    continue;
                }
                let counts = self.services.task_counts(&service)?;
                let mut deployments: Vec<(&'static str, u32)> = Vec::new();
                for d in &service.deployments {
                    let state = d.rollout_state.as_str();
                    match deployments.iter_mut().find(|(s, _)| *s == state) {
                        Some((_, n)) => *n += 1,
                        None => deployments.push((state, 1)),
                    }
                }
                fleet.services.push(ServiceGauges {
                    cluster: name.clone(),
                    service: service.name.clone(),
                    desired: service.desired_count,
                    running: counts.running,
                    pending: counts.pending,
                    deployments,
                });
            }
        }
        Ok(fleet)
    }
}
