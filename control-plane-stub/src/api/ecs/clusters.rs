//! CreateCluster, ListClusters, DescribeClusters, DeleteCluster, UpdateCluster,
//! UpdateClusterSettings, PutClusterCapacityProviders.

use serde::Deserialize;
use serde_json::{json, Value};

use super::request::{page_response, paginate, parse, OpResult, Operation, PageRequest};
use super::shapes;
use super::tags::{self, TagRequest};
use crate::api::error::ApiError;
use crate::app::{ClusterUpdate, ClusterView, ControlPlane, NewCluster};
use crate::domain::cluster::{ClusterConfiguration, ClusterSetting};
use crate::domain::ids;

/// botocore's CapacityProviderStrategyItem; only its provider's name matters to Berth, which
/// has none to name.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)] // weight and base are decoded so that a wrong type is refused as ECS does
struct StrategyItem {
    capacity_provider: String,
    weight: Option<i64>,
    base: Option<i64>,
}

#[derive(Deserialize)]
struct ServiceConnectDefaults {
    namespace: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct CreateClusterRequest {
    cluster_name: Option<String>,
    tags: Vec<TagRequest>,
    settings: Vec<ClusterSetting>,
    configuration: Option<ClusterConfiguration>,
    capacity_providers: Vec<String>,
    default_capacity_provider_strategy: Vec<StrategyItem>,
    service_connect_defaults: Option<ServiceConnectDefaults>,
}

/// Which of the optional members a cluster is shown with: DescribeClusters' `include`, or
/// everything for the operations that create or change one.
#[derive(Default)]
struct Detail {
    settings: bool,
    configurations: bool,
    tags: bool,
}

impl Detail {
    const ALL: Detail = Detail {
        settings: true,
        configurations: true,
        tags: true,
    };

