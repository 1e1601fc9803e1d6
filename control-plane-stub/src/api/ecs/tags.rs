//! TagResource, UntagResource, ListTagsForResource, and the tags members other operations
//! share (a request's `tags`, `propagateTags`, `enableECSManagedTags`; `include: ["TAGS"]`).

use serde::Deserialize;
use serde_json::{json, Value};

use super::request::{parse, OpResult, Operation};
use crate::api::error::ApiError;
use crate::app::{ControlPlane, NewTaskTags};
use crate::domain::tags::{Propagate, Resource, Tag};

/// ECS's Tag as a request carries it.
#[derive(Deserialize, Debug, Clone, Default)]
pub(super) struct TagRequest {
    key: Option<String>,
    value: Option<String>,
}

pub(super) fn from_request(tags: Vec<TagRequest>) -> Result<Vec<Tag>, ApiError> {
    tags.into_iter()
        .map(|t| match t.key {
            Some(key) => Ok(Tag {
                key,
                value: t.value.unwrap_or_default(),
            }),
            None => Err(ApiError::client(
                "InvalidParameterException",
                "tags: every tag needs a key",
            )),
        })
        .collect()
}

pub(super) fn shape(tags: &[Tag]) -> Value {
    Value::Array(
        tags.iter()
            .map(|t| json!({"key": t.key, "value": t.value}))
            .collect(),
    )
}

/// Whether a Describe call's `include` asks for tags.
pub(super) fn wanted(include: &[String]) -> bool {
    include.iter().any(|i| i == "TAGS")
}

/// A resource's tags as ECS shows them.
pub(super) fn of(cp: &ControlPlane, resource: Resource) -> Result<Value, ApiError> {
    Ok(shape(&cp.tags.of(&resource)?))
}

pub(super) fn propagate(value: Option<&str>) -> Result<Propagate, ApiError> {
    Propagate::parse(value).map_err(|e| ApiError::client("InvalidParameterException", e))
}

/// RunTask's and StartTask's tag members.
pub(super) fn for_new_tasks(
    tags: Vec<TagRequest>,
    propagate_tags: Option<&str>,
    managed: bool,
) -> Result<NewTaskTags, ApiError> {
    Ok(NewTaskTags {
        own: from_request(tags)?,
        propagate: propagate(propagate_tags)?,
        managed,
        service: None,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TagResourceRequest {
    resource_arn: String,
    tags: Vec<TagRequest>,
}

fn tag_resource(cp: &ControlPlane, r: TagResourceRequest) -> OpResult {
    cp.tags.tag(&r.resource_arn, &from_request(r.tags)?)?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UntagResourceRequest {
    resource_arn: String,
    tag_keys: Vec<String>,
}

fn untag_resource(cp: &ControlPlane, r: UntagResourceRequest) -> OpResult {
    cp.tags.untag(&r.resource_arn, &r.tag_keys)?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListTagsForResourceRequest {
    resource_arn: String,
}

fn list_tags_for_resource(cp: &ControlPlane, r: ListTagsForResourceRequest) -> OpResult {
    Ok(json!({"tags": shape(&cp.tags.list(&r.resource_arn)?)}))
}

/// The handler of `operation` when it is one of this resource's.
pub(super) fn operation(name: &str) -> Option<Operation> {
    Some(match name {
        "TagResource" => |cp, r| tag_resource(cp, parse(r)?),
        "UntagResource" => |cp, r| untag_resource(cp, parse(r)?),
        "ListTagsForResource" => |cp, r| list_tags_for_resource(cp, parse(r)?),
        _ => return None,
    })
}
