//! RunTask, StartTask, StopTask, DescribeTasks, ListTasks.

use serde::Deserialize;
use serde_json::{json, Value};

use super::request::{cluster_or_default, page_response, paginate, parse, OpResult, Operation};
use super::shapes;
use super::tags::{self, TagRequest};
use crate::api::error::ApiError;
use crate::app::{ControlPlane, NetworkConfiguration, RunTaskInput};
use crate::domain::ids;
use crate::domain::placement::{ConstraintSpec, StrategySpec};
use crate::domain::tags::Resource;
use crate::domain::task::Task;
use crate::scheduler::placement::PlacementFailure;
use crate::state::TaskFilter;

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
    #[serde(default)]
    placement_strategy: Vec<StrategySpec>,
    #[serde(default)]
    placement_constraints: Vec<ConstraintSpec>,
    #[serde(default)]
    tags: Vec<TagRequest>,
    propagate_tags: Option<String>,
    #[serde(default, rename = "enableECSManagedTags")]
    enable_ecs_managed_tags: bool,
    #[serde(default)]
    enable_execute_command: bool,
}

/// RunTask's networkConfiguration in ECS's shape: `{"awsvpcConfiguration": {"subnets": [...],
/// "securityGroups": [...], "assignPublicIp": "ENABLED"|"DISABLED"}}`. Subnets and
/// assignPublicIp are accepted and ignored.
pub(super) fn network_configuration(
    v: Option<Value>,
) -> Result<Option<NetworkConfiguration>, ApiError> {
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
    let (tasks, failures) = cp.tasks.run(RunTaskInput {
        cluster: cluster_or_default(r.cluster),
        task_definition: r.task_definition,
        count: r.count.unwrap_or(1),
        started_by: r.started_by,
        group: r.group,
        overrides: r.overrides,
        network_configuration: network_configuration(r.network_configuration)?,
        from_service: false,
        strategies: r.placement_strategy,
        constraints: r.placement_constraints,
        on_instances: None,
        tags: tags::for_new_tasks(
            r.tags,
            r.propagate_tags.as_deref(),
            r.enable_ecs_managed_tags,
        )?,
        launch_type: r.launch_type,
        enable_execute_command: r.enable_execute_command,
    })?;
    placed(cp, &tasks, &failures)
}

/// RunTask's and StartTask's answer: the tasks placed, with their tags, and the failures.
fn placed(cp: &ControlPlane, tasks: &[Task], failures: &[PlacementFailure]) -> OpResult {
    Ok(json!({
        "tasks": with_tags(cp, tasks, true)?,
        "failures": failures.iter().map(shapes::failure).collect::<Vec<_>>(),
    }))
}

/// Tasks as ECS shows them, with their tags when `tags` (include TAGS, or just created).
fn with_tags(cp: &ControlPlane, tasks: &[Task], tags: bool) -> Result<Vec<Value>, ApiError> {
    let defs = cp.task_definitions.health_defs(tasks)?;
    tasks
        .iter()
        .map(|t| {
            let mut v = shapes::task(&cp.arns, t, defs.of(t));
            if tags {
                v["tags"] = tags::of(
                    cp,
                    Resource::Task {
                        cluster: t.cluster.clone(),
                        id: t.id.clone(),
                    },
                )?;
            }
            Ok(v)
        })
        .collect()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StartTaskRequest {
    cluster: Option<String>,
    task_definition: String,
    container_instances: Vec<String>,
    started_by: Option<String>,
    group: Option<String>,
    overrides: Option<Value>,
    network_configuration: Option<Value>,
    #[serde(default)]
    tags: Vec<TagRequest>,
    propagate_tags: Option<String>,
    #[serde(default, rename = "enableECSManagedTags")]
    enable_ecs_managed_tags: bool,
    #[serde(default)]
    enable_execute_command: bool,
}

fn start_task(cp: &ControlPlane, r: StartTaskRequest) -> OpResult {
    let (tasks, failures) = cp.tasks.start(
        RunTaskInput {
            cluster: cluster_or_default(r.cluster),
            task_definition: r.task_definition,
            count: 1,
            started_by: r.started_by,
            group: r.group,
            overrides: r.overrides,
            network_configuration: network_configuration(r.network_configuration)?,
            from_service: false,
            strategies: Vec::new(),
            constraints: Vec::new(),
            on_instances: None,
            tags: tags::for_new_tasks(
                r.tags,
                r.propagate_tags.as_deref(),
                r.enable_ecs_managed_tags,
            )?,
            // StartTask has no launchType: its instances are the EC2 launch type's.
            launch_type: None,
            enable_execute_command: r.enable_execute_command,
        },
        &r.container_instances,
    )?;
    placed(cp, &tasks, &failures)
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
    #[serde(default)]
    include: Vec<String>,
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
    Ok(json!({
        "tasks": with_tags(cp, &found, tags::wanted(&r.include))?,
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
    service_name: Option<String>,
    launch_type: Option<String>,
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
    // A service's tasks are its group's (serviceName may be the service's ARN).
    let group = r
        .service_name
        .as_deref()
        .map(|s| crate::domain::service::group_of(ids::resource_id(s)));
    let arns: Vec<String> = tasks
        .iter()
        .filter(|t| group.as_ref().is_none_or(|g| &t.group == g))
        .filter(|t| r.launch_type.as_ref().is_none_or(|l| &t.launch_type == l))
        .map(|t| cp.arns.task(&t.cluster, &t.id))
        .collect();
    let (page, next) = paginate(arns, r.max_results, r.next_token.as_deref())?;
    Ok(page_response("taskArns", page, next))
}

/// The handler of `operation` when it is one of this resource's.
pub(super) fn operation(name: &str) -> Option<Operation> {
    Some(match name {
        "RunTask" => |cp, r| run_task(cp, parse(r)?),
        "StartTask" => |cp, r| start_task(cp, parse(r)?),
        "StopTask" => |cp, r| stop_task(cp, parse(r)?),
        "DescribeTasks" => |cp, r| describe_tasks(cp, parse(r)?),
        "ListTasks" => |cp, r| list_tasks(cp, parse(r)?),
        _ => return None,
    })
}
