//! `GET /metrics`: Prometheus' conventional path on the API listener, in the OpenMetrics text
//! format (`crate::metrics`; the names are in README.md).

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::run_with;
use crate::app::ControlPlane;
use crate::metrics::CONTENT_TYPE;

pub async fn get(State(cp): State<Arc<ControlPlane>>) -> Response {
    run_with(cp, |cp| {
        let text = cp.metrics.render(&cp.fleet_snapshot()?);
        let mut response = (StatusCode::OK, text).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        Ok(response)
    })
    .await
}
