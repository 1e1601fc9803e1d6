//! ExecuteCommand, the one operation that needs to know who asked (it is audited). The session it answers is Berth's: its streamUrl is berth-cp's WebSocket
//! (`contract::EXEC_PATH`), which `berthctl exec` speaks, not AWS Systems Manager's.

use serde::Deserialize;
use serde_json::{json, Value};

use super::request::{cluster_or_default, parse, OpResult};
use crate::app::ControlPlane;
use crate::contract::exec_path;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExecuteCommandRequest {
    cluster: Option<String>,
    container: Option<String>,
    command: String,
    interactive: bool,
    task: String,
}

/// ExecuteCommand by `principal` (the request's access key id, for the audit log).
pub(super) fn execute_command(cp: &ControlPlane, principal: &str, request: Value) -> OpResult {
    let r: ExecuteCommandRequest = parse(request)?;
    let cluster = cluster_or_default(r.cluster);
    let s = cp.execs.start(
        principal,
        &cluster,
        &r.task,
        r.container.as_deref(),
        &r.command,
        r.interactive,
    )?;
    Ok(json!({
        "clusterArn": cp.arns.cluster(&s.cluster),
        "containerArn": s.container_arn,
        "containerName": s.container,
        "interactive": true,
        "session": {
            "sessionId": s.session_id,
            "streamUrl": format!("ws://{}{}", cp.api_endpoint, exec_path(&s.session_id)),
            "tokenValue": s.token,
        },
        "taskArn": s.task_arn,
    }))
}
