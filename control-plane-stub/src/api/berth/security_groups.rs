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
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::api::ecs::ApiError;
use crate::app::{ControlPlane, CpError};
use crate::domain::security::{IngressRule, SecurityGroup};

pub const PATH: &str = "/berth/v1/security-groups";
pub const ITEM_PATH: &str = "/berth/v1/security-groups/{group}";

pub fn group_json(g: &SecurityGroup) -> Value {
    json!({
        "groupId": g.id,
        "groupName": g.name,
        "description": g.description,
        "ingress": g.ingress.iter().map(IngressRule::to_json).collect::<Vec<_>>(),
        "createdAt": crate::api::ecs::ts(g.created_at_ms),
        "updatedAt": crate::api::ecs::ts(g.updated_at_ms),
    })
}

pub(crate) fn json_body(status: StatusCode, body: &Value) -> Response {
    let mut resp = (status, body.to_string()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

pub(crate) fn error(e: ApiError) -> Response {
    json_body(e.status, &json!({"__type": e.code, "message": e.message}))
}

/// Runs `op` off the async workers (SQLite blocks briefly) and renders its outcome. Shared by
/// the Berth JSON endpoints.
pub(crate) async fn run(
    cp: Arc<ControlPlane>,
    op: impl FnOnce(&ControlPlane) -> Result<(StatusCode, Value), CpError> + Send + 'static,
) -> Response {
    match tokio::task::spawn_blocking(move || op(&cp)).await {
        Ok(Ok((status, body))) => json_body(status, &body),
        Ok(Err(e)) => error(ApiError::from(e)),
        Err(join) => {
            tracing::error!("berth API request panicked: {join}");
            error(ApiError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                code: "ServerException",
                message: "internal error".into(),
            })
        }
    }
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
