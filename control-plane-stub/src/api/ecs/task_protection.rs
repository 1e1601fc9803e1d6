//! UpdateTaskProtection and GetTaskProtection, and the ProtectedTask shape.

use serde::Deserialize;
use serde_json::{json, Value};

use super::request::{cluster_or_default, parse, OpResult, Operation};
use crate::api::ts;
use crate::app::{ControlPlane, ProtectionFailure};
use crate::clock::now_ms;
use crate::domain::task::Task;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateTaskProtectionRequest {
    cluster: Option<String>,
    tasks: Vec<String>,
    protection_enabled: bool,
    expires_in_minutes: Option<i64>,
}

fn update_task_protection(cp: &ControlPlane, r: UpdateTaskProtectionRequest) -> OpResult {
    let cluster = cluster_or_default(r.cluster);
    let (tasks, failures) = cp.tasks.update_protection(
        &cluster,
        &r.tasks,
        r.protection_enabled,
        r.expires_in_minutes,
    )?;
    Ok(answer(cp, &cluster, &tasks, &failures))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GetTaskProtectionRequest {
    cluster: Option<String>,
    #[serde(default)]
    tasks: Vec<String>,
}

fn get_task_protection(cp: &ControlPlane, r: GetTaskProtectionRequest) -> OpResult {
    let cluster = cluster_or_default(r.cluster);
    let (tasks, failures) = cp.tasks.get_protection(&cluster, &r.tasks)?;
    Ok(answer(cp, &cluster, &tasks, &failures))
}

fn answer(
    cp: &ControlPlane,
    cluster: &str,
    tasks: &[Task],
    failures: &[ProtectionFailure],
) -> Value {
    let now = now_ms();
    let protected: Vec<Value> = tasks
        .iter()
        .map(|t| {
            let mut v = json!({
                "taskArn": cp.arns.task(&t.cluster, &t.id),
                "protectionEnabled": t.is_protected(now),
            });
            if let Some(until) = t.protected_until_ms.filter(|_| t.is_protected(now)) {
                v["expirationDate"] = ts(until);
            }
            v
        })
        .collect();
    let failures: Vec<Value> = failures
        .iter()
        .map(|f| {
            let arn = if f.reference.starts_with("arn:") {
                f.reference.clone()
            } else {
                cp.arns.task(cluster, &f.reference)
            };
            json!({"arn": arn, "reason": f.reason, "detail": f.detail})
        })
        .collect();
    json!({"protectedTasks": protected, "failures": failures})
}

/// The handler of `operation` when it is one of this resource's.
pub(super) fn operation(name: &str) -> Option<Operation> {
    Some(match name {
        "UpdateTaskProtection" => |cp, r| update_task_protection(cp, parse(r)?),
        "GetTaskProtection" => |cp, r| get_task_protection(cp, parse(r)?),
        _ => return None,
    })
}
