//! The user-facing HTTP API: Amazon ECS's JSON 1.1 protocol (`POST /` with `X-Amz-Target`).
//! SigV4 signatures are accepted but not verified: the API listens on loopback by default.

mod account_settings;
mod attributes;
mod clusters;
mod container_instances;
mod exec;
mod request;
mod service_deployments;
mod services;
mod shapes;
mod tags;
mod task_definitions;
mod task_protection;
mod tasks;
mod unsupported;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use tracing::Instrument;

use crate::api::error::{json_response, ApiError};
use crate::app::ControlPlane;
use crate::contract::TARGET_PREFIX;
use crate::domain::audit::access_key_id;
use crate::metrics::UNKNOWN_OPERATION;
use request::OpResult;
use serde_json::Value;

pub async fn handle(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = std::time::Instant::now();
    let operation = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.strip_prefix(TARGET_PREFIX))
        .filter(|op| is_known(op))
        .unwrap_or(UNKNOWN_OPERATION)
        .to_string();
    let response = answer(Arc::clone(&cp), headers, body).await;
    cp.metrics
        .api_request(&operation, response.status().as_u16(), started.elapsed());
    response
}

/// The ECS request's answer, success or the ECS error shape.
async fn answer(
    cp: Arc<ControlPlane>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(rejection) => {
            return ApiError {
                status: rejection.status(),
                code: "SerializationException",
                message: format!(
                    "the request body could not be read: {}",
                    rejection.body_text()
                ),
            }
            .into_response()
        }
    };
    // The AWS SDKs send application/x-amz-json-1.1; a JSON type is taken, others are not.
    if let Some(ct) = headers.get(axum::http::header::CONTENT_TYPE) {
        let ct = ct.to_str().unwrap_or("").trim().to_ascii_lowercase();
        if !(ct.starts_with("application/x-amz-json-") || ct.starts_with("application/json")) {
            return ApiError {
                status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                code: "SerializationException",
                message: format!(
                    "Content-Type {ct:?}: the ECS API takes application/x-amz-json-1.1"
                ),
            }
            .into_response();
        }
    }
    let target = headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let Some(operation) = target.strip_prefix(TARGET_PREFIX).map(str::to_string) else {
        return ApiError::client(
            "UnknownOperationException",
            format!("X-Amz-Target {target:?} is not an {TARGET_PREFIX}<Operation> target"),
        )
        .into_response();
    };
    let principal = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(access_key_id)
        .unwrap_or(ANONYMOUS)
        .to_string();
    let span = tracing::info_span!("ecs_request", op = %operation);
    async move {
        let request: serde_json::Value = if body.iter().all(u8::is_ascii_whitespace) {
            serde_json::json!({})
        } else {
            match serde_json::from_slice(&body) {
                Ok(v @ serde_json::Value::Object(_)) => v,
                Ok(_) => {
                    return ApiError::client(
                        "SerializationException",
                        "request body must be a JSON object",
                    )
                    .into_response()
                }
                Err(e) => {
                    return ApiError::client(
                        "SerializationException",
                        format!("request body is not valid JSON: {e}"),
                    )
                    .into_response()
                }
            }
        };
        // SQLite calls block briefly; keep them off the async workers.
        let result =
            tokio::task::spawn_blocking(move || dispatch(&cp, &principal, &operation, request))
                .await;
        match result {
            Ok(Ok(body)) => json_response(StatusCode::OK, &body),
            Ok(Err(e)) => {
                tracing::debug!(code = e.code, "request refused: {}", e.message);
                e.into_response()
            }
            Err(join) => {
                tracing::error!("operation panicked: {join}");
                ApiError {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    code: "ServerException",
                    message: "internal error".into(),
                }
                .into_response()
            }
        }
    }
    .instrument(span)
    .await
}

/// Who an unsigned request is, in the audit log.
const ANONYMOUS: &str = "anonymous";

/// Each resource's module names its own operations; ExecuteCommand also gets who asked.
fn dispatch(cp: &ControlPlane, principal: &str, operation: &str, request: Value) -> OpResult {
    if operation == EXECUTE_COMMAND {
        return exec::execute_command(cp, principal, request);
    }
    match handler(operation) {
        Some(handler) => handler(cp, request),
        None => Err(ApiError::client(
            "UnknownOperationException",
            format!("operation {operation} is not supported by berth-cp"),
        )),
    }
}

/// The one operation that also takes who asked (see `dispatch`).
const EXECUTE_COMMAND: &str = "ExecuteCommand";

/// Whether berth-cp answers `operation` (the metrics' label is the name only then).
fn is_known(operation: &str) -> bool {
    operation == EXECUTE_COMMAND || handler(operation).is_some()
}

fn handler(operation: &str) -> Option<request::Operation> {
    clusters::operation(operation)
        .or_else(|| task_definitions::operation(operation))
        .or_else(|| tasks::operation(operation))
        .or_else(|| container_instances::operation(operation))
        .or_else(|| services::operation(operation))
        .or_else(|| service_deployments::operation(operation))
        .or_else(|| task_protection::operation(operation))
        .or_else(|| attributes::operation(operation))
        .or_else(|| tags::operation(operation))
        .or_else(|| account_settings::operation(operation))
        .or_else(|| unsupported::operation(operation))
}
