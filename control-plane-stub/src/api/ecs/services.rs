//! CreateService, UpdateService, DescribeServices, ListServices, DeleteService, and the
//! Service and Deployment shapes (botocore's member names).

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::request::{cluster_or_default, page_response, paginate, parse, OpResult, Operation};
use super::shapes::missing;
use super::tags::{self, TagRequest};
use super::tasks::network_configuration;
use crate::api::error::ApiError;
use crate::api::ts;
use crate::app::{ControlPlane, CreateServiceInput, TaskCounts, UpdateServiceInput};
use crate::domain::ids;
use crate::domain::placement::{ConstraintSpec, StrategySpec};
use crate::domain::service::{DeploymentSettings, SchedulingStrategy, Service};
use crate::domain::tags::Resource;

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct CircuitBreakerRequest {
    enable: bool,
    rollback: bool,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct DeploymentConfigurationRequest {
    minimum_healthy_percent: Option<i64>,
    maximum_percent: Option<i64>,
    deployment_circuit_breaker: Option<CircuitBreakerRequest>,
}

impl DeploymentConfigurationRequest {
    /// Over `base`: what the request leaves out stays as it is (ECS's defaults on create).
    fn settings(&self, base: DeploymentSettings) -> Result<DeploymentSettings, ApiError> {
        let percent = |key: &str, v: Option<i64>, default: u32| -> Result<u32, ApiError> {
            match v {
                None => Ok(default),
                Some(n) => u32::try_from(n).map_err(|_| {
                    ApiError::client(
                        "InvalidParameterException",
                        format!("deploymentConfiguration.{key}: {n} must not be negative"),
                    )
                }),
            }
        };
        let (enable, rollback) = match &self.deployment_circuit_breaker {
            Some(b) => (b.enable, b.rollback),
            None => (base.circuit_breaker_enable, base.circuit_breaker_rollback),
        };
        Ok(DeploymentSettings {
            minimum_healthy_percent: percent(
                "minimumHealthyPercent",
                self.minimum_healthy_percent,
                base.minimum_healthy_percent,
            )?,
            maximum_percent: percent("maximumPercent", self.maximum_percent, base.maximum_percent)?,
            circuit_breaker_enable: enable,
            circuit_breaker_rollback: rollback,
        })
    }
}

fn count(key: &str, v: Option<i64>) -> Result<Option<u32>, ApiError> {
    v.map(|n| {
        u32::try_from(n).map_err(|_| {
            ApiError::client(
                "InvalidParameterException",
                format!("{key}: {n} must not be negative"),
            )
        })
    })
    .transpose()
}

fn network(
    v: Option<Value>,
) -> Result<Option<(Value, crate::app::NetworkConfiguration)>, ApiError> {
    let raw = v.clone();
    Ok(network_configuration(v)?.map(|n| (raw.unwrap_or(Value::Null), n)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateServiceRequest {
    cluster: Option<String>,
    service_name: String,
    task_definition: Option<String>,
    desired_count: Option<i64>,
    launch_type: Option<String>,
    scheduling_strategy: Option<String>,
    #[serde(default)]
    deployment_configuration: DeploymentConfigurationRequest,
    health_check_grace_period_seconds: Option<i64>,
    network_configuration: Option<Value>,
    #[serde(default)]
    tags: Vec<TagRequest>,
    propagate_tags: Option<String>,
    #[serde(default, rename = "enableECSManagedTags")]
    enable_ecs_managed_tags: bool,
    client_token: Option<String>,
    #[serde(default)]
    enable_execute_command: bool,
    #[serde(default)]
    placement_strategy: Vec<StrategySpec>,
    #[serde(default)]
    placement_constraints: Vec<ConstraintSpec>,
    service_connect_configuration: Option<Value>,
}

fn create_service(cp: &ControlPlane, r: CreateServiceRequest) -> OpResult {
    let task_definition = r.task_definition.ok_or_else(|| {
        ApiError::client(
            "InvalidParameterException",
            "taskDefinition: required for a service with the ECS deployment controller",
        )
    })?;
    let daemon = r.scheduling_strategy.as_deref() == Some("DAEMON");
    let desired_count = match (daemon, count("desiredCount", r.desired_count)?) {
        (false, Some(n)) => n,
        (false, None) => {
            return Err(ApiError::client(
                "InvalidParameterException",
                "desiredCount: required for a REPLICA service",
            ))
        }
        // A daemon's count is its eligible instances, found by the scheduler.
        (true, None) => 0,
        (true, Some(_)) => {
            return Err(ApiError::client(
                "InvalidParameterException",
                "desiredCount: a DAEMON service runs one task on each eligible container instance; do not set it",
            ))
        }
    };
    let defaults = if daemon {
        DeploymentSettings::daemon_default()
    } else {
        DeploymentSettings::default()
    };
    let input = CreateServiceInput {
        cluster: cluster_or_default(r.cluster),
        name: r.service_name,
        task_definition,
        desired_count,
        launch_type: r.launch_type,
        scheduling_strategy: r.scheduling_strategy,
        deployment: r.deployment_configuration.settings(defaults)?,
        health_check_grace_period_seconds: count(
            "healthCheckGracePeriodSeconds",
            r.health_check_grace_period_seconds,
        )?,
        network_configuration: network(r.network_configuration)?,
        tags: tags::from_request(r.tags)?,
        propagate_tags: Some(
            tags::propagate(r.propagate_tags.as_deref())?
                .as_str()
                .to_string(),
        ),
        enable_ecs_managed_tags: r.enable_ecs_managed_tags,
        enable_execute_command: r.enable_execute_command,
        client_token: r.client_token,
        placement_strategy: r.placement_strategy,
        placement_constraints: r.placement_constraints,
        service_connect: r.service_connect_configuration,
    };
    let s = cp.services.create(input)?;
    Ok(json!({"service": service(cp, &s, true)?}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateServiceRequest {
    cluster: Option<String>,
    service: String,
    desired_count: Option<i64>,
    task_definition: Option<String>,
    deployment_configuration: Option<DeploymentConfigurationRequest>,
    health_check_grace_period_seconds: Option<i64>,
    network_configuration: Option<Value>,
    #[serde(default)]
    force_new_deployment: bool,
    placement_strategy: Option<Vec<StrategySpec>>,
    placement_constraints: Option<Vec<ConstraintSpec>>,
    propagate_tags: Option<String>,
    #[serde(rename = "enableECSManagedTags")]
    enable_ecs_managed_tags: Option<bool>,
    enable_execute_command: Option<bool>,
    service_connect_configuration: Option<Value>,
}

fn update_service(cp: &ControlPlane, r: UpdateServiceRequest) -> OpResult {
    let cluster = cluster_or_default(r.cluster);
    let current = cp
        .services
        .get(&cluster, &r.service)?
        .map(|s| s.deployment)
        .unwrap_or_default();
    let input = UpdateServiceInput {
        cluster,
        service: r.service,
        desired_count: count("desiredCount", r.desired_count)?,
        task_definition: r.task_definition,
        deployment: r
            .deployment_configuration
            .map(|d| d.settings(current))
            .transpose()?,
        health_check_grace_period_seconds: count(
            "healthCheckGracePeriodSeconds",
            r.health_check_grace_period_seconds,
        )?,
        network_configuration: network(r.network_configuration)?,
        force_new_deployment: r.force_new_deployment,
        placement_strategy: r.placement_strategy,
        placement_constraints: r.placement_constraints,
        propagate_tags: r
            .propagate_tags
            .as_deref()
            .map(|p| tags::propagate(Some(p)).map(|p| p.as_str().to_string()))
            .transpose()?,
        enable_ecs_managed_tags: r.enable_ecs_managed_tags,
        enable_execute_command: r.enable_execute_command,
        service_connect: r.service_connect_configuration,
    };
    let s = cp.services.update(input)?;
    Ok(json!({"service": service(cp, &s, false)?}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeServicesRequest {
    cluster: Option<String>,
    services: Vec<String>,
    #[serde(default)]
    include: Vec<String>,
}

fn describe_services(cp: &ControlPlane, r: DescribeServicesRequest) -> OpResult {
    if r.services.is_empty() || r.services.len() > 10 {
        return Err(ApiError::client(
            "InvalidParameterException",
            format!("services: {} names given; 1 to 10 may be", r.services.len()),
        ));
    }
    let cluster = cluster_or_default(r.cluster);
    let (found, not_found) = cp.services.describe(&cluster, &r.services)?;
    let tags = r.include.iter().any(|i| i == "TAGS");
    let services = found
        .iter()
        .map(|s| service(cp, s, tags))
        .collect::<Result<Vec<_>, _>>()?;
    let failures: Vec<Value> = not_found
        .iter()
        .map(|n| missing(&cp.arns.service(&cluster, ids::resource_id(n))))
        .collect();
    Ok(json!({"services": services, "failures": failures}))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ListServicesRequest {
    cluster: Option<String>,
    next_token: Option<String>,
    max_results: Option<i64>,
    launch_type: Option<String>,
    scheduling_strategy: Option<String>,
}

fn list_services(cp: &ControlPlane, r: ListServicesRequest) -> OpResult {
    let cluster = cluster_or_default(r.cluster);
    let mut services = cp.services.list(&cluster, r.launch_type.as_deref())?;
    if let Some(wanted) = r.scheduling_strategy.as_deref() {
        let wanted = SchedulingStrategy::parse(wanted).ok_or_else(|| {
            ApiError::client(
                "InvalidParameterException",
                format!("schedulingStrategy: {wanted:?} is not REPLICA or DAEMON"),
            )
        })?;
        services.retain(|s| s.scheduling_strategy == wanted);
    }
    service_page(cp, &services, r.max_results, r.next_token.as_deref())
}

/// A page of services' ARNs: ECS pages services 10 at a time unless asked for more.
fn service_page(
    cp: &ControlPlane,
    services: &[Service],
    max_results: Option<i64>,
    next_token: Option<&str>,
) -> OpResult {
    let arns: Vec<String> = services.iter().map(|s| cp.services.arn(s)).collect();
    let (page, next) = paginate(arns, Some(max_results.unwrap_or(10)), next_token)?;
    Ok(page_response("serviceArns", page, next))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListServicesByNamespaceRequest {
    namespace: String,
    next_token: Option<String>,
    max_results: Option<i64>,
}

/// ListServicesByNamespace: the services, of any cluster, in a Service Connect namespace.
fn list_services_by_namespace(cp: &ControlPlane, r: ListServicesByNamespaceRequest) -> OpResult {
    let services = cp
        .services
        .in_namespace(ids::namespace_name(&r.namespace))?;
    service_page(cp, &services, r.max_results, r.next_token.as_deref())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteServiceRequest {
    cluster: Option<String>,
    service: String,
    #[serde(default)]
    force: bool,
}

fn delete_service(cp: &ControlPlane, r: DeleteServiceRequest) -> OpResult {
    let s = cp
        .services
        .delete(&cluster_or_default(r.cluster), &r.service, r.force)?;
    Ok(json!({"service": service(cp, &s, false)?}))
}

/// A service as ECS shows it; `tags` only when asked for (DescribeServices include TAGS) or on
/// CreateService.
fn service(cp: &ControlPlane, s: &Service, with_tags: bool) -> Result<Value, ApiError> {
    let counts = cp.services.task_counts(s)?;
    let mut m = Map::new();
    m.insert("serviceArn".into(), json!(cp.services.arn(s)));
    m.insert("serviceName".into(), json!(s.name));
    m.insert("clusterArn".into(), json!(cp.arns.cluster(&s.cluster)));
    m.insert("loadBalancers".into(), json!([]));
    m.insert("serviceRegistries".into(), json!([]));
    m.insert("status".into(), json!(s.status.as_str()));
    m.insert("desiredCount".into(), json!(s.desired_count));
    m.insert("runningCount".into(), json!(counts.running));
    m.insert("pendingCount".into(), json!(counts.pending));
    m.insert("launchType".into(), json!(s.launch_type));
    m.insert(
        "taskDefinition".into(),
        json!(task_definition_arn(cp, &s.task_definition)),
    );
    m.insert(
        "deploymentConfiguration".into(),
        json!({
            "deploymentCircuitBreaker": {
                "enable": s.deployment.circuit_breaker_enable,
                "rollback": s.deployment.circuit_breaker_rollback,
            },
            "maximumPercent": s.deployment.maximum_percent,
            "minimumHealthyPercent": s.deployment.minimum_healthy_percent,
        }),
    );
    m.insert("deployments".into(), deployments(cp, s, &counts));
    m.insert(
        "events".into(),
        s.events
            .iter()
            .map(|e| json!({"id": e.id, "createdAt": ts(e.created_at_ms), "message": e.message}))
            .collect(),
    );
    m.insert("createdAt".into(), ts(s.created_at_ms));
    m.insert(
        "placementConstraints".into(),
        json!(s.placement_constraints),
    );
    m.insert("placementStrategy".into(), json!(s.placement_strategy));
    if let Some(n) = &s.network_configuration {
        m.insert("networkConfiguration".into(), n.clone());
    }
    if let Some(g) = s.health_check_grace_period_seconds {
        m.insert("healthCheckGracePeriodSeconds".into(), json!(g));
    }
    m.insert(
        "schedulingStrategy".into(),
        json!(s.scheduling_strategy.as_str()),
    );
    m.insert("deploymentController".into(), json!({"type": "ECS"}));
    m.insert(
        "enableECSManagedTags".into(),
        json!(s.enable_ecs_managed_tags),
    );
    m.insert(
        "propagateTags".into(),
        json!(s.propagate_tags.as_deref().unwrap_or("NONE")),
    );
    m.insert(
        "enableExecuteCommand".into(),
        json!(s.enable_execute_command),
    );
    if with_tags {
        let resource = Resource::Service {
            cluster: s.cluster.clone(),
            name: s.name.clone(),
        };
        m.insert("tags".into(), tags::of(cp, resource)?);
    }
    Ok(Value::Object(m))
}

fn deployments(cp: &ControlPlane, s: &Service, counts: &TaskCounts) -> Value {
    s.deployments
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let (running, pending) = counts.by_deployment.get(&d.id).copied().unwrap_or((0, 0));
            let mut m = Map::new();
            m.insert("id".into(), json!(d.id));
            m.insert(
                "status".into(),
                json!(if i == 0 { "PRIMARY" } else { "ACTIVE" }),
            );
            m.insert(
                "taskDefinition".into(),
                json!(task_definition_arn(cp, &d.task_definition)),
            );
            m.insert(
                "desiredCount".into(),
                json!(if i == 0 {
                    s.desired_count
                } else {
                    running + pending
                }),
            );
            m.insert("pendingCount".into(), json!(pending));
            m.insert("runningCount".into(), json!(running));
            m.insert("failedTasks".into(), json!(d.failed_tasks));
            m.insert("createdAt".into(), ts(d.created_at_ms));
            m.insert("updatedAt".into(), ts(d.updated_at_ms));
            m.insert("launchType".into(), json!(s.launch_type));
            if let Some(n) = &s.network_configuration {
                m.insert("networkConfiguration".into(), n.clone());
            }
            // Kept per service, not per deployment: it has no effect on the tasks yet.
            if let (0, Some(sc)) = (i, &s.service_connect) {
                let mut sc = sc.clone();
                if let Some(ns) = sc["namespace"].as_str().map(|n| cp.arns.namespace(n)) {
                    sc["namespace"] = json!(ns);
                }
                m.insert("serviceConnectConfiguration".into(), sc);
            }
            m.insert("rolloutState".into(), json!(d.rollout_state.as_str()));
            m.insert("rolloutStateReason".into(), json!(d.rollout_state_reason));
            Value::Object(m)
        })
        .collect()
}

pub(super) fn task_definition_arn(cp: &ControlPlane, family_revision: &str) -> String {
    match family_revision.rsplit_once(':') {
        Some((family, rev)) => rev
            .parse()
            .map(|r| cp.arns.task_definition(family, r))
            .unwrap_or_else(|_| family_revision.to_string()),
        None => family_revision.to_string(),
    }
}

/// The handler of `operation` when it is one of this resource's.
pub(super) fn operation(name: &str) -> Option<Operation> {
    Some(match name {
        "CreateService" => |cp, r| create_service(cp, parse(r)?),
        "UpdateService" => |cp, r| update_service(cp, parse(r)?),
        "DescribeServices" => |cp, r| describe_services(cp, parse(r)?),
        "ListServices" => |cp, r| list_services(cp, parse(r)?),
        "ListServicesByNamespace" => |cp, r| list_services_by_namespace(cp, parse(r)?),
        "DeleteService" => |cp, r| delete_service(cp, parse(r)?),
        _ => return None,
    })
}
