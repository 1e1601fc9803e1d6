//! PutAttributes, DeleteAttributes, ListAttributes.

use serde::Deserialize;
use serde_json::{json, Value};

use super::request::{cluster_or_default, paginate, parse, OpResult, Operation};
use crate::app::{Attribute, AttributeInput, ControlPlane};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AttributeRequest {
    name: String,
    value: Option<String>,
    target_type: Option<String>,
    target_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AttributesRequest {
    cluster: Option<String>,
    attributes: Vec<AttributeRequest>,
}

fn inputs(r: Vec<AttributeRequest>) -> Vec<AttributeInput> {
    r.into_iter()
        .map(|a| AttributeInput {
            name: a.name,
            value: a.value,
            target_type: a.target_type,
            target_id: a.target_id,
        })
        .collect()
}

/// ECS's Attribute shape; the target as the instance's ARN.
fn shape(cp: &ControlPlane, a: &Attribute) -> Value {
    let mut v = json!({
        "name": a.name,
        "targetType": crate::app::CONTAINER_INSTANCE,
        "targetId": cp.arns.container_instance(&a.cluster, &a.instance_id),
    });
    if let Some(value) = &a.value {
        v["value"] = json!(value);
    }
    v
}

fn put_attributes(cp: &ControlPlane, r: AttributesRequest) -> OpResult {
    let done = cp
        .attributes
        .put(&cluster_or_default(r.cluster), &inputs(r.attributes))?;
    Ok(json!({"attributes": done.iter().map(|a| shape(cp, a)).collect::<Vec<_>>()}))
}

fn delete_attributes(cp: &ControlPlane, r: AttributesRequest) -> OpResult {
    let done = cp
        .attributes
        .delete(&cluster_or_default(r.cluster), &inputs(r.attributes))?;
    Ok(json!({"attributes": done.iter().map(|a| shape(cp, a)).collect::<Vec<_>>()}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListAttributesRequest {
    cluster: Option<String>,
    target_type: String,
    attribute_name: Option<String>,
    attribute_value: Option<String>,
    next_token: Option<String>,
    max_results: Option<i64>,
}

fn list_attributes(cp: &ControlPlane, r: ListAttributesRequest) -> OpResult {
    let found = cp.attributes.list(
        &cluster_or_default(r.cluster),
        &r.target_type,
        r.attribute_name.as_deref(),
        r.attribute_value.as_deref(),
    )?;
    let shapes: Vec<Value> = found.iter().map(|a| shape(cp, a)).collect();
    let (page, next) = paginate(shapes, r.max_results, r.next_token.as_deref())?;
    let mut out = json!({ "attributes": page });
    if let Some(token) = next {
        out["nextToken"] = json!(token);
    }
    Ok(out)
}

/// The handler of `operation` when it is one of this resource's.
pub(super) fn operation(name: &str) -> Option<Operation> {
    Some(match name {
        "PutAttributes" => |cp, r| put_attributes(cp, parse(r)?),
        "DeleteAttributes" => |cp, r| delete_attributes(cp, parse(r)?),
        "ListAttributes" => |cp, r| list_attributes(cp, parse(r)?),
        _ => return None,
    })
}
