//! ListContainerInstances (with ECS's status and cluster-query filters),
//! DescribeContainerInstances, UpdateContainerInstancesState, DeregisterContainerInstance,
//! DiscoverPollEndpoint.

use serde::Deserialize;
use serde_json::json;

use super::request::{cluster_or_default, page_response, paginate, parse, OpResult, Operation};
use super::shapes;
use super::tags;
use crate::api::error::ApiError;
use crate::app::ControlPlane;
use crate::domain::ids;
use crate::domain::instance::InstanceStatus;
use crate::domain::query;
use crate::domain::tags::Resource;

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ListContainerInstancesRequest {
    cluster: Option<String>,
    status: Option<String>,
    filter: Option<String>,
    next_token: Option<String>,
    max_results: Option<i64>,
}

fn list_container_instances(cp: &ControlPlane, r: ListContainerInstancesRequest) -> OpResult {
    const STATUSES: &[&str] = &[
        "ACTIVE",
        "DRAINING",
        "INACTIVE",
        "REGISTERING",
        "DEREGISTERING",
        "REGISTRATION_FAILED",
    ];
    if let Some(s) = r.status.as_deref().filter(|s| !STATUSES.contains(s)) {
        return Err(ApiError::client(
            "InvalidParameterException",
            format!("status {s:?} is not one of {}", STATUSES.join(", ")),
        ));
    }
    let filter =
        match r.filter.as_deref().filter(|f| !f.trim().is_empty()) {
            None => None,
            Some(f) => Some(query::parse(f).map_err(|e| {
                ApiError::client("InvalidParameterException", format!("filter: {e}"))
            })?),
        };
    let cluster = cluster_or_default(r.cluster);
    // The filter asks what placement knows of an instance: the same facts.
    let candidates = match &filter {
        Some(_) => cp.instances.candidates(&cluster)?,
        None => Vec::new(),
    };
    let arns: Vec<String> = cp
        .instances
        .views(&cluster)?
        .iter()
        // As ECS: without a status, every instance but the INACTIVE (deregistered) ones.
        .filter(|v| match r.status.as_deref() {
            Some(s) => s == v.instance.status(),
            None => v.instance.status() != "INACTIVE",
        })
        .filter(|v| {
            filter.as_ref().is_none_or(|f| {
                candidates
                    .iter()
                    .find(|c| c.instance_id == v.instance.id)
                    .is_some_and(|c| f.matches(c))
            })
        })
        .map(|v| {
            cp.arns
                .container_instance(&v.instance.cluster, &v.instance.id)
        })
        .collect();
    let (page, next) = paginate(arns, r.max_results, r.next_token.as_deref())?;
    Ok(page_response("containerInstanceArns", page, next))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeContainerInstancesRequest {
    cluster: Option<String>,
    container_instances: Vec<String>,
    #[serde(default)]
    include: Vec<String>,
}

fn describe_container_instances(
    cp: &ControlPlane,
    r: DescribeContainerInstancesRequest,
) -> OpResult {
    let cluster = cluster_or_default(r.cluster);
    let views = cp.instances.views(&cluster)?;
    let mut found = Vec::new();
    let mut failures = Vec::new();
    for reference in &r.container_instances {
        let id = ids::resource_id(reference);
        match views.iter().find(|v| v.instance.id == id) {
            Some(v) => {
                let mut shape = shapes::container_instance(&cp.arns, v);
                if tags::wanted(&r.include) {
                    let resource = Resource::ContainerInstance {
                        cluster: v.instance.cluster.clone(),
                        id: v.instance.id.clone(),
                    };
                    shape["tags"] = tags::of(cp, resource)?;
                }
                found.push(shape)
            }
            None => failures.push(shapes::missing(&cp.arns.container_instance(&cluster, id))),
        }
    }
    Ok(json!({"containerInstances": found, "failures": failures}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateContainerInstancesStateRequest {
    cluster: Option<String>,
    container_instances: Vec<String>,
    status: String,
}

fn update_container_instances_state(
    cp: &ControlPlane,
    r: UpdateContainerInstancesStateRequest,
) -> OpResult {
    let Some(status) = InstanceStatus::parse(&r.status) else {
        return Err(ApiError::client(
            "InvalidParameterException",
            format!(
                "status {:?}: a container instance can be set ACTIVE or DRAINING",
                r.status
            ),
        ));
    };
    if r.container_instances.is_empty() || r.container_instances.len() > 10 {
        return Err(ApiError::client(
            "InvalidParameterException",
            format!(
                "containerInstances: 1 to 10 container instances, {} given",
                r.container_instances.len()
            ),
        ));
    }
    let cluster = cluster_or_default(r.cluster);
    let (changed, missing) = cp
        .instances
        .set_status(&cluster, &r.container_instances, status)?;
    Ok(json!({
        "containerInstances": changed.iter().map(|v| shapes::container_instance(&cp.arns, v)).collect::<Vec<_>>(),
        "failures": missing
            .iter()
            .map(|m| shapes::missing(&cp.arns.container_instance(&cluster, ids::resource_id(m))))
            .collect::<Vec<_>>(),
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeregisterContainerInstanceRequest {
    cluster: Option<String>,
    container_instance: String,
    #[serde(default)]
    force: bool,
}

fn deregister_container_instance(
    cp: &ControlPlane,
    r: DeregisterContainerInstanceRequest,
) -> OpResult {
    let cluster = cluster_or_default(r.cluster);
    let view = cp
        .instances
        .deregister(&cluster, &r.container_instance, r.force)?;
    Ok(json!({"containerInstance": shapes::container_instance(&cp.arns, &view)}))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct DiscoverPollEndpointRequest {
    container_instance: Option<String>,
    cluster: Option<String>,
}

/// DiscoverPollEndpoint: where an agent keeps its session, berth-cp's gRPC address (ECS's
/// agent asks this before it connects; berth-agent is configured with it, and tools that
/// bootstrap a host can ask). Berth serves no separate telemetry or Service Connect endpoint.
fn discover_poll_endpoint(cp: &ControlPlane, r: DiscoverPollEndpointRequest) -> OpResult {
    let cluster = cluster_or_default(r.cluster);
    cp.clusters.require(&cluster)?;
    if let Some(reference) = &r.container_instance {
        let id = ids::resource_id(reference);
        let registered = cp
            .instances
            .views(&cluster)?
            .iter()
            .any(|v| v.instance.id == id && !v.instance.revoked);
        if !registered {
            return Err(ApiError::client(
                "InvalidParameterException",
                format!(
                    "containerInstance {:?} is not registered in cluster {cluster}",
                    id.chars().take(64).collect::<String>()
                ),
            ));
        }
    }
    Ok(json!({"endpoint": cp.agent_endpoint}))
}

/// The handler of `operation` when it is one of this resource's.
pub(super) fn operation(name: &str) -> Option<Operation> {
    Some(match name {
        "UpdateContainerInstancesState" => |cp, r| update_container_instances_state(cp, parse(r)?),
        "ListContainerInstances" => |cp, r| list_container_instances(cp, parse(r)?),
        "DeregisterContainerInstance" => |cp, r| deregister_container_instance(cp, parse(r)?),
        "DescribeContainerInstances" => |cp, r| describe_container_instances(cp, parse(r)?),
        "DiscoverPollEndpoint" => |cp, r| discover_poll_endpoint(cp, parse(r)?),
        _ => return None,
    })
}
