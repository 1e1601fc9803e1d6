//! ListServiceDeployments, DescribeServiceDeployments, DescribeServiceRevisions,
//! StopServiceDeployment, and the ServiceDeployment and ServiceRevision shapes (botocore's
//! member names).

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::request::{cluster_or_default, parse, OpResult, Operation};
use super::services::task_definition_arn;
use super::shapes::missing;
use crate::api::error::ApiError;
use crate::api::ts;
use crate::app::{ControlPlane, DeploymentFilter, StopType, TaskCounts};
use crate::domain::service::history::{Revision, ServiceDeployment, Status};
use crate::domain::service::Service;
use crate::scheduler::service::failure_threshold;

/// ECS's limit on the ARNs one Describe call takes.
const MAX_DESCRIBE: usize = 20;

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::client("InvalidParameterException", message)
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct CreatedAt {
    /// Epoch seconds, as botocore sends timestamps.
    before: Option<f64>,
    after: Option<f64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListServiceDeploymentsRequest {
    service: String,
    cluster: Option<String>,
    status: Option<Vec<String>>,
    created_at: Option<CreatedAt>,
    next_token: Option<String>,
    max_results: Option<i64>,
}

fn list_service_deployments(cp: &ControlPlane, r: ListServiceDeploymentsRequest) -> OpResult {
    let statuses = r
        .status
        .map(|names| {
            names
                .iter()
                .map(|n| {
                    Status::parse(n).ok_or_else(|| {
                        invalid(format!("status: {n:?} is not a ServiceDeploymentStatus"))
                    })
                })
                .collect::<Result<Vec<_>, _>>()
                .map(|v| v.into_iter().flatten().collect())
        })
        .transpose()?;
    let created = r.created_at.unwrap_or_default();
    let ms = |t: Option<f64>| t.map(|s| (s * 1000.0) as i64);
    let filter = DeploymentFilter {
        statuses,
        created_after_ms: ms(created.after),
        created_before_ms: ms(created.before),
    };
    let cluster = cluster_or_default(r.cluster);
    let (s, found) = cp
        .services
        .list_deployments(&cluster, &r.service, &filter)?;
    // ECS pages service deployments 20 at a time unless asked otherwise.
    let (page, next) = super::request::paginate(
        found,
        Some(r.max_results.unwrap_or(20)),
        r.next_token.as_deref(),
    )?;
    let briefs: Vec<Value> = page.iter().map(|sd| brief(cp, &s, sd)).collect();
    let mut out = json!({"serviceDeployments": briefs});
    if let Some(token) = next {
        out["nextToken"] = json!(token);
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeServiceDeploymentsRequest {
    service_deployment_arns: Vec<String>,
}

fn describe_service_deployments(
    cp: &ControlPlane,
    r: DescribeServiceDeploymentsRequest,
) -> OpResult {
    check_count("serviceDeploymentArns", r.service_deployment_arns.len())?;
    let mut found = Vec::new();
    let mut failures = Vec::new();
    for arn in &r.service_deployment_arns {
        match cp.services.find_deployment(arn)? {
            Some((s, sd)) => {
                let counts = cp.services.task_counts(&s)?;
                found.push(service_deployment(cp, &s, &sd, &counts));
            }
            None => failures.push(missing(arn)),
        }
    }
    Ok(json!({"serviceDeployments": found, "failures": failures}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeServiceRevisionsRequest {
    service_revision_arns: Vec<String>,
}

fn describe_service_revisions(cp: &ControlPlane, r: DescribeServiceRevisionsRequest) -> OpResult {
    check_count("serviceRevisionArns", r.service_revision_arns.len())?;
    let mut found = Vec::new();
    let mut failures = Vec::new();
    for arn in &r.service_revision_arns {
        match cp.services.find_revision(arn)? {
            Some((s, rev)) => found.push(revision(cp, &s, &rev)),
            None => failures.push(missing(arn)),
        }
    }
    Ok(json!({"serviceRevisions": found, "failures": failures}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StopServiceDeploymentRequest {
    service_deployment_arn: String,
    stop_type: Option<String>,
}

fn stop_service_deployment(cp: &ControlPlane, r: StopServiceDeploymentRequest) -> OpResult {
    let stop_type = match r.stop_type.as_deref() {
        None | Some("ROLLBACK") => StopType::Rollback,
        Some("ABORT") => StopType::Abort,
        Some(other) => {
            return Err(invalid(format!(
                "stopType: {other:?} is not ROLLBACK or ABORT"
            )))
        }
    };
    let arn = cp
        .services
        .stop_deployment(&r.service_deployment_arn, stop_type)?;
    Ok(json!({"serviceDeploymentArn": arn}))
}

fn check_count(key: &str, n: usize) -> Result<(), ApiError> {
    if n == 0 || n > MAX_DESCRIBE {
        return Err(invalid(format!(
            "{key}: {n} given; 1 to {MAX_DESCRIBE} may be"
        )));
    }
    Ok(())
}

fn deployment_arn(cp: &ControlPlane, s: &Service, sd: &ServiceDeployment) -> String {
    cp.arns.service_deployment(&s.cluster, &s.name, &sd.id)
}

fn revision_arn(cp: &ControlPlane, s: &Service, id: &str) -> String {
    cp.arns.service_revision(&s.cluster, &s.name, id)
}

/// ServiceDeploymentBrief.
fn brief(cp: &ControlPlane, s: &Service, sd: &ServiceDeployment) -> Value {
    let mut m = Map::new();
    m.insert(
        "serviceDeploymentArn".into(),
        json!(deployment_arn(cp, s, sd)),
    );
    m.insert("serviceArn".into(), json!(cp.services.arn(s)));
    m.insert("clusterArn".into(), json!(cp.arns.cluster(&s.cluster)));
    m.insert("createdAt".into(), ts(sd.created_at_ms));
    m.insert("startedAt".into(), ts(sd.created_at_ms));
    if let Some(t) = sd.finished_at_ms {
        m.insert("finishedAt".into(), ts(t));
    }
    m.insert(
        "targetServiceRevisionArn".into(),
        json!(revision_arn(cp, s, &sd.target_revision)),
    );
    m.insert("status".into(), json!(sd.status.as_str()));
    if let Some(r) = &sd.status_reason {
        m.insert("statusReason".into(), json!(r));
    }
    Value::Object(m)
}

/// ServiceDeployment, with its revisions' task counts as they stand.
fn service_deployment(
    cp: &ControlPlane,
    s: &Service,
    sd: &ServiceDeployment,
    counts: &TaskCounts,
) -> Value {
    let live = s.deployments.iter().find(|d| d.id == sd.deployment_id);
    // A revision's tasks: those of every live deployment that runs it.
    let summary = |rev: &str, requested: u32| {
        let (running, pending) = s
            .deployments
            .iter()
            .filter(|d| d.revision == rev)
            .filter_map(|d| counts.by_deployment.get(&d.id))
            .fold((0, 0), |(r, p), (dr, dp)| (r + dr, p + dp));
        json!({
            "arn": revision_arn(cp, s, rev),
            "requestedTaskCount": requested,
            "runningTaskCount": running,
            "pendingTaskCount": pending,
        })
    };
    let in_progress = !sd.status.is_finished();
    let target_requested = if in_progress || sd.status == Status::Successful {
        s.desired_count
    } else {
        0
    };
    let mut m = match brief(cp, s, sd) {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    m.remove("targetServiceRevisionArn");
    m.insert("updatedAt".into(), ts(sd.updated_at_ms));
    if let Some(t) = sd.stopped_at_ms {
        m.insert("stoppedAt".into(), ts(t));
    }
    m.insert(
        "sourceServiceRevisions".into(),
        sd.source_revisions.iter().map(|r| summary(r, 0)).collect(),
    );
    m.insert(
        "targetServiceRevision".into(),
        summary(&sd.target_revision, target_requested),
    );
    m.insert(
        "deploymentConfiguration".into(),
        json!({
            "deploymentCircuitBreaker": {
                "enable": sd.settings.circuit_breaker_enable,
                "rollback": sd.settings.circuit_breaker_rollback,
            },
            "maximumPercent": sd.settings.maximum_percent,
            "minimumHealthyPercent": sd.settings.minimum_healthy_percent,
        }),
    );
    if let Some(r) = &sd.rollback {
        m.insert(
            "rollback".into(),
            json!({
                "reason": r.reason,
                "startedAt": ts(r.started_at_ms),
                "serviceRevisionArn": revision_arn(cp, s, &r.revision),
            }),
        );
    }
    let failures = live.map_or(sd.failed_tasks, |d| d.failed_tasks);
    let breaker_status = if !sd.settings.circuit_breaker_enable {
        "DISABLED"
    } else if sd.circuit_breaker_triggered {
        "TRIGGERED"
    } else if in_progress {
        "MONITORING"
    } else {
        "MONITORING_COMPLETE"
    };
    m.insert(
        "deploymentCircuitBreaker".into(),
        json!({
            "status": breaker_status,
            "failureCount": failures,
            "threshold": failure_threshold(s.desired_count),
        }),
    );
    Value::Object(m)
}

/// ServiceRevision.
fn revision(cp: &ControlPlane, s: &Service, r: &Revision) -> Value {
    let mut m = Map::new();
    m.insert(
        "serviceRevisionArn".into(),
        json!(revision_arn(cp, s, &r.id)),
    );
    m.insert("serviceArn".into(), json!(cp.services.arn(s)));
    m.insert("clusterArn".into(), json!(cp.arns.cluster(&s.cluster)));
    m.insert(
        "taskDefinition".into(),
        json!(task_definition_arn(cp, &r.task_definition)),
    );
    m.insert("launchType".into(), json!(r.launch_type));
    m.insert("loadBalancers".into(), json!([]));
    m.insert("serviceRegistries".into(), json!([]));
    if let Some(n) = &r.network_configuration {
        m.insert("networkConfiguration".into(), n.clone());
    }
    m.insert(
        "containerImages".into(),
        r.container_images
            .iter()
            .map(|(name, image)| json!({"containerName": name, "image": image}))
            .collect(),
    );
    m.insert("guardDutyEnabled".into(), json!(false));
    m.insert("createdAt".into(), ts(r.created_at_ms));
    Value::Object(m)
}

/// The handler of `operation` when it is one of this resource's.
pub(super) fn operation(name: &str) -> Option<Operation> {
    Some(match name {
        "ListServiceDeployments" => |cp, r| list_service_deployments(cp, parse(r)?),
        "DescribeServiceDeployments" => |cp, r| describe_service_deployments(cp, parse(r)?),
        "DescribeServiceRevisions" => |cp, r| describe_service_revisions(cp, parse(r)?),
        "StopServiceDeployment" => |cp, r| stop_service_deployment(cp, parse(r)?),
        _ => return None,
    })
}
