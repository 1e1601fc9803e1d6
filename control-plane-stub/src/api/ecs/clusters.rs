//! CreateCluster, ListClusters, DescribeClusters, DeleteCluster.

use serde::Deserialize;
use serde_json::json;

use super::request::{page_response, paginate, parse, OpResult, Operation, PageRequest};
use super::shapes;
use crate::api::error::ApiError;
use crate::app::ControlPlane;
use crate::domain::ids;

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct CreateClusterRequest {
    cluster_name: Option<String>,
}

fn create_cluster(cp: &ControlPlane, r: CreateClusterRequest) -> OpResult {
    let name = r.cluster_name.unwrap_or_else(|| "default".into());
    let view = cp.clusters.create(&name)?;
    Ok(json!({"cluster": shapes::cluster(&cp.arns, &view)}))
}

fn list_clusters(cp: &ControlPlane, r: PageRequest) -> OpResult {
    let arns: Vec<String> = cp
        .clusters
        .list()?
        .iter()
        .map(|n| cp.arns.cluster(n))
        .collect();
    let (page, next) = paginate(arns, r.max_results, r.next_token.as_deref())?;
    Ok(page_response("clusterArns", page, next))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct DescribeClustersRequest {
    clusters: Option<Vec<String>>,
}

fn describe_clusters(cp: &ControlPlane, r: DescribeClustersRequest) -> OpResult {
    let wanted = r.clusters.unwrap_or_else(|| vec!["default".into()]);
    if wanted.len() > 100 {
        return Err(ApiError::client(
            "InvalidParameterException",
            format!("clusters: at most 100 names, {} given", wanted.len()),
        ));
    }
    let mut clusters = Vec::new();
    let mut failures = Vec::new();
    for c in wanted {
        let name = ids::cluster_name(&c);
        match cp.clusters.describe(name)? {
            Some(view) => clusters.push(shapes::cluster(&cp.arns, &view)),
            None => failures.push(shapes::missing(&cp.arns.cluster(name))),
        }
    }
    Ok(json!({"clusters": clusters, "failures": failures}))
}

#[derive(Deserialize)]
struct DeleteClusterRequest {
    cluster: String,
}

fn delete_cluster(cp: &ControlPlane, r: DeleteClusterRequest) -> OpResult {
    let view = cp.clusters.delete(ids::cluster_name(&r.cluster))?;
    Ok(json!({"cluster": shapes::cluster(&cp.arns, &view)}))
}

/// The handler of `operation` when it is one of this resource's.
pub(super) fn operation(name: &str) -> Option<Operation> {
    Some(match name {
        "CreateCluster" => |cp, r| create_cluster(cp, parse(r)?),
        "ListClusters" => |cp, r| list_clusters(cp, parse(r)?),
        "DescribeClusters" => |cp, r| describe_clusters(cp, parse(r)?),
        "DeleteCluster" => |cp, r| delete_cluster(cp, parse(r)?),
        _ => return None,
    })
}
