//! The user-facing HTTP surface on the API listener: Amazon ECS's JSON 1.1 protocol (`ecs`,
//! `POST /` with `X-Amz-Target`) and Berth's own REST routes (`berth`, under `/berth/v1`).
//! Handlers decode, call one operation of the application layer, and encode; errors become the
//! ECS error shape in `error`, and nowhere else.

pub mod berth;
pub mod ecs;
pub mod error;

use std::sync::Arc;

use axum::routing::{get, post, put};
use axum::Router;
use serde_json::{json, Value};

use crate::app::ControlPlane;
use crate::contract::{AUDIT_PATH, LOGS_PATH, METRICS_PATH, SECRETS_PATH, SECURITY_GROUPS_PATH};

pub use error::ApiError;

pub fn router(cp: Arc<ControlPlane>) -> Router {
    Router::new()
        .route("/", post(ecs::handle))
        .route(LOGS_PATH, get(berth::logs::http_logs))
        .route(SECURITY_GROUPS_PATH, get(berth::security_groups::list))
        .route(
            berth::security_groups::ITEM_PATH,
            get(berth::security_groups::get)
                .put(berth::security_groups::put)
                .delete(berth::security_groups::delete),
        )
        .route(SECRETS_PATH, get(berth::secrets::list))
        .route(
            berth::secrets::ITEM_PATH,
            put(berth::secrets::put).delete(berth::secrets::delete),
        )
        .route(berth::events::PATH, get(berth::events::get))
        .route(berth::exec::PATH, get(berth::exec::stream))
        .route(AUDIT_PATH, get(berth::audit::list))
        .route(METRICS_PATH, get(berth::metrics::get))
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(cp)
}

/// Every answer carries the ECS error shape, also for a path or method nothing serves.
async fn no_route(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError {
        status: axum::http::StatusCode::NOT_FOUND,
        code: "UnknownOperationException",
        message: format!(
            "nothing is served at {method} {}: the ECS API is POST / with an X-Amz-Target header, Berth's own routes are under /berth/v1",
            uri.path()
        ),
    }
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError {
        status: axum::http::StatusCode::METHOD_NOT_ALLOWED,
        code: "UnknownOperationException",
        message: format!("{} does not take {method}", uri.path()),
    }
}

/// ECS timestamps are epoch seconds.
pub fn ts(ms: i64) -> Value {
    json!(ms as f64 / 1000.0)
}
