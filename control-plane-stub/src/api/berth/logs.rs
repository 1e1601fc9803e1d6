//! Container logs, read from the agent that runs the task. Not part of Amazon ECS's API (ECS
//! sends logs to CloudWatch): a Berth path on the API listener,
//!
//! `GET /berth/v1/logs?cluster=C&task=T&container=N&tail=100&follow=true`
//!
//! answers `text/plain`, streamed (chunked) as the agent sends it. The handler sends a
//! LogRequest on the instance's live session; the agent's LogChunks come back through
//! [`LogRouter`](crate::agents::replies::LogRouter) by request id. When the HTTP client goes away, the agent is told to cancel.
//! The log driver the definition named is returned in the `X-Berth-Log-Driver` header: every
//! driver maps to the agent's local, rotated files.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_proto::v1 as pb;
use tokio::sync::mpsc;

use crate::app::{ControlPlane, CpError};
use crate::contract::LOG_DRIVER_HEADER;

/// How long the agent may take to start answering.
const FIRST_CHUNK_TIMEOUT: Duration = Duration::from_secs(30);

/// The query of a logs request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogParams {
    pub cluster: String,
    pub task: String,
    pub container: Option<String>,
    pub tail: u32,
    pub follow: bool,
}

/// Parses `cluster`, `task` (required), `container`, `tail`, `follow`.
pub fn parse_params(query: &str) -> Result<LogParams, String> {
    let mut p = LogParams {
        cluster: "default".into(),
        task: String::new(),
        container: None,
        tail: 0,
        follow: false,
    };
    for pair in query.split('&').filter(|s| !s.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v).ok_or_else(|| format!("{k}: bad percent-encoding"))?;
        match k {
            "cluster" => p.cluster = v,
            "task" => p.task = v,
            "container" if !v.is_empty() => p.container = Some(v),
            "container" => {}
            "tail" => {
                p.tail = v
                    .parse()
                    .map_err(|_| format!("tail: {v:?} is not a whole number of lines"))?
            }
            "follow" => {
                p.follow = match v.as_str() {
                    "" | "true" | "1" => true,
                    "false" | "0" => false,
                    _ => return Err(format!("follow: {v:?} is not true or false")),
                }
            }
            other => return Err(format!("unknown parameter {other:?}")),
        }
    }
    if p.task.is_empty() {
        return Err("task is required (an id or ARN)".into());
    }
    Ok(p)
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// `logConfiguration.logDriver` of `container` in a task definition as registered.
pub fn log_driver(task_definition: &serde_json::Value, container: &str) -> Option<String> {
    task_definition["containerDefinitions"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == container)?["logConfiguration"]["logDriver"]
        .as_str()
        .map(str::to_string)
}

fn text(status: StatusCode, message: impl Into<String>) -> Response {
    let mut m = message.into();
    m.push('\n');
    (status, m).into_response()
}

/// What the handler learned before talking to the agent.
struct Target {
    task_arn: String,
    instance_id: String,
    container: String,
    log_driver: Option<String>,
}

/// A refusal before anything was asked of the agent: (status, message).
fn refuse(status: StatusCode, message: impl Into<String>) -> (StatusCode, String) {
    (status, message.into())
}

fn find_target(cp: &ControlPlane, p: &LogParams) -> Result<Target, (StatusCode, String)> {
    let (found, _) = match cp.tasks.describe(&p.cluster, std::slice::from_ref(&p.task)) {
        Ok(x) => x,
        Err(e @ CpError::ClusterNotFound(_)) => {
            return Err(refuse(StatusCode::NOT_FOUND, e.to_string()))
        }
        Err(e) => {
            tracing::error!("logs: {e}");
            return Err(refuse(StatusCode::INTERNAL_SERVER_ERROR, "internal error"));
        }
    };
    let Some(task) = found.into_iter().next() else {
        return Err(refuse(
            StatusCode::NOT_FOUND,
            format!("task {} not found in cluster {}", p.task, p.cluster),
        ));
    };
    let names: Vec<&str> = task.containers.iter().map(|c| c.name.as_str()).collect();
    let container = match (&p.container, names.as_slice()) {
        (None, [only]) => only.to_string(),
        (None, _) => {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                format!(
                    "task {} has {} containers ({}): name one",
                    task.id,
                    names.len(),
                    names.join(", ")
                ),
            ))
        }
        (Some(c), _) if names.contains(&c.as_str()) => c.clone(),
        (Some(c), _) => {
            return Err(refuse(
                StatusCode::NOT_FOUND,
                format!(
                    "task {} has no container {c:?} (it has {})",
                    task.id,
                    names.join(", ")
                ),
            ))
        }
    };
    let log_driver = cp
        .task_definitions
        .of_task(&task)
        .ok()
        .flatten()
        .and_then(|d| log_driver(&d.raw, &container));
    Ok(Target {
        task_arn: cp.arns.task(&task.cluster, &task.id),
        instance_id: task.instance_id,
        container,
        log_driver,
    })
}

/// Ends the agent's side of a request when the response is finished or abandoned.
struct Guard {
    cp: Arc<ControlPlane>,
    request_id: String,
    instance_id: String,
    finished: bool,
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.cp.agents.logs.close(&self.request_id);
        if !self.finished {
            tracing::debug!(request = %self.request_id, "log reader went away: cancelling");
            self.cp.agents.sessions.send(
                &self.instance_id,
                log_request(pb::LogRequest {
                    request_id: self.request_id.clone(),
                    cancel: true,
                    ..Default::default()
                }),
            );
        }
    }
}

