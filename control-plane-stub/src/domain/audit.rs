//! The audit log's records: who did what to which resource, when. Kept by the store in the
//! order they were written (`id`), never changed.

use serde_json::Value;

/// Actions the audit log records.
pub const EXECUTE_COMMAND: &str = "ExecuteCommand";
/// An ExecuteCommand session's end: its exit status or why it ended.
pub const EXEC_SESSION_ENDED: &str = "ExecSessionEnded";

/// The most records one listing returns.
pub const MAX_PAGE: usize = 1000;

#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    /// Assigned by the store, increasing; 0 before the event is written.
    pub id: i64,
    pub at_ms: i64,
    /// Who asked: the request's access key id, or `anonymous` for an unsigned request.
    pub principal: String,
    pub action: String,
    /// The ARN the action was on.
    pub resource: String,
    /// What else the action's record holds (a command, a session id, an exit code...).
    pub detail: Value,
}

/// The access key id a SigV4 `Authorization` header names (`AWS4-HMAC-SHA256
/// Credential=AKID/date/region/service/aws4_request, ...`). berth-cp does not verify
/// signatures yet (issue #21): this is who the request says it is.
pub fn access_key_id(authorization: &str) -> Option<&str> {
    let rest = authorization.strip_prefix("AWS4-HMAC-SHA256")?;
    let credential = rest
        .split(',')
        .map(str::trim)
        .find_map(|part| part.strip_prefix("Credential="))?;
    let id = credential.split('/').next()?;
    let valid = (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric());
    valid.then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_access_key_comes_from_the_credential_scope() {
        let h = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261207/us-east-1/ecs/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc";
        assert_eq!(access_key_id(h), Some("AKIDEXAMPLE"));
        for bad in [
            "",
            "Basic dXNlcjpwYXNz",
            "AWS4-HMAC-SHA256 SignedHeaders=host",
            "AWS4-HMAC-SHA256 Credential=/20261207/us-east-1/ecs/aws4_request",
            "AWS4-HMAC-SHA256 Credential=AK ID/x",
        ] {
            assert_eq!(access_key_id(bad), None, "{bad:?}");
        }
    }
}
