//! Service revisions and service deployments, as ECS's ListServiceDeployments,
//! DescribeServiceDeployments and DescribeServiceRevisions show them (issue #17).
//!
//! A *service revision* is what one deployment runs (task definition, network, images); a
//! *service deployment* is one move of the service from its source revisions to a target
//! revision, and how it went. They outlive the entries of `Service::deployments`, which leave
//! the service's list as soon as they have no task left: the history here is what a rollback
//! goes back to and what an operator reads afterwards. The transitions are pure; the service
//! controller and the Services operations call them and store the service.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Deployment, RolloutState, Service};

/// At most this many service deployments are kept per service, newest first.
pub const MAX_HISTORY: usize = 50;

/// ECS's ServiceDeploymentStatus (the ones Berth's deployments pass through).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    InProgress,
    Successful,
    Stopped,
    RollbackInProgress,
    RollbackSuccessful,
    RollbackFailed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::InProgress => "IN_PROGRESS",
            Status::Successful => "SUCCESSFUL",
            Status::Stopped => "STOPPED",
            Status::RollbackInProgress => "ROLLBACK_IN_PROGRESS",
            Status::RollbackSuccessful => "ROLLBACK_SUCCESSFUL",
            Status::RollbackFailed => "ROLLBACK_FAILED",
        }
    }

    /// ListServiceDeployments' `status` filter takes ECS's names, PENDING and the requested
    /// states included (nothing of Berth's is ever in those).
    pub fn parse(name: &str) -> Option<Option<Status>> {
        Some(Some(match name {
            "IN_PROGRESS" => Status::InProgress,
            "SUCCESSFUL" => Status::Successful,
            "STOPPED" => Status::Stopped,
            "ROLLBACK_IN_PROGRESS" => Status::RollbackInProgress,
            "ROLLBACK_SUCCESSFUL" => Status::RollbackSuccessful,
            "ROLLBACK_FAILED" => Status::RollbackFailed,
            "PENDING" | "STOP_REQUESTED" | "ROLLBACK_REQUESTED" => return Some(None),
            _ => return None,
        }))
    }

    pub fn is_finished(self) -> bool {
        !matches!(self, Status::InProgress | Status::RollbackInProgress)
    }
}

/// What one deployment runs (ECS's ServiceRevision). Its id is the digits of the deployment id
/// that first ran it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Revision {
    pub id: String,
    /// family:revision.
    pub task_definition: String,
    pub launch_type: String,
    /// The security group ids its tasks get (awsvpc).
    pub security_groups: Vec<String>,
    /// networkConfiguration as the user gave it.
    pub network_configuration: Option<Value>,
    /// (container name, image) of the task definition's containers.
    pub container_images: Vec<(String, String)>,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollback {
    pub reason: String,
    pub started_at_ms: i64,
    /// The revision rolled back to.
    pub revision: String,
}

/// One service deployment (ECS's ServiceDeployment).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceDeployment {
    /// The last part of its ARN: 21 letters and digits, as ECS's.
    pub id: String,
    /// The deployment (`ecs-svc/…`) that rolls it out.
    pub deployment_id: String,
    pub source_revisions: Vec<String>,
    pub target_revision: String,
    pub status: Status,
    pub status_reason: Option<String>,
    pub settings: super::DeploymentSettings,
    /// Failed tasks when it finished; while it runs, its deployment's count is the live one.
    pub failed_tasks: u32,
    pub circuit_breaker_triggered: bool,
    pub rollback: Option<Rollback>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub finished_at_ms: Option<i64>,
    pub stopped_at_ms: Option<i64>,
}

/// A new service deployment id: 21 letters and digits.
pub fn new_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..21)
        .map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char)
        .collect()
}

/// The revision id a deployment id names: its digits.
pub fn revision_id_of(deployment_id: &str) -> String {
    deployment_id
        .strip_prefix("ecs-svc/")
        .unwrap_or(deployment_id)
        .to_string()
}

