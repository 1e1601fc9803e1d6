//! A service's history (issue #17): ListServiceDeployments, DescribeServiceDeployments,
//! DescribeServiceRevisions and StopServiceDeployment (a rollback on request). The records and
//! their transitions are `domain::service_deployment`'s; here they are found and stored.

use super::services::Services;
use super::CpError;
use crate::clock::now_ms;
use crate::domain::ids;
use crate::domain::service::history::{self, Revision, ServiceDeployment, Status};
use crate::domain::service::{RolloutState, Service, ServiceStatus};

/// ListServiceDeployments' filters; None takes everything.
#[derive(Debug, Clone, Default)]
pub struct DeploymentFilter {
    pub statuses: Option<Vec<Status>>,
    pub created_after_ms: Option<i64>,
    pub created_before_ms: Option<i64>,
}

/// How StopServiceDeployment stops one (ECS's stopType).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopType {
    Rollback,
    Abort,
}

impl Services {
    /// The service's deployments that match, newest first.
    pub fn list_deployments(
        &self,
        cluster: &str,
        service: &str,
        filter: &DeploymentFilter,
    ) -> Result<(Service, Vec<ServiceDeployment>), CpError> {
        self.clusters.require(cluster)?;
        let s = self
            .get(cluster, service)?
            .ok_or_else(|| CpError::ServiceNotFound(service.to_string()))?;
        let found = s
            .service_deployments
            .iter()
            .filter(|sd| {
                filter
                    .statuses
                    .as_ref()
                    .is_none_or(|wanted| wanted.contains(&sd.status))
            })
            .filter(|sd| {
                filter
                    .created_after_ms
                    .is_none_or(|t| sd.created_at_ms >= t)
            })
            .filter(|sd| {
                filter
                    .created_before_ms
                    .is_none_or(|t| sd.created_at_ms <= t)
            })
            .cloned()
            .collect();
        Ok((s, found))
    }

    /// The service deployment an ARN names, with its service; None when there is none.
    pub fn find_deployment(
        &self,
        arn: &str,
    ) -> Result<Option<(Service, ServiceDeployment)>, CpError> {
        let Some((cluster, service, id)) = ids::service_child_arn(arn, "service-deployment") else {
            return Ok(None);
        };
        let Some(s) = self.store.get_service(cluster, service)? else {
            return Ok(None);
        };
        let sd = s.service_deployments.iter().find(|sd| sd.id == id).cloned();
        Ok(sd.map(|sd| (s, sd)))
    }

    /// The service revision an ARN names, with its service; None when there is none.
    pub fn find_revision(&self, arn: &str) -> Result<Option<(Service, Revision)>, CpError> {
        let Some((cluster, service, id)) = ids::service_child_arn(arn, "service-revision") else {
            return Ok(None);
        };
        let Some(s) = self.store.get_service(cluster, service)? else {
            return Ok(None);
        };
        let r = s.revisions.iter().find(|r| r.id == id).cloned();
        Ok(r.map(|r| (s, r)))
    }

    /// StopServiceDeployment: a deployment in progress is rolled back to the revision that last
    /// succeeded (ROLLBACK, ECS's default). ABORT belongs to ECS's blue/green deployments,
    /// which Berth does not run.
    pub fn stop_deployment(&self, arn: &str, stop_type: StopType) -> Result<String, CpError> {
        if stop_type == StopType::Abort {
            return Err(CpError::InvalidParameter(
                "stopType: ABORT applies to blue/green deployments; a rolling deployment stops \
                 with ROLLBACK"
                    .into(),
            ));
        }
        let (mut s, sd) = self
            .find_deployment(arn)?
            .ok_or_else(|| CpError::ServiceDeploymentNotFound(arn.to_string()))?;
        if s.status != ServiceStatus::Active {
            return Err(CpError::ServiceNotActive(s.name.clone()));
        }
        if sd.status != Status::InProgress {
            return Err(CpError::Conflict(format!(
                "The service deployment is {}, not IN_PROGRESS: only a deployment in progress \
                 can be stopped",
                sd.status.as_str()
            )));
        }
        let now = now_ms();
        let reason = "Service deployment rolled back because of a StopServiceDeployment request.";
        let deployment = sd.deployment_id.clone();
        let before = s.clone();
        let Some((id, task_definition)) =
            history::roll_back(&mut s, &deployment, reason, false, now)
        else {
            return Err(CpError::Conflict(
                "The service deployment has no earlier revision that succeeded to roll back to"
                    .into(),
            ));
        };
        if let Some(d) = s.deployments.iter_mut().find(|d| d.id == deployment) {
            d.rollout_state = RolloutState::Failed;
            d.rollout_state_reason = reason.to_string();
            d.updated_at_ms = now;
        }
        let message = format!(
            "{} (deployment {deployment}) stopped: rolling back to (deployment ecs-svc/{}): a \
             new deployment {id} of {task_definition}.",
            s.tag(),
            s.deployments[0].revision
        );
        s.record(message, now);
        s.throttle = Default::default();
        self.save_if_unchanged(&before, &s)?;
        tracing::info!(service = %s.name, deployment, rollback = %id, "service deployment stopped: rolling back");
        self.changed.notify_one();
        Ok(arn.to_string())
    }

    /// Stores `after` unless the service changed since `before` was read (the controller or
    /// another request won; the caller's request is refused rather than lost silently).
    fn save_if_unchanged(&self, before: &Service, after: &Service) -> Result<(), CpError> {
        if !self.store.replace_service(before, after)? {
            return Err(CpError::Conflict(
                "The service changed while the request was handled; try again".into(),
            ));
        }
        Ok(())
    }
}
