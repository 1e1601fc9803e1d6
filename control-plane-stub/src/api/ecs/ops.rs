//! One function per ECS operation: request JSON -> control plane -> response JSON.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use super::shapes;
use crate::api::error::ApiError;
use crate::app::{ControlPlane, NetworkConfiguration, RunTaskInput};
use crate::domain::ids;
use crate::state::TaskFilter;

type OpResult = Result<Value, ApiError>;

pub fn dispatch(cp: &ControlPlane, operation: &str, request: Value) -> OpResult {
    match operation {
        "CreateCluster" => create_cluster(cp, parse(request)?),
        "ListClusters" => list_clusters(cp, parse(request)?),
        "DescribeClusters" => describe_clusters(cp, parse(request)?),
        "RegisterTaskDefinition" => register_task_definition(cp, request),
        "DescribeTaskDefinition" => describe_task_definition(cp, parse(request)?),
        "ListTaskDefinitions" => list_task_definitions(cp, parse(request)?),
        "DeregisterTaskDefinition" => deregister_task_definition(cp, parse(request)?),
        "RunTask" => run_task(cp, parse(request)?),
        "StopTask" => stop_task(cp, parse(request)?),
        "DescribeTasks" => describe_tasks(cp, parse(request)?),
        "ListTasks" => list_tasks(cp, parse(request)?),
        "ListContainerInstances" => list_container_instances(cp, parse(request)?),
        "DescribeContainerInstances" => describe_container_instances(cp, parse(request)?),
        other => Err(ApiError::client(
            "UnknownOperationException",
            format!("operation {other} is not supported by berth-cp"),
        )),
    }
}

fn parse<T: DeserializeOwned>(request: Value) -> Result<T, ApiError> {
    serde_json::from_value(request)
        .map_err(|e| ApiError::client("SerializationException", format!("invalid request: {e}")))
}

fn cluster_or_default(c: Option<String>) -> String {
    ids::cluster_name(c.as_deref().unwrap_or("default")).to_string()
}

/// nextToken is the offset into the full, stably sorted list.
fn paginate<T>(
    items: Vec<T>,
    max: Option<i64>,
    token: Option<&str>,
) -> Result<(Vec<T>, Option<String>), ApiError> {
    let start: usize = match token {
        None | Some("") => 0,
        Some(t) => t.parse().map_err(|_| {
            ApiError::client(
                "InvalidParameterException",
                "nextToken: not a token from this API",
            )
        })?,
    };
    let max = match max {
        None => 100,
        Some(m) if (1..=100).contains(&m) => m as usize,
        Some(m) => {
            return Err(ApiError::client(
                "InvalidParameterException",
                format!("maxResults: {m} must be between 1 and 100"),
            ))
        }
    };
    let total = items.len();
    let page: Vec<T> = items.into_iter().skip(start).take(max).collect();
    let next = (start + page.len() < total).then(|| (start + page.len()).to_string());
    Ok((page, next))
}

