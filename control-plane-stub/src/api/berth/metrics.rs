//! `GET /metrics`: Prometheus' conventional path on the API listener, in the OpenMetrics text
//! format (`crate::metrics`; the names are in README.md).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::error;
use crate::api::ApiError;
use crate::app::ControlPlane;
use crate::metrics::CONTENT_TYPE;

pub async fn get(State(cp): State<Arc<ControlPlane>>) -> Response {
    let rendered = tokio::task::spawn_blocking(move || {
        cp.fleet_snapshot().map(|fleet| cp.metrics.render(&fleet))
    })
    .await;
    match rendered {
        Ok(Ok(text)) => {
            let mut response = (StatusCode::OK, text).into_response();
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
            response
        }
        Ok(Err(e)) => error(ApiError::from(e)),
        Err(join) => {
            tracing::error!("metrics scrape panicked: {join}");
            error(ApiError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                code: "ServerException",
                message: "internal error".into(),
            })
        }
    }
}
