//! ListContainerInstances, DescribeContainerInstances.

use serde::Deserialize;
use serde_json::json;

use super::request::{cluster_or_default, page_response, paginate, parse, OpResult, Operation};
use super::shapes;
use crate::app::ControlPlane;
use crate::domain::ids;

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ListContainerInstancesRequest {
    cluster: Option<String>,
    status: Option<String>,
    next_token: Option<String>,
    max_results: Option<i64>,
}

fn list_container_instances(cp: &ControlPlane, r: ListContainerInstancesRequest) -> OpResult {
    let want_active = match r.status.as_deref() {
        None => None,
        Some("ACTIVE") => Some(true),
        Some(_) => Some(false),
    };
    let arns: Vec<String> = cp
        .instances
        .views(&cluster_or_default(r.cluster))?
        .iter()
        .filter(|v| want_active.is_none_or(|a| a != v.instance.revoked))
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
            Some(v) => found.push(shapes::container_instance(&cp.arns, v)),
            None => failures.push(shapes::missing(&cp.arns.container_instance(&cluster, id))),
        }
    }
    Ok(json!({"containerInstances": found, "failures": failures}))
}

/// The handler of `operation` when it is one of this resource's.
pub(super) fn operation(name: &str) -> Option<Operation> {
    Some(match name {
        "ListContainerInstances" => |cp, r| list_container_instances(cp, parse(r)?),
        "DescribeContainerInstances" => |cp, r| describe_container_instances(cp, parse(r)?),
        _ => return None,
    })
}