/// Starts a deployment of `revision`: it becomes the service's PRIMARY, a new service deployment
/// records the move from what ran before, and one still in progress is stopped (a newer one
/// supersedes it, as in ECS).
pub fn begin(s: &mut Service, mut deployment: Deployment, revision: Revision, now: i64) {
    let sources: Vec<String> = {
        let mut ids: Vec<String> = s
            .deployments
            .iter()
            .map(|d| d.revision.clone())
            .filter(|r| !r.is_empty())
            .collect();
        ids.dedup();
        ids
    };
    for sd in s.service_deployments.iter_mut() {
        if !sd.status.is_finished() {
            sd.status = Status::Stopped;
            sd.status_reason = Some("Superseded by a newer service deployment.".into());
            sd.stopped_at_ms = Some(now);
            sd.finished_at_ms = Some(now);
            sd.updated_at_ms = now;
        }
    }
    let sd = ServiceDeployment {
        id: new_id(),
        deployment_id: deployment.id.clone(),
        source_revisions: sources,
        target_revision: revision.id.clone(),
        status: Status::InProgress,
        status_reason: None,
        settings: s.deployment,
        failed_tasks: 0,
        circuit_breaker_triggered: false,
        rollback: None,
        created_at_ms: now,
        updated_at_ms: now,
        finished_at_ms: None,
        stopped_at_ms: None,
    };
    deployment.revision = revision.id.clone();
    deployment.service_deployment = sd.id.clone();
    s.task_definition = deployment.task_definition.clone();
    s.deployments.insert(0, deployment);
    s.steady = false;
    if !s.revisions.iter().any(|r| r.id == revision.id) {
        s.revisions.insert(0, revision);
    }
    s.service_deployments.insert(0, sd);
    prune(s);
}

/// The deployment rolled out every task: its service deployment succeeded (or, if it was a
/// rollback, the rollback did).
pub fn complete(s: &mut Service, deployment_id: &str, now: i64) {
    let failed = failed_of(s, deployment_id);
    if let Some(sd) = of_deployment(s, deployment_id) {
        sd.status = match sd.status {
            Status::RollbackInProgress => Status::RollbackSuccessful,
            _ => Status::Successful,
        };
        sd.failed_tasks = failed;
        sd.finished_at_ms = Some(now);
        sd.updated_at_ms = now;
    }
}

/// The circuit breaker stopped the deployment; without a rollback its service deployment is
/// STOPPED, a failed rollback is ROLLBACK_FAILED.
pub fn fail(s: &mut Service, deployment_id: &str, reason: &str, now: i64) {
    let failed = failed_of(s, deployment_id);
    if let Some(sd) = of_deployment(s, deployment_id) {
        sd.status = match sd.status {
            Status::RollbackInProgress => Status::RollbackFailed,
            _ => Status::Stopped,
        };
        sd.status_reason = Some(reason.to_string());
        sd.circuit_breaker_triggered = true;
        sd.failed_tasks = failed;
        sd.stopped_at_ms = Some(now);
        sd.finished_at_ms = Some(now);
        sd.updated_at_ms = now;
    }
}

/// Rolls the deployment `deployment_id` back to the revision that last succeeded: a new PRIMARY
/// deployment of that revision, carried by the same service deployment (ROLLBACK_IN_PROGRESS).
/// `by_circuit_breaker` says who asked (the breaker, or StopServiceDeployment). Returns the new
/// deployment's id and the revision's task definition, or None when nothing ever succeeded
/// (there is nothing to go back to).
pub fn roll_back(
    s: &mut Service,
    deployment_id: &str,
    reason: &str,
    by_circuit_breaker: bool,
    now: i64,
) -> Option<(String, String)> {
    let target = last_good_revision(s, deployment_id)?;
    let revision = s.revisions.iter().find(|r| r.id == target)?.clone();
    let failed = failed_of(s, deployment_id);
    let sd = of_deployment(s, deployment_id)?;
    sd.status = Status::RollbackInProgress;
    sd.status_reason = Some(reason.to_string());
    sd.circuit_breaker_triggered |= by_circuit_breaker;
    sd.failed_tasks = failed;
    sd.updated_at_ms = now;
    sd.rollback = Some(Rollback {
        reason: reason.to_string(),
        started_at_ms: now,
        revision: revision.id.clone(),
    });
    let sd_id = sd.id.clone();
    let deployment = Deployment::of_revision(&revision, sd_id, now);
    let id = deployment.id.clone();
    s.deployments.insert(0, deployment);
    s.task_definition = revision.task_definition.clone();
    s.steady = false;
    Some((id, revision.task_definition))
}

