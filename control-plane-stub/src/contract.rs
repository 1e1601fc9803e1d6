//! What berth-cp and its clients agree on: the ECS JSON protocol's framing and the Berth REST
//! paths. `berthctl` (and any client) depends on this module and on the request and response
//! shapes, never on the server's internals.

/// Every ECS operation is `POST /` with `X-Amz-Target: <TARGET_PREFIX><Operation>`.
pub const TARGET_PREFIX: &str = "AmazonEC2ContainerServiceV20141113.";
/// The ECS JSON protocol's content type, of requests and responses.
pub const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// `GET /berth/v1/logs?cluster=C&task=T&container=N&tail=100&follow=true`.
pub const LOGS_PATH: &str = "/berth/v1/logs";
/// The log driver the task definition named, on a logs response.
pub const LOG_DRIVER_HEADER: &str = "x-berth-log-driver";

/// `GET` lists the security groups; `/<id or name>` is one (`GET`, `PUT`, `DELETE`).
pub const SECURITY_GROUPS_PATH: &str = "/berth/v1/security-groups";
/// `GET` lists the secrets; `/<name>` is one (`PUT`, `DELETE`).
pub const SECRETS_PATH: &str = "/berth/v1/secrets";
/// `/<task id or ARN>/events`: a task's applied state changes.
pub const TASKS_PREFIX: &str = "/berth/v1/tasks/";
pub const EVENTS_SUFFIX: &str = "/events";

/// `GET ?after=ID&limit=N`: the audit log, oldest first.
pub const AUDIT_PATH: &str = "/berth/v1/audit";
/// Prometheus scrapes here (the conventional path, not under /berth/v1).
pub const METRICS_PATH: &str = "/metrics";

/// `GET /berth/v1/exec/<session id>`: the WebSocket of an ExecuteCommand session (its
/// `streamUrl`, with `ws://`). Frames, after the WebSocket handshake:
/// - the client's first is a text frame, an [`ExecOpen`] with the session's `tokenValue`;
/// - then the client sends stdin as binary frames, and [`ExecClientMessage`]s as text frames;
/// - the server sends output as binary frames whose first byte is [`EXEC_STDOUT`] or
///   [`EXEC_STDERR`], and [`ExecServerMessage`]s as text frames: `started` first, then, last,
///   `exitCode` or `error`; then it closes the WebSocket.
///
/// A session is claimed once: a second stream, a wrong token or a late one (ExecuteCommand's
/// session lasts two minutes unclaimed) gets an `error` and the close.
pub const EXEC_PATH: &str = "/berth/v1/exec";
pub const EXEC_STDOUT: u8 = 1;
pub const EXEC_STDERR: u8 = 2;

/// The first frame of an exec stream.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecOpen {
    pub token_value: String,
    /// Run the command on a pseudo-terminal of `rows` x `cols`.
    #[serde(default)]
    pub tty: bool,
    #[serde(default)]
    pub rows: u16,
    #[serde(default)]
    pub cols: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TerminalSize {
    pub rows: u16,
    pub cols: u16,
}

/// A client's text frame: a terminal resize, or the end of its stdin.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecClientMessage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resize: Option<TerminalSize>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stdin_eof: bool,
}

/// A server's text frame.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecServerMessage {
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub started: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `/berth/v1/exec/<session id>`.
pub fn exec_path(session_id: &str) -> String {
    format!("{EXEC_PATH}/{}", path_segment(session_id))
}

/// `/berth/v1/security-groups/<group>`, the reference percent-encoded.
pub fn security_group_path(group: &str) -> String {
    format!("{SECURITY_GROUPS_PATH}/{}", path_segment(group))
}

/// `/berth/v1/secrets/<name>`, the name percent-encoded for the path (names may hold `/`).
pub fn secret_path(name: &str) -> String {
    format!("{SECRETS_PATH}/{}", path_segment(name))
}

/// `/berth/v1/tasks/<task>/events`, the reference percent-encoded (an ARN holds `/` and `:`).
pub fn events_path(task: &str) -> String {
    format!("{TASKS_PREFIX}{}{EVENTS_SUFFIX}", path_segment(task))
}

/// `s` percent-encoded as one path segment (everything but RFC 3986's unreserved characters).
pub fn path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