    fn from_include(include: &[String]) -> Result<Detail, ApiError> {
        let mut d = Detail::default();
        for i in include {
            match i.as_str() {
                "SETTINGS" => d.settings = true,
                "CONFIGURATIONS" => d.configurations = true,
                "TAGS" => d.tags = true,
                // Berth's clusters have neither attachments (capacity providers') nor the
                // per-launch-type statistics; asking for them is not an error on ECS either.
                "ATTACHMENTS" | "STATISTICS" => {}
                other => {
                    return Err(ApiError::client(
                        "InvalidParameterException",
                        format!(
                            "include: {:?} is not one of ATTACHMENTS, CONFIGURATIONS, SETTINGS, STATISTICS, TAGS",
                            other.chars().take(64).collect::<String>()
                        ),
                    ))
                }
            }
        }
        Ok(d)
    }
}

fn shape(cp: &ControlPlane, view: &ClusterView, detail: &Detail) -> Result<Value, ApiError> {
    let (name, c) = (&view.record.name, &view.counts);
    let config = &view.record.config;
    let mut m = json!({
        "clusterArn": cp.arns.cluster(name),
        "clusterName": name,
        "status": view.record.status.as_str(),
        "registeredContainerInstancesCount": c.instances,
        "runningTasksCount": c.running_tasks,
        "pendingTasksCount": c.pending_tasks,
        "activeServicesCount": c.active_services,
        "statistics": [],
        "capacityProviders": [],
        "defaultCapacityProviderStrategy": [],
    });
    let m = m.as_object_mut().expect("a JSON object");
    if detail.settings {
        m.insert("settings".into(), json!(config.settings));
    }
    if detail.configurations {
        if let Some(c) = &config.configuration {
            m.insert("configuration".into(), json!(c));
        }
    }
    if detail.tags {
        m.insert("tags".into(), tags::shape(&cp.clusters.tags(name)?));
    }
    if let Some(ns) = &config.service_connect_namespace {
        m.insert(
            "serviceConnectDefaults".into(),
            json!({"namespace": cp.arns.namespace(ns)}),
        );
    }
    Ok(Value::Object(m.clone()))
}

fn answer(cp: &ControlPlane, view: &ClusterView) -> OpResult {
    Ok(json!({"cluster": shape(cp, view, &Detail::ALL)?}))
}

fn create_cluster(cp: &ControlPlane, r: CreateClusterRequest) -> OpResult {
    let view = cp.clusters.create(NewCluster {
        name: r.cluster_name.unwrap_or_else(|| "default".into()),
        settings: r.settings,
        configuration: r.configuration,
        service_connect_namespace: r.service_connect_defaults.map(|d| d.namespace),
        tags: tags::from_request(r.tags)?,
        capacity_providers: r.capacity_providers,
        strategy_providers: r
            .default_capacity_provider_strategy
            .into_iter()
            .map(|s| s.capacity_provider)
            .collect(),
    })?;
    answer(cp, &view)
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
    include: Vec<String>,
}

fn describe_clusters(cp: &ControlPlane, r: DescribeClustersRequest) -> OpResult {
    let wanted = r.clusters.unwrap_or_else(|| vec!["default".into()]);
    if wanted.len() > 100 {
        return Err(ApiError::client(
            "InvalidParameterException",
            format!("clusters: at most 100 names, {} given", wanted.len()),
        ));
    }
    let detail = Detail::from_include(&r.include)?;
    let mut clusters = Vec::new();
    let mut failures = Vec::new();
    for c in wanted {
        let name = ids::cluster_name(&c);
        match cp.clusters.describe(name)? {
            Some(view) => clusters.push(shape(cp, &view, &detail)?),
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
    answer(cp, &view)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateClusterRequest {
    cluster: String,
    settings: Option<Vec<ClusterSetting>>,
    configuration: Option<ClusterConfiguration>,
    service_connect_defaults: Option<ServiceConnectDefaults>,
}

fn update_cluster(cp: &ControlPlane, r: UpdateClusterRequest) -> OpResult {
    let update = ClusterUpdate {
        settings: r.settings,
        configuration: r.configuration,
        service_connect_namespace: r.service_connect_defaults.map(|d| d.namespace),
    };
    let view = cp.clusters.update(ids::cluster_name(&r.cluster), update)?;
    answer(cp, &view)
}

#[derive(Deserialize)]
struct UpdateClusterSettingsRequest {
    cluster: String,
    settings: Vec<ClusterSetting>,
}

fn update_cluster_settings(cp: &ControlPlane, r: UpdateClusterSettingsRequest) -> OpResult {
    let view = cp
        .clusters
        .update_settings(ids::cluster_name(&r.cluster), &r.settings)?;
    answer(cp, &view)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PutClusterCapacityProvidersRequest {
    cluster: String,
    capacity_providers: Vec<String>,
    default_capacity_provider_strategy: Vec<StrategyItem>,
}

fn put_cluster_capacity_providers(
    cp: &ControlPlane,
    r: PutClusterCapacityProvidersRequest,
) -> OpResult {
    let strategy: Vec<String> = r
        .default_capacity_provider_strategy
        .into_iter()
        .map(|s| s.capacity_provider)
        .collect();
    let view = cp.clusters.put_capacity_providers(
        ids::cluster_name(&r.cluster),
        &r.capacity_providers,
        &strategy,
    )?;
    answer(cp, &view)
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct DescribeCapacityProvidersRequest {
    capacity_providers: Vec<String>,
    include: Vec<String>,
    #[serde(flatten)]
    page: PageRequest,
}

/// DescribeCapacityProviders: Berth has no capacity providers (ECS's FARGATE and FARGATE_SPOT
/// are AWS's, and a provider of one's own needs an Auto Scaling group or Managed Instances), so
/// none is listed and each one named is a failure, as ECS answers for one that does not exist.
fn describe_capacity_providers(cp: &ControlPlane, r: DescribeCapacityProvidersRequest) -> OpResult {
    if r.include.iter().any(|i| i != "TAGS") {
        return Err(ApiError::client(
            "InvalidParameterException",
            "include: TAGS is the only value",
        ));
    }
    let (page, next) = paginate(
        Vec::<String>::new(),
        r.page.max_results,
        r.page.next_token.as_deref(),
    )?;
    let failures: Vec<Value> = r
        .capacity_providers
        .iter()
        .map(|p| {
            let name = p
                .rsplit_once("capacity-provider/")
                .map_or(p.as_str(), |(_, n)| n);
            shapes::missing(&cp.arns.capacity_provider(name))
        })
        .collect();
    let mut answer = page_response("capacityProviders", page, next);
    answer["failures"] = json!(failures);
    Ok(answer)
}

/// The handler of `operation` when it is one of this resource's.
pub(super) fn operation(name: &str) -> Option<Operation> {
    Some(match name {
        "CreateCluster" => |cp, r| create_cluster(cp, parse(r)?),
        "ListClusters" => |cp, r| list_clusters(cp, parse(r)?),
        "DescribeClusters" => |cp, r| describe_clusters(cp, parse(r)?),
        "DeleteCluster" => |cp, r| delete_cluster(cp, parse(r)?),
        "UpdateCluster" => |cp, r| update_cluster(cp, parse(r)?),
        "UpdateClusterSettings" => |cp, r| update_cluster_settings(cp, parse(r)?),
        "PutClusterCapacityProviders" => |cp, r| put_cluster_capacity_providers(cp, parse(r)?),
        "DescribeCapacityProviders" => |cp, r| describe_capacity_providers(cp, parse(r)?),
        _ => return None,
    })
}