/// A list response; nextToken only when there is a next page (botocore stops on its absence).
fn page_response(key: &str, page: Vec<String>, next: Option<String>) -> Value {
    let mut v = json!({ key: page });
    if let Some(token) = next {
        v["nextToken"] = json!(token);
    }
    v
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct CreateClusterRequest {
    cluster_name: Option<String>,
}

fn create_cluster(cp: &ControlPlane, r: CreateClusterRequest) -> OpResult {
    let name = r.cluster_name.unwrap_or_else(|| "default".into());
    cp.clusters.create(&name)?;
    let counts = cp.clusters.counts(&name)?.unwrap_or_default();
    Ok(json!({"cluster": shapes::cluster(&cp.arns, &name, counts)}))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct PageRequest {
    next_token: Option<String>,
    max_results: Option<i64>,
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
    let mut clusters = Vec::new();
    let mut failures = Vec::new();
    for c in wanted {
        let name = ids::cluster_name(&c);
        match cp.clusters.counts(name)? {
            Some(counts) => clusters.push(shapes::cluster(&cp.arns, name, counts)),
            None => failures.push(shapes::missing(&cp.arns.cluster(name))),
        }
    }
    Ok(json!({"clusters": clusters, "failures": failures}))
}

fn register_task_definition(cp: &ControlPlane, request: Value) -> OpResult {
    let record = cp.task_definitions.register(&request)?;
    Ok(json!({
        "taskDefinition": shapes::task_definition(&cp.arns, &record),
        "tags": shapes::tags(&record),
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TaskDefinitionRequest {
    task_definition: String,
}

fn describe_task_definition(cp: &ControlPlane, r: TaskDefinitionRequest) -> OpResult {
    let record = cp.task_definitions.get(&r.task_definition)?;
    Ok(json!({
        "taskDefinition": shapes::task_definition(&cp.arns, &record),
        "tags": shapes::tags(&record),
    }))
}

fn deregister_task_definition(cp: &ControlPlane, r: TaskDefinitionRequest) -> OpResult {
    let record = cp.task_definitions.deregister(&r.task_definition)?;
    Ok(json!({"taskDefinition": shapes::task_definition(&cp.arns, &record)}))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ListTaskDefinitionsRequest {
    family_prefix: Option<String>,
    status: Option<String>,
    sort: Option<String>,
    next_token: Option<String>,
    max_results: Option<i64>,
}

fn list_task_definitions(cp: &ControlPlane, r: ListTaskDefinitionsRequest) -> OpResult {
    let active = match r.status.as_deref() {
        None | Some("ACTIVE") => Some(true),
        Some("INACTIVE") => Some(false),
        Some("DELETE_IN_PROGRESS") => return Ok(json!({"taskDefinitionArns": []})),
        Some(other) => {
            return Err(ApiError::client(
                "InvalidParameterException",
                format!("status: {other:?} is not ACTIVE, INACTIVE or DELETE_IN_PROGRESS"),
            ))
        }
    };
    let mut defs = cp
        .task_definitions
        .list(r.family_prefix.as_deref(), active)?;
    match r.sort.as_deref() {
        None | Some("ASC") => {}
        Some("DESC") => defs.reverse(),
        Some(other) => {
            return Err(ApiError::client(
                "InvalidParameterException",
                format!("sort: {other:?} is not ASC or DESC"),
            ))
        }
    }
    let arns: Vec<String> = defs
        .iter()
        .map(|(f, rev)| cp.arns.task_definition(f, *rev))
        .collect();
    let (page, next) = paginate(arns, r.max_results, r.next_token.as_deref())?;
    Ok(page_response("taskDefinitionArns", page, next))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RunTaskRequest {
    cluster: Option<String>,
    task_definition: String,
    count: Option<i64>,
    started_by: Option<String>,
    group: Option<String>,
    overrides: Option<Value>,
    launch_type: Option<String>,
    network_configuration: Option<Value>,
}

/// RunTask's networkConfiguration in ECS's shape: `{"awsvpcConfiguration": {"subnets": [...],
/// "securityGroups": [...], "assignPublicIp": "ENABLED"|"DISABLED"}}`. Subnets and
/// assignPublicIp are accepted and ignored.
fn network_configuration(v: Option<Value>) -> Result<Option<NetworkConfiguration>, ApiError> {
    let invalid = |m: &str| {
        ApiError::client(
            "InvalidParameterException",
            format!("networkConfiguration{m}"),
        )
    };
    let obj = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(o)) => o,
        Some(_) => return Err(invalid(": must be an object")),
    };
    let mut config = NetworkConfiguration::default();
    let awsvpc = match obj.get("awsvpcConfiguration") {
        None | Some(Value::Null) => return Ok(Some(config)),
        Some(Value::Object(a)) => a,
        Some(_) => return Err(invalid(".awsvpcConfiguration: must be an object")),
    };
    let strings = |key: &str| -> Result<Vec<String>, ApiError> {
        match awsvpc.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) if items.iter().all(Value::is_string) => Ok(items
                .iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()),
            Some(_) => Err(invalid(&format!(
                ".awsvpcConfiguration.{key}: must be a list of strings"
            ))),
        }
    };
    strings("subnets")?;
    config.security_groups = strings("securityGroups")?;
    match awsvpc.get("assignPublicIp") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s == "ENABLED" || s == "DISABLED" => {}
        Some(other) => {
            return Err(invalid(&format!(
                ".awsvpcConfiguration.assignPublicIp: {other} is not ENABLED or DISABLED"
            )))
        }
    }
    Ok(Some(config))
}

fn run_task(cp: &ControlPlane, r: RunTaskRequest) -> OpResult {
    if let Some(lt) = r.launch_type.as_deref().filter(|lt| *lt != "EC2") {
        return Err(ApiError::client(
            "InvalidParameterException",
            format!("launchType: {lt} is not supported; berth-cp runs EC2-style tasks only"),
        ));
    }
    let (tasks, failures) = cp.tasks.run(RunTaskInput {
        cluster: cluster_or_default(r.cluster),
        task_definition: r.task_definition,
        count: r.count.unwrap_or(1),
        started_by: r.started_by,
        group: r.group,
        overrides: r.overrides,
        network_configuration: network_configuration(r.network_configuration)?,
    })?;
    let defs = cp.task_definitions.health_defs(&tasks)?;
    Ok(json!({
        "tasks": tasks.iter().map(|t| shapes::task(&cp.arns, t, defs.of(t))).collect::<Vec<_>>(),
        "failures": failures.iter().map(shapes::failure).collect::<Vec<_>>(),
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StopTaskRequest {
    cluster: Option<String>,
    task: String,
    reason: Option<String>,
}

fn stop_task(cp: &ControlPlane, r: StopTaskRequest) -> OpResult {
    let task = cp
        .tasks
        .stop(&cluster_or_default(r.cluster), &r.task, r.reason.as_deref())?;
    let defs = cp
        .task_definitions
        .health_defs(std::slice::from_ref(&task))?;
    Ok(json!({"task": shapes::task(&cp.arns, &task, defs.of(&task))}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeTasksRequest {
    cluster: Option<String>,
    tasks: Vec<String>,
}

fn describe_tasks(cp: &ControlPlane, r: DescribeTasksRequest) -> OpResult {
    if r.tasks.len() > 100 {
        return Err(ApiError::client(
            "InvalidParameterException",
            "tasks: at most 100 tasks per request",
        ));
    }
    let cluster = cluster_or_default(r.cluster);
    let (found, missing) = cp.tasks.describe(&cluster, &r.tasks)?;
    let defs = cp.task_definitions.health_defs(&found)?;
    Ok(json!({
        "tasks": found.iter().map(|t| shapes::task(&cp.arns, t, defs.of(t))).collect::<Vec<_>>(),
        "failures": missing.iter().map(|m| {
            let arn = if m.starts_with("arn:") { m.clone() } else { cp.arns.task(&cluster, m) };
            shapes::missing(&arn)
        }).collect::<Vec<_>>(),
    }))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ListTasksRequest {
    cluster: Option<String>,
    container_instance: Option<String>,
    family: Option<String>,
    started_by: Option<String>,
    desired_status: Option<String>,
    next_token: Option<String>,
    max_results: Option<i64>,
}

fn list_tasks(cp: &ControlPlane, r: ListTasksRequest) -> OpResult {
    let desired = match r.desired_status.as_deref() {
        None | Some("RUNNING") => "RUNNING",
        Some("STOPPED") => "STOPPED",
        Some("PENDING") => return Ok(json!({"taskArns": []})),
        Some(other) => {
            return Err(ApiError::client(
                "InvalidParameterException",
                format!("desiredStatus: {other:?} is not RUNNING, PENDING or STOPPED"),
            ))
        }
    };
    let tasks = cp.tasks.list(TaskFilter {
        cluster: Some(cluster_or_default(r.cluster)),
        instance_id: r
            .container_instance
            .as_deref()
            .map(|c| ids::resource_id(c).to_string()),
        family: r.family,
        started_by: r.started_by,
        desired_status: Some(desired.to_string()),
        not_stopped: false,
    })?;
    let arns: Vec<String> = tasks
        .iter()
        .map(|t| cp.arns.task(&t.cluster, &t.id))
        .collect();
    let (page, next) = paginate(arns, r.max_results, r.next_token.as_deref())?;
    Ok(page_response("taskArns", page, next))
}

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
