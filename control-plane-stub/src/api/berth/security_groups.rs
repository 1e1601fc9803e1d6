//! Berth-specific HTTP API for security groups, next to the ECS API (ECS has no such
//! operation: on AWS they are EC2's). JSON in and out; errors are ECS-style
//! `{"__type", "message"}` bodies.
//!
//! - `GET    /berth/v1/security-groups`          -> `{"securityGroups": [GROUP...]}`
//! - `GET    /berth/v1/security-groups/{group}`  -> `{"securityGroup": GROUP}` (id or name)
//! - `PUT    /berth/v1/security-groups/{name}`   <- `{"description"?, "ingress": [RULE...]}`,
//!   -> 201 (created) or 200 (replaced) `{"securityGroup": GROUP, "created": bool}`
//! - `DELETE /berth/v1/security-groups/{group}`  -> `{"securityGroup": GROUP}`; 409 while a task
//!   that is not stopped uses it
//!
//! GROUP is `{"groupId", "groupName", "description", "ingress", "createdAt", "updatedAt"}` and
//! RULE `{"protocol": "tcp"|"udp"|"all", "fromPort", "toPort", "cidr"}`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use super::{error, run};
use crate::api::{ts, ApiError};
use crate::app::ControlPlane;
use crate::domain::security::{IngressRule, SecurityGroup};

pub const ITEM_PATH: &str = "/berth/v1/security-groups/{group}";

pub fn group_json(g: &SecurityGroup) -> Value {
    json!({
        "groupId": g.id,
        "groupName": g.name,
        "description": g.description,
        "ingress": g.ingress.iter().map(IngressRule::to_json).collect::<Vec<_>>(),
        "createdAt": ts(g.created_at_ms),
        "updatedAt": ts(g.updated_at_ms),
    })
}

pub async fn list(State(cp): State<Arc<ControlPlane>>) -> Response {
    run(cp, |cp| {
        let groups = cp.security_groups.list()?;
        Ok((
            StatusCode::OK,
            json!({"securityGroups": groups.iter().map(group_json).collect::<Vec<_>>()}),
        ))
    })
    .await
}

pub async fn get(State(cp): State<Arc<ControlPlane>>, Path(group): Path<String>) -> Response {
    run(cp, move |cp| {
        let g = cp.security_groups.get(&group)?;
        Ok((StatusCode::OK, json!({"securityGroup": group_json(&g)})))
    })
    .await
}

pub async fn put(
    State(cp): State<Arc<ControlPlane>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let body: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                return error(ApiError::client(
                    "SerializationException",
                    format!("request body is not valid JSON: {e}"),
                ))
            }
        }
    };
    run(cp, move |cp| {
        let (g, created) = cp.security_groups.put(&name, &body)?;
        let status = if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        Ok((
            status,
            json!({"securityGroup": group_json(&g), "created": created}),
        ))
    })
    .await
}

pub async fn delete(State(cp): State<Arc<ControlPlane>>, Path(group): Path<String>) -> Response {
    run(cp, move |cp| {
        let g = cp.security_groups.delete(&group)?;
        Ok((StatusCode::OK, json!({"securityGroup": group_json(&g)})))
    })
    .await
}
