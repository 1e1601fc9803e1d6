//! Berth-specific HTTP API for the secrets berth-cp holds (registry logins for
//! `repositoryCredentials`; on AWS they are Secrets Manager's). JSON in and out; errors are
//! ECS-style `{"__type", "message"}` bodies. No answer ever carries a username or password.
//!
//! - `GET    /berth/v1/secrets`         -> `{"secrets": [SECRET...]}`
//! - `PUT    /berth/v1/secrets/{name}`  <- `{"username", "password"}`, -> 201 (created) or 200
//!   (login replaced) `SECRET`
//! - `DELETE /berth/v1/secrets/{name}`  -> `SECRET` (name or ARN); 404 when there is none
//!
//! SECRET is `{"name", "arn", "createdAt"}`. A name with `/` is sent percent-encoded (`%2F`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use super::{error, run};
use crate::api::{ts, ApiError};
use crate::app::ControlPlane;
use crate::domain::secrets::SecretInfo;

pub const ITEM_PATH: &str = "/berth/v1/secrets/{name}";

pub fn secret_json(s: &SecretInfo) -> Value {
    json!({
        "name": s.name,
        "arn": s.arn,
        "createdAt": ts(s.created_at_ms),
    })
}

pub async fn list(State(cp): State<Arc<ControlPlane>>) -> Response {
    run(cp, |cp| {
        let secrets = cp.secrets.list()?;
        Ok((
            StatusCode::OK,
            json!({"secrets": secrets.iter().map(secret_json).collect::<Vec<_>>()}),
        ))
    })
    .await
}

pub async fn put(
    State(cp): State<Arc<ControlPlane>>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    // The parse error says where, never what: the body holds a password.
    let body: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return error(ApiError::client(
                "SerializationException",
                format!(
                    "request body is not valid JSON (line {}, column {}); expected {{\"username\", \"password\"}}",
                    e.line(),
                    e.column()
                ),
            ))
        }
    };
    run(cp, move |cp| {
        let (s, created) = cp.secrets.put(&name, &body)?;
        let status = if created {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        };
        Ok((status, secret_json(&s)))
    })
    .await
}

pub async fn delete(State(cp): State<Arc<ControlPlane>>, Path(name): Path<String>) -> Response {
    run(cp, move |cp| {
        let s = cp.secrets.delete(&name)?;
        Ok((StatusCode::OK, secret_json(&s)))
    })
    .await
}
