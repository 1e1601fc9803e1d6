//! RegisterTaskDefinition, DescribeTaskDefinition, ListTaskDefinitions, DeregisterTaskDefinition,
//! ListTaskDefinitionFamilies, DeleteTaskDefinitions.

use serde::Deserialize;
use serde_json::{json, Value};

use super::request::{page_response, paginate, parse, OpResult, Operation};
use super::shapes;
use super::tags::{self, TagRequest};
use crate::api::error::ApiError;
use crate::app::ControlPlane;
use crate::domain::tags::Resource;
use crate::domain::taskdef::{FamilyStatus, TaskDefinitionStatus};
use crate::state::TaskDefRecord;

/// The definition and, when asked for (or just registered), its tags.
fn with_tags(cp: &ControlPlane, record: &TaskDefRecord, tags: bool) -> OpResult {
    let mut v = json!({"taskDefinition": shapes::task_definition(&cp.arns, record)});
    if tags {
        let resource = Resource::TaskDefinition {
            family: record.family.clone(),
            revision: record.revision,
        };
        v["tags"] = tags::of(cp, resource)?;
    }
    Ok(v)
}

fn register_task_definition(cp: &ControlPlane, request: Value) -> OpResult {
    // The whole request is the definition; its `tags` are the resource's, not the definition's.
    let tags: Vec<TagRequest> = match request.get("tags") {
        None | Some(Value::Null) => Vec::new(),
        Some(t) => parse(t.clone())?,
    };
    let record = cp
        .task_definitions
        .register(&request, tags::from_request(tags)?)?;
    with_tags(cp, &record, true)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TaskDefinitionRequest {
    task_definition: String,
    #[serde(default)]
    include: Vec<String>,
}

fn describe_task_definition(cp: &ControlPlane, r: TaskDefinitionRequest) -> OpResult {
    let record = cp.task_definitions.get(&r.task_definition)?;
    with_tags(cp, &record, tags::wanted(&r.include))
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
    let status = match r.status.as_deref() {
        None => TaskDefinitionStatus::Active,
        Some(s) => TaskDefinitionStatus::parse(s).ok_or_else(|| {
            ApiError::client(
                "InvalidParameterException",
                format!("status: {s:?} is not ACTIVE, INACTIVE or DELETE_IN_PROGRESS"),
            )
        })?,
    };
    let mut defs = cp
        .task_definitions
        .list(r.family_prefix.as_deref(), status)?;
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

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct ListTaskDefinitionFamiliesRequest {
    family_prefix: Option<String>,
    status: Option<String>,
    next_token: Option<String>,
    max_results: Option<i64>,
}

fn list_task_definition_families(
    cp: &ControlPlane,
    r: ListTaskDefinitionFamiliesRequest,
) -> OpResult {
    let status = match r.status.as_deref() {
        None => FamilyStatus::All,
        Some(s) => FamilyStatus::parse(s).ok_or_else(|| {
            ApiError::client(
                "InvalidParameterException",
                format!("status: {s:?} is not ACTIVE, INACTIVE or ALL"),
            )
        })?,
    };
    let families = cp
        .task_definitions
        .families(r.family_prefix.as_deref(), status)?;
    let (page, next) = paginate(families, r.max_results, r.next_token.as_deref())?;
    Ok(page_response("families", page, next))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteTaskDefinitionsRequest {
    task_definitions: Vec<String>,
}

fn delete_task_definitions(cp: &ControlPlane, r: DeleteTaskDefinitionsRequest) -> OpResult {
    let outcome = cp.task_definitions.delete(&r.task_definitions)?;
    let deleted: Vec<Value> = outcome
        .deleted
        .iter()
        .map(|d| shapes::task_definition(&cp.arns, d))
        .collect();
    let failures: Vec<Value> = outcome
        .failures
        .into_iter()
        .map(|(arn, reason)| json!({"arn": arn, "reason": reason}))
        .collect();
    Ok(json!({"taskDefinitions": deleted, "failures": failures}))
}

/// The handler of `operation` when it is one of this resource's.
pub(super) fn operation(name: &str) -> Option<Operation> {
    Some(match name {
        "RegisterTaskDefinition" => |cp, r| register_task_definition(cp, r),
        "DescribeTaskDefinition" => |cp, r| describe_task_definition(cp, parse(r)?),
        "ListTaskDefinitions" => |cp, r| list_task_definitions(cp, parse(r)?),
        "DeregisterTaskDefinition" => |cp, r| deregister_task_definition(cp, parse(r)?),
        "ListTaskDefinitionFamilies" => |cp, r| list_task_definition_families(cp, parse(r)?),
        "DeleteTaskDefinitions" => |cp, r| delete_task_definitions(cp, parse(r)?),
        _ => return None,
    })
}
