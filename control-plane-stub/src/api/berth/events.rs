//! A task's event history: every state change the control plane applied to it, in the agent's
//! sequence order. A Berth path on the API listener (ECS has no such operation):
//!
//! `GET /berth/v1/tasks/{task}/events` -> `{"events": [EVENT...]}`
//!
//! `{task}` is the task's id or ARN (percent-encoded or not: the ARN's slashes may stay as they
//! are). EVENT is `{"seq", "kind": "task"|"container", "container": NAME|null, "status",
//! "exitCode": N|null, "reason", "at", "receivedAt"}` (times in epoch seconds; `at` is the
//! agent's clock, `receivedAt` the control plane's). An unknown task is a 404 with the
//! ECS-style `{"__type": "ResourceNotFoundException", "message"}`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use super::{error, run};
use crate::api::{ts, ApiError};
use crate::app::{ControlPlane, CpError};
use crate::contract::{EVENTS_SUFFIX, TASKS_PREFIX};
use crate::domain::task::TaskEvent;

/// Everything below `/berth/v1/tasks/`; the handler accepts only `<task>/events`.
pub const PATH: &str = "/berth/v1/tasks/{*rest}";

/// The task reference of `<task>/events` (what follows [`TASKS_PREFIX`]), or None for any other path.
pub fn task_reference(rest: &str) -> Option<&str> {
    rest.strip_suffix(EVENTS_SUFFIX)
        .filter(|t| !t.is_empty() && !t.starts_with('/'))
}

/// The path of a task's events, the reference percent-encoded as one segment.
pub fn event_json(e: &TaskEvent) -> Value {
    json!({
        "seq": e.seq,
        "kind": e.kind.as_str(),
        "container": e.container_name,
        "status": e.status,
        "exitCode": e.exit_code,
        "reason": e.reason,
        "at": ts(e.at_ms),
        "receivedAt": ts(e.received_at_ms),
    })
}

pub fn events_json(events: &[TaskEvent]) -> Value {
    json!({"events": events.iter().map(event_json).collect::<Vec<_>>()})
}

pub async fn get(State(cp): State<Arc<ControlPlane>>, Path(rest): Path<String>) -> Response {
    let Some(task) = task_reference(&rest).map(str::to_string) else {
        return error(ApiError {
            status: StatusCode::NOT_FOUND,
            code: "UnknownOperationException",
            message: format!("no such path {TASKS_PREFIX}{rest}: did you mean {TASKS_PREFIX}<task>{EVENTS_SUFFIX}?"),
        });
    };
    run(cp, move |cp| {
        let (_, events) = cp.tasks.events(&task)?;
        Ok::<_, CpError>((StatusCode::OK, events_json(&events)))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::task::EventKind;

    #[test]
    fn only_task_events_paths_name_a_task() {
        assert_eq!(task_reference("abc/events"), Some("abc"));
        assert_eq!(
            task_reference("arn:aws:ecs:us-east-1:0:task/default/abc/events"),
            Some("arn:aws:ecs:us-east-1:0:task/default/abc")
        );
        assert_eq!(task_reference("abc"), None);
        assert_eq!(task_reference("/events"), None);
        assert_eq!(task_reference("abc/logs"), None);
        assert_eq!(
            crate::contract::events_path("arn:aws:ecs:r:0:task/c/abc"),
            "/berth/v1/tasks/arn%3Aaws%3Aecs%3Ar%3A0%3Atask%2Fc%2Fabc/events"
        );
    }

    #[test]
    fn event_shape() {
        let task = TaskEvent {
            seq: 3,
            instance_id: "i".into(),
            kind: EventKind::Task,
            container_name: None,
            status: "RUNNING".into(),
            exit_code: None,
            reason: String::new(),
            at_ms: 1_700_000_000_250,
            received_at_ms: 1_700_000_000_300,
        };
        let container = TaskEvent {
            seq: 4,
            kind: EventKind::Container,
            container_name: Some("app".into()),
            status: "STOPPED".into(),
            exit_code: Some(137),
            reason: "killed".into(),
            ..task.clone()
        };
        assert_eq!(
            events_json(&[task, container]),
            json!({"events": [
                {"seq": 3, "kind": "task", "container": null, "status": "RUNNING",
                 "exitCode": null, "reason": "", "at": 1_700_000_000.25, "receivedAt": 1_700_000_000.3},
                {"seq": 4, "kind": "container", "container": "app", "status": "STOPPED",
                 "exitCode": 137, "reason": "killed", "at": 1_700_000_000.25, "receivedAt": 1_700_000_000.3}
            ]})
        );
    }
}