/// The revision a rollback of `deployment_id` goes to: the target of the newest service
/// deployment that succeeded (itself excluded), else that of a deployment that completed.
fn last_good_revision(s: &Service, deployment_id: &str) -> Option<String> {
    let own = s
        .deployments
        .iter()
        .find(|d| d.id == deployment_id)
        .map(|d| d.revision.clone());
    s.service_deployments
        .iter()
        .filter(|sd| sd.deployment_id != deployment_id)
        .find(|sd| matches!(sd.status, Status::Successful | Status::RollbackSuccessful))
        .map(|sd| match (&sd.status, &sd.rollback) {
            (Status::RollbackSuccessful, Some(r)) => r.revision.clone(),
            _ => sd.target_revision.clone(),
        })
        .or_else(|| {
            s.deployments
                .iter()
                .find(|d| d.rollout_state == RolloutState::Completed && d.id != deployment_id)
                .map(|d| d.revision.clone())
        })
        .filter(|r| !r.is_empty() && Some(r) != own.as_ref())
}

fn failed_of(s: &Service, deployment_id: &str) -> u32 {
    s.deployments
        .iter()
        .find(|d| d.id == deployment_id)
        .map_or(0, |d| d.failed_tasks)
}

/// The service deployment a deployment belongs to.
fn of_deployment<'a>(s: &'a mut Service, deployment_id: &str) -> Option<&'a mut ServiceDeployment> {
    let sd_id = s
        .deployments
        .iter()
        .find(|d| d.id == deployment_id)
        .map(|d| d.service_deployment.clone())
        .filter(|id| !id.is_empty());
    s.service_deployments.iter_mut().find(|sd| match &sd_id {
        Some(id) => &sd.id == id,
        None => sd.deployment_id == deployment_id,
    })
}

