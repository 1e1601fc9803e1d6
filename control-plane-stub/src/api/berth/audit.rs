//! The audit log, a Berth path on the API listener:
//!
//! `GET /berth/v1/audit?after=ID&limit=N` -> `{"events": [EVENT...], "nextAfter": ID|null}`
//!
//! EVENT is `{"id", "at" (epoch seconds), "principal", "action", "resource", "detail"}`,
//! oldest first; `nextAfter` is the `after` of the next page, null on the last. `limit`
//! defaults to 100 (at most 1000).

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use super::{error, run};
use crate::api::{ts, ApiError};
use crate::app::ControlPlane;
use crate::domain::audit::AuditEvent;

const DEFAULT_LIMIT: usize = 100;

/// `after` and `limit` from the query.
pub fn parse_query(query: &str) -> Result<(i64, usize), String> {
    let (mut after, mut limit) = (0, DEFAULT_LIMIT);
    for pair in query.split('&').filter(|s| !s.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "after" => {
                after = v
                    .parse()
                    .map_err(|_| format!("after: {v:?} is not a record id"))?
            }
            "limit" => {
                limit = v
                    .parse()
                    .map_err(|_| format!("limit: {v:?} is not a whole number"))?
            }
            other => return Err(format!("unknown parameter {other:?}: after and limit are")),
        }
    }
    Ok((after, limit))
}

pub fn event_json(e: &AuditEvent) -> Value {
    json!({
        "id": e.id,
        "at": ts(e.at_ms),
        "principal": e.principal,
        "action": e.action,
        "resource": e.resource,
        "detail": e.detail,
    })
}

pub async fn list(State(cp): State<Arc<ControlPlane>>, RawQuery(query): RawQuery) -> Response {
    let (after, limit) = match parse_query(query.as_deref().unwrap_or("")) {
        Ok(q) => q,
        Err(message) => {
            return error(ApiError::client("InvalidParameterException", message));
        }
    };
    run(cp, move |cp| {
        let events = cp.audit.list(after, limit)?;
        let next = (events.len() == limit)
            .then(|| events.last().map(|e| e.id))
            .flatten();
        Ok((
            StatusCode::OK,
            json!({
                "events": events.iter().map(event_json).collect::<Vec<_>>(),
                "nextAfter": next,
            }),
        ))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_pages_by_id() {
        assert_eq!(parse_query("").unwrap(), (0, DEFAULT_LIMIT));
        assert_eq!(parse_query("after=42&limit=10").unwrap(), (42, 10));
        assert!(parse_query("after=x").is_err());
        assert!(parse_query("limit=-1").is_err());
        assert!(parse_query("colour=red").is_err());
    }
}