fn log_request(r: pb::LogRequest) -> pb::ControlMessage {
    pb::ControlMessage {
        msg: Some(pb::control_message::Msg::LogRequest(r)),
    }
}

pub async fn http_logs(State(cp): State<Arc<ControlPlane>>, RawQuery(query): RawQuery) -> Response {
    let params = match parse_params(query.as_deref().unwrap_or("")) {
        Ok(p) => p,
        Err(e) => return text(StatusCode::BAD_REQUEST, e),
    };
    let lookup = {
        let cp = Arc::clone(&cp);
        let params = params.clone();
        tokio::task::spawn_blocking(move || find_target(&cp, &params)).await
    };
    let target = match lookup {
        Ok(Ok(t)) => t,
        Ok(Err((status, message))) => return text(status, message),
        Err(_) => return text(StatusCode::INTERNAL_SERVER_ERROR, "internal error"),
    };
    let request_id = uuid::Uuid::new_v4().simple().to_string();
    let not_connected = || {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the agent of container instance {} is not connected: its task's logs cannot be read now",
                target.instance_id
            ),
        )
    };
    // Route first, then ask: a fast answer must find its way back.
    let Some(session_id) = cp.agents.sessions.session_id(&target.instance_id) else {
        return not_connected();
    };
    let mut rx = cp
        .agents
        .logs
        .open(&request_id, &target.instance_id, session_id);
    let mut guard = Guard {
        cp: Arc::clone(&cp),
        request_id: request_id.clone(),
        instance_id: target.instance_id.clone(),
        finished: false,
    };
    let sent = cp.agents.sessions.send(
        &target.instance_id,
        log_request(pb::LogRequest {
            request_id: request_id.clone(),
            task_arn: target.task_arn.clone(),
            container_name: target.container.clone(),
            tail_lines: params.tail,
            follow: params.follow,
            cancel: false,
        }),
    );
    if sent != Some(session_id) {
        guard.finished = true;
        return not_connected();
    }
    tracing::debug!(request = %request_id, task.arn = %target.task_arn, container = %target.container, "log request sent");

    // The agent always answers with one chunk at once: an error, or the start of the log.
    let first = match tokio::time::timeout(FIRST_CHUNK_TIMEOUT, rx.recv()).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            guard.finished = true;
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                "the agent disconnected before answering",
            );
        }
        Err(_) => {
            return text(
                StatusCode::GATEWAY_TIMEOUT,
                format!("the agent did not answer within {FIRST_CHUNK_TIMEOUT:?}"),
            )
        }
    };
    if !first.error.is_empty() {
        guard.finished = true;
        let status = if first.error.contains("try again later") {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::NOT_FOUND
        };
        return text(status, first.error);
    }

    enum State {
        Open(mpsc::UnboundedReceiver<pb::LogChunk>, Guard),
        Done,
    }
    let first_data = Bytes::from(first.data);
    let start = if first.eof {
        guard.finished = true;
        State::Done
    } else {
        State::Open(rx, guard)
    };
    let rest = futures_util::stream::unfold(start, |state| async move {
        let State::Open(mut rx, mut guard) = state else {
            return None;
        };
        loop {
            match rx.recv().await {
                None => {
                    guard.finished = true;
                    let e = std::io::Error::other("the agent's session ended");
                    return Some((Err(e), State::Done));
                }
                Some(c) if !c.error.is_empty() => {
                    guard.finished = true;
                    return Some((Err(std::io::Error::other(c.error)), State::Done));
                }
                Some(c) if c.eof => {
                    guard.finished = true;
                    return Some((Ok(Bytes::from(c.data)), State::Done));
                }
                Some(c) if c.data.is_empty() => continue,
                Some(c) => return Some((Ok(Bytes::from(c.data)), State::Open(rx, guard))),
            }
        }
    });
    let body = futures_util::StreamExt::chain(
        futures_util::stream::iter([Ok::<_, std::io::Error>(first_data)]),
        rest,
    );
    let mut resp = Response::new(Body::from_stream(body));
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Some(v) = target
        .log_driver
        .as_deref()
        .and_then(|d| HeaderValue::from_str(d).ok())
    {
        headers.insert(LOG_DRIVER_HEADER, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn params() {
        let p =
            parse_params("cluster=c1&task=arn%3Aaws%3Aecs%3Ax&container=web&tail=10&follow=true")
                .unwrap();
        assert_eq!(
            p,
            LogParams {
                cluster: "c1".into(),
                task: "arn:aws:ecs:x".into(),
                container: Some("web".into()),
                tail: 10,
                follow: true,
            }
        );
        let p = parse_params("task=t&follow").unwrap();
        assert!(p.follow && p.cluster == "default" && p.container.is_none() && p.tail == 0);
        assert!(parse_params("").is_err());
        assert!(parse_params("task=t&tail=-1").is_err());
        assert!(parse_params("task=t&colour=red").is_err());
    }

    #[test]
    fn driver_as_the_definition_gave_it() {
        let d = json!({"containerDefinitions": [
            {"name": "a", "logConfiguration": {"logDriver": "awslogs", "options": {}}},
            {"name": "b"}
        ]});
        assert_eq!(log_driver(&d, "a").as_deref(), Some("awslogs"));
        assert_eq!(log_driver(&d, "b"), None);
        assert_eq!(log_driver(&d, "c"), None);
    }
}