/// Keeps the newest [`MAX_HISTORY`] service deployments and the revisions that they or a live
/// deployment name.
fn prune(s: &mut Service) {
    s.service_deployments.truncate(MAX_HISTORY);
    let kept: std::collections::HashSet<String> = s
        .service_deployments
        .iter()
        .flat_map(|sd| {
            let mut r = sd.source_revisions.clone();
            r.push(sd.target_revision.clone());
            r.extend(sd.rollback.iter().map(|rb| rb.revision.clone()));
            r
        })
        .chain(s.deployments.iter().map(|d| d.revision.clone()))
        .collect();
    s.revisions.retain(|r| kept.contains(&r.id));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::service::{test_service, Deployment, RolloutState};

    fn revision(id: &str, td: &str) -> Revision {
        Revision {
            id: id.into(),
            task_definition: td.into(),
            launch_type: "EXTERNAL".into(),
            security_groups: Vec::new(),
            network_configuration: None,
            container_images: vec![("app".into(), "busybox".into())],
            created_at_ms: 1,
        }
    }

    fn deployment(id: &str, td: &str) -> Deployment {
        Deployment {
            id: id.into(),
            task_definition: td.into(),
            rollout_state: RolloutState::InProgress,
            rollout_state_reason: String::new(),
            failed_tasks: 0,
            security_groups: Vec::new(),
            created_at_ms: 1,
            updated_at_ms: 1,
            revision: String::new(),
            service_deployment: String::new(),
        }
    }

    #[test]
    fn a_new_deployment_records_its_sources_and_supersedes_one_in_progress() {
        let mut s = test_service("web");
        begin(
            &mut s,
            deployment("ecs-svc/1", "web:1"),
            revision("1", "web:1"),
            10,
        );
        assert_eq!(
            s.service_deployments[0].source_revisions,
            Vec::<String>::new()
        );
        begin(
            &mut s,
            deployment("ecs-svc/2", "web:2"),
            revision("2", "web:2"),
            20,
        );
        assert_eq!(s.task_definition, "web:2");
        assert_eq!(s.deployments[0].revision, "2");
        let (new, old) = (&s.service_deployments[0], &s.service_deployments[1]);
        assert_eq!(new.source_revisions, vec!["1".to_string()]);
        assert_eq!(new.target_revision, "2");
        assert_eq!(new.status, Status::InProgress);
        assert_eq!(old.status, Status::Stopped);
        assert_eq!(old.stopped_at_ms, Some(20));
        assert_eq!(new.id.len(), 21);
    }

    #[test]
    fn a_failed_deployment_rolls_back_to_the_last_success_and_the_rollback_completes() {
        let mut s = test_service("web");
        begin(
            &mut s,
            deployment("ecs-svc/1", "web:1"),
            revision("1", "web:1"),
            10,
        );
        s.deployments[0].rollout_state = RolloutState::Completed;
        complete(&mut s, "ecs-svc/1", 11);
        assert_eq!(s.service_deployments[0].status, Status::Successful);
        begin(
            &mut s,
            deployment("ecs-svc/2", "web:2"),
            revision("2", "web:2"),
            20,
        );
        // Its old deployment retired already: the history still knows where to go back to.
        s.deployments.retain(|d| d.id != "ecs-svc/1");
        s.deployments[0].failed_tasks = 3;
        let (id, td) = roll_back(&mut s, "ecs-svc/2", "circuit breaker", true, 30).unwrap();
        assert_eq!(td, "web:1");
        assert_eq!(s.task_definition, "web:1");
        assert_eq!(s.deployments[0].id, id);
        assert_eq!(s.deployments[0].revision, "1");
        let sd = &s.service_deployments[0];
        assert_eq!(sd.status, Status::RollbackInProgress);
        assert_eq!(sd.failed_tasks, 3);
        assert_eq!(sd.rollback.as_ref().unwrap().revision, "1");
        assert!(sd.circuit_breaker_triggered);
        complete(&mut s, &id, 40);
        assert_eq!(s.service_deployments[0].status, Status::RollbackSuccessful);
        assert_eq!(s.service_deployments[0].finished_at_ms, Some(40));
    }

    #[test]
    fn nothing_to_roll_back_to_and_failures_without_rollback() {
        let mut s = test_service("web");
        begin(
            &mut s,
            deployment("ecs-svc/1", "web:1"),
            revision("1", "web:1"),
            10,
        );
        assert!(roll_back(&mut s, "ecs-svc/1", "no", false, 20).is_none());
        fail(
            &mut s,
            "ecs-svc/1",
            "ECS deployment circuit breaker: tasks failed to start.",
            20,
        );
        let sd = &s.service_deployments[0];
        assert_eq!(sd.status, Status::Stopped);
        assert!(sd.circuit_breaker_triggered);
    }

    #[test]
    fn history_is_bounded_and_keeps_the_revisions_it_names() {
        let mut s = test_service("web");
        for i in 0..(MAX_HISTORY + 10) {
            let id = format!("ecs-svc/{i}");
            begin(
                &mut s,
                deployment(&id, "web:1"),
                revision(&i.to_string(), "web:1"),
                1,
            );
            s.deployments.truncate(1);
        }
        assert_eq!(s.service_deployments.len(), MAX_HISTORY);
        for sd in &s.service_deployments {
            assert!(s.revisions.iter().any(|r| r.id == sd.target_revision));
        }
        assert!(s.revisions.len() <= MAX_HISTORY + 1);
        assert_eq!(Status::parse("PENDING"), Some(None));
        assert_eq!(Status::parse("SUCCESSFUL"), Some(Some(Status::Successful)));
        assert_eq!(Status::parse("NOPE"), None);
    }
}
