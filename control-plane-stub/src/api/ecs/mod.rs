//! The user-facing HTTP API: Amazon ECS's JSON 1.1 protocol (`POST /` with `X-Amz-Target`).
//! SigV4 signatures are accepted but not verified: the API listens on loopback by default.

mod error;
mod ops;
mod shapes;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tracing::Instrument;

use crate::app::ControlPlane;
pub use error::ApiError;
pub use shapes::ts;

pub const TARGET_PREFIX: &str = "AmazonEC2ContainerServiceV20141113.";
pub const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

pub fn router(cp: Arc<ControlPlane>) -> Router {
    Router::new()
        .route("/", post(handle))
        .route(
            crate::api::berth::logs::PATH,
            get(crate::api::berth::logs::http_logs),
        )
        .route(
            crate::api::berth::security_groups::PATH,
            get(crate::api::berth::security_groups::list),
        )
        .route(
            crate::api::berth::security_groups::ITEM_PATH,
            get(crate::api::berth::security_groups::get)
                .put(crate::api::berth::security_groups::put)
                .delete(crate::api::berth::security_groups::delete),
        )
        .route(
            crate::api::berth::secrets::PATH,
            get(crate::api::berth::secrets::list),
        )
        .route(
            crate::api::berth::secrets::ITEM_PATH,
            axum::routing::put(crate::api::berth::secrets::put)
                .delete(crate::api::berth::secrets::delete),
        )
        .route(
            crate::api::berth::events::PATH,
            get(crate::api::berth::events::get),
        )
        .with_state(cp)
}

pub(crate) fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    let mut resp = (status, body.to_string()).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    resp
}

async fn handle(State(cp): State<Arc<ControlPlane>>, headers: HeaderMap, body: Bytes) -> Response {
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
            tokio::task::spawn_blocking(move || ops::dispatch(&cp, &operation, request)).await;
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
