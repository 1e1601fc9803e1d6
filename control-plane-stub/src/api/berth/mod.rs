//! Berth's own REST routes under `/berth/v1` (paths in `crate::contract`): logs, security
//! groups, secrets, a task's events, exec streams, the audit log; and Prometheus' `/metrics`. JSON bodies; errors in the ECS error shape.

pub mod audit;
pub mod events;
pub mod exec;
pub mod logs;
pub mod metrics;
pub mod secrets;
pub mod security_groups;

use std::sync::Arc;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::api::ApiError;
use crate::app::{ControlPlane, CpError};

fn json_body(status: StatusCode, body: &Value) -> Response {
    let mut resp = (status, body.to_string()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn error(e: ApiError) -> Response {
    json_body(e.status, &json!({"__type": e.code, "message": e.message}))
}

/// Runs `op` off the async workers (SQLite blocks briefly) and renders its outcome. Shared by
/// the Berth JSON endpoints.
async fn run(
    cp: Arc<ControlPlane>,
    op: impl FnOnce(&ControlPlane) -> Result<(StatusCode, Value), CpError> + Send + 'static,
) -> Response {
    run_with(cp, move |cp| {
        op(cp).map(|(status, body)| json_body(status, &body))
    })
    .await
}

/// [`run`] for an endpoint that renders its own response (not JSON).
async fn run_with(
    cp: Arc<ControlPlane>,
    op: impl FnOnce(&ControlPlane) -> Result<Response, CpError> + Send + 'static,
) -> Response {
    match tokio::task::spawn_blocking(move || op(&cp)).await {
        Ok(Ok(response)) => response,
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
