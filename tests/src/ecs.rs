//! A small client for berth-cp's user API: the Amazon ECS JSON 1.1 protocol (`POST /` with the
//! operation in `X-Amz-Target`).

use std::fmt;
use std::time::Duration;

use anyhow::{anyhow, Result};
use serde_json::{json, Value};

const TARGET_PREFIX: &str = "AmazonEC2ContainerServiceV20141113";

/// An error answer of the API, or a transport failure (`status` 0, `code` "Transport").
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (HTTP {}): {}", self.code, self.status, self.message)
    }
}

impl std::error::Error for ApiError {}

#[derive(Clone)]
pub struct EcsClient {
    http: reqwest::Client,
    endpoint: String,
}

impl EcsClient {
    /// `endpoint` is a base URL such as `http://127.0.0.1:7080`.
    pub fn new(endpoint: impl Into<String>) -> EcsClient {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("a plain HTTP client builds");
        EcsClient {
            http,
            endpoint: endpoint.into(),
        }
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Calls `op` (e.g. "RunTask") with a JSON request.
    pub async fn call(&self, op: &str, request: Value) -> Result<Value, ApiError> {
        self.call_raw(op, request.to_string()).await
    }

    /// Calls `op` with a request body as given, which need not be valid JSON.
    pub async fn call_raw(&self, op: &str, body: String) -> Result<Value, ApiError> {
        let transport = |e: reqwest::Error| ApiError {
            status: 0,
            code: "Transport".to_owned(),
            message: format!("{op}: {e}"),
        };
        let response = self
            .http
            .post(format!("{}/", self.endpoint.trim_end_matches('/')))
            .header("X-Amz-Target", format!("{TARGET_PREFIX}.{op}"))
            .header("Content-Type", "application/x-amz-json-1.1")
            .body(body)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        let text = response.text().await.map_err(transport)?;
        let value: Option<Value> = serde_json::from_str(&text).ok();
        if status.is_success() {
            return value.ok_or_else(|| ApiError {
                status: status.as_u16(),
                code: "BadResponse".to_owned(),
                message: format!("{op}: the answer is not JSON: {text:?}"),
            });
        }
        let field = |name: &str| {
            value
                .as_ref()
                .and_then(|v| v.get(name))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        // AWS may qualify the type ("com.amazonaws.ecs#ClientException"); keep the last part.
        let code = field("__type")
            .map(|t| t.rsplit('#').next().unwrap_or_default().to_owned())
            .unwrap_or_else(|| "Unknown".to_owned());
        let message = field("message")
            .or_else(|| field("Message"))
            .unwrap_or(text);
        Err(ApiError {
            status: status.as_u16(),
            code,
            message,
        })
    }

    /// DescribeTasks for one task; the task object, or an error if it is not found.
    pub async fn describe_task(&self, cluster: &str, task: &str) -> Result<Value> {
        let out = self
            .call(
                "DescribeTasks",
                json!({"cluster": cluster, "tasks": [task]}),
            )
            .await?;
        out["tasks"]
            .as_array()
            .and_then(|tasks| tasks.first())
            .cloned()
            .ok_or_else(|| anyhow!("DescribeTasks does not know {task}: {out}"))
    }

    /// The lastStatus of a task.
    pub async fn task_status(&self, cluster: &str, task: &str) -> Result<String> {
        let task = self.describe_task(cluster, task).await?;
        Ok(task["lastStatus"].as_str().unwrap_or_default().to_owned())
    }
}

/// The container called `name` in a task object from DescribeTasks or RunTask.
pub fn container<'a>(task: &'a Value, name: &str) -> Option<&'a Value> {
    task["containers"]
        .as_array()?
        .iter()
        .find(|c| c["name"].as_str() == Some(name))
}
