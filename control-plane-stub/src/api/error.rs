//! The one place where control-plane errors become ECS error codes, and the ECS error shape
//! (`{"__type", "message"}`) both APIs answer with.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::app::CpError;
use crate::contract::CONTENT_TYPE;
use crate::domain::taskdef::ProblemKind;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn client(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code,
            message: message.into(),
        }
    }
}

impl From<CpError> for ApiError {
    fn from(e: CpError) -> Self {
        let message = e.to_string();
        let code = match &e {
            CpError::InvalidParameter(_) => "InvalidParameterException",
            CpError::Client(_)
            | CpError::TaskDefinitionNotFound(_)
            | CpError::TaskDefinitionInactive(_) => "ClientException",
            CpError::TaskDefinition(td) => match td.kind {
                ProblemKind::Client => "ClientException",
                ProblemKind::InvalidParameter => "InvalidParameterException",
            },
            CpError::ClusterNotFound(_) => "ClusterNotFoundException",
            CpError::ClusterNotEmpty(refusal) => refusal.code(),
            CpError::ServiceNotFound(_) => "ServiceNotFoundException",
            CpError::ServiceNotActive(_) => "ServiceNotActiveException",
            CpError::ServiceDeploymentNotFound(_) => "ServiceDeploymentNotFoundException",
            CpError::Conflict(_) => "ConflictException",
            CpError::TargetNotFound(_) => "TargetNotFoundException",
            CpError::AttributeLimitExceeded(_) => "AttributeLimitExceededException",
            CpError::ResourceNotFound(_) => "ResourceNotFoundException",
            CpError::NamespaceNotFound(_) => "NamespaceNotFoundException",
            CpError::TargetNotConnected(_) => "TargetNotConnectedException",
            CpError::TaskNotFound(_) => "InvalidParameterException",
            CpError::NoSuchTask(_)
            | CpError::SecurityGroupNotFound(_)
            | CpError::SecretNotFound(_) => {
                return Self {
                    status: StatusCode::NOT_FOUND,
                    code: "ResourceNotFoundException",
                    message,
                }
            }
            CpError::SecurityGroupInUse { .. } => {
                return Self {
                    status: StatusCode::CONFLICT,
                    code: "ResourceInUseException",
                    message,
                }
            }
            CpError::Store(_) => {
                tracing::error!("internal error: {message}");
                return Self {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    code: "ServerException",
                    message,
                };
            }
        };
        Self::client(code, message)
    }
}

/// Messages quote what was sent (names, expressions, JSON errors); a client that sent
/// megabytes gets a bounded answer.
pub const MAX_MESSAGE_CHARS: usize = 1024;

fn capped(message: String) -> String {
    let total = message.chars().count();
    if total <= MAX_MESSAGE_CHARS {
        return message;
    }
    let head: String = message.chars().take(MAX_MESSAGE_CHARS).collect();
    format!("{head}… ({} more characters)", total - MAX_MESSAGE_CHARS)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"__type": self.code, "message": capped(self.message)});
        json_response(self.status, &body)
    }
}

/// A response in the ECS JSON protocol's content type.
pub(crate) fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    let mut resp = (status, body.to_string()).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_capped_on_a_character_boundary() {
        assert_eq!(capped("short".into()), "short");
        let long = "é".repeat(MAX_MESSAGE_CHARS + 10);
        let c = capped(long);
        assert!(c.starts_with(&"é".repeat(MAX_MESSAGE_CHARS)));
        assert!(c.ends_with("… (10 more characters)"), "{c}");
    }
}
