//! The one place where control-plane errors become ECS error codes.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::app::CpError;
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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"__type": self.code, "message": self.message});
        super::json_response(self.status, &body)
    }
}
