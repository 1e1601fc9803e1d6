//! What every operation shares: decoding a request, the cluster it names, pages of a list.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::api::error::ApiError;
use crate::domain::ids;

pub(super) type OpResult = Result<Value, ApiError>;

/// One ECS operation: the decoded request body in, the response body out.
pub(super) type Operation = fn(&crate::app::ControlPlane, Value) -> OpResult;

pub(super) fn parse<T: DeserializeOwned>(request: Value) -> Result<T, ApiError> {
    serde_json::from_value(request)
        .map_err(|e| ApiError::client("SerializationException", format!("invalid request: {e}")))
}

pub(super) fn cluster_or_default(c: Option<String>) -> String {
    ids::cluster_name(c.as_deref().unwrap_or("default")).to_string()
}

/// nextToken is the offset into the full, stably sorted list.
pub(super) fn paginate<T>(
    items: Vec<T>,
    max: Option<i64>,
    token: Option<&str>,
) -> Result<(Vec<T>, Option<String>), ApiError> {
    paginate_up_to(items, max, token, 100)
}

/// `paginate` for an operation whose pages hold at most `limit` (its default size).
pub(super) fn paginate_up_to<T>(
    items: Vec<T>,
    max: Option<i64>,
    token: Option<&str>,
    limit: usize,
) -> Result<(Vec<T>, Option<String>), ApiError> {
    let start: usize = match token {
        None | Some("") => 0,
        Some(t) => t.parse().map_err(|_| {
            ApiError::client(
                "InvalidParameterException",
                "nextToken: not a token from this API",
            )
        })?,
    };
    let max = match max {
        None => limit,
        Some(m) if m >= 1 && m as u64 <= limit as u64 => m as usize,
        Some(m) => {
            return Err(ApiError::client(
                "InvalidParameterException",
                format!("maxResults: {m} must be between 1 and {limit}"),
            ))
        }
    };
    let total = items.len();
    let page: Vec<T> = items.into_iter().skip(start).take(max).collect();
    let next = (start + page.len() < total).then(|| (start + page.len()).to_string());
    Ok((page, next))
}

/// A list response; nextToken only when there is a next page (botocore stops on its absence).
pub(super) fn page_response(key: &str, page: Vec<String>, next: Option<String>) -> Value {
    let mut v = json!({ key: page });
    if let Some(token) = next {
        v["nextToken"] = json!(token);
    }
    v
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub(super) struct PageRequest {
    pub(super) next_token: Option<String>,
    pub(super) max_results: Option<i64>,
}
