//! The one error type every handler returns, and its JSON envelope.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};
use std::io;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("{0}")]
    Validation(String),
    #[error("{0}")]
    InvalidPath(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{message}")]
    AlreadyExists { message: String, details: Option<Value> },
    /// Removing a directory that still holds something, without `recursive`.
    #[error("directory not empty: {0} (remove it with recursive=true)")]
    NotEmpty(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("request body is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("timeout {requested}s is longer than the maximum of {max}s")]
    TimeoutTooLong { requested: f64, max: u64 },
    #[error("{0}")]
    Internal(String),
}

pub type Result<T, E = AgentError> = std::result::Result<T, E>;

impl AgentError {
    pub fn validation(msg: impl Into<String>) -> Self {
        Self::Validation(msg.into())
    }

    pub fn not_found(msg: impl Into<String>) -> Self {
        Self::NotFound(msg.into())
    }

    pub fn already_exists(msg: impl Into<String>) -> Self {
        Self::AlreadyExists { message: msg.into(), details: None }
    }

    pub fn internal(msg: impl std::fmt::Display) -> Self {
        Self::Internal(msg.to_string())
    }

    /// Maps a filesystem error on `path` to the code a client can act on.
    pub fn io(err: io::Error, path: &Path) -> Self {
        let p = path.display();
        match err.kind() {
            io::ErrorKind::NotFound => Self::NotFound(format!("no such file or directory: {p}")),
            io::ErrorKind::AlreadyExists => Self::already_exists(format!("already exists: {p}")),
            io::ErrorKind::DirectoryNotEmpty => Self::NotEmpty(p.to_string()),
            io::ErrorKind::PermissionDenied => {
                Self::PermissionDenied(format!("permission denied: {p}"))
            }
            io::ErrorKind::NotADirectory => Self::Validation(format!("not a directory: {p}")),
            io::ErrorKind::IsADirectory => Self::Validation(format!("is a directory: {p}")),
            io::ErrorKind::InvalidInput | io::ErrorKind::InvalidFilename => {
                Self::Validation(format!("{err}: {p}"))
            }
            _ => Self::Internal(format!("{err}: {p}")),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Validation(_) | Self::InvalidPath(_) | Self::TimeoutTooLong { .. } => {
                StatusCode::BAD_REQUEST
            }
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::AlreadyExists { .. } | Self::NotEmpty(_) => StatusCode::CONFLICT,
            Self::PermissionDenied(_) => StatusCode::FORBIDDEN,
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::Validation(_) => "VALIDATION_FAILED",
            Self::InvalidPath(_) => "INVALID_PATH",
            Self::NotFound(_) => "NOT_FOUND",
            Self::AlreadyExists { .. } => "ALREADY_EXISTS",
            Self::NotEmpty(_) => "DIRECTORY_NOT_EMPTY",
            Self::PermissionDenied(_) => "PERMISSION_DENIED",
            Self::TooLarge { .. } => "TOO_LARGE",
            Self::TimeoutTooLong { .. } => "TIMEOUT_TOO_LONG",
            Self::Internal(_) => "INTERNAL",
        }
    }

    fn details(&self) -> Option<Value> {
        match self {
            Self::AlreadyExists { details, .. } => details.clone(),
            Self::NotEmpty(_) => Some(json!({ "reason": "directory_not_empty" })),
            Self::TooLarge { limit } => Some(json!({ "limit_bytes": limit })),
            Self::TimeoutTooLong { requested, max } => {
                Some(json!({ "requested": requested, "max": max }))
            }
            _ => None,
        }
    }

    /// The `{"error": ...}` envelope, also used inside SSE streams.
    pub fn envelope(&self) -> Value {
        let mut error = json!({
            "code": self.code(),
            "message": self.to_string(),
            "retryable": false,
        });
        if let (Some(details), Some(obj)) = (self.details(), error.as_object_mut()) {
            obj.insert("details".into(), details);
        }
        json!({ "error": error })
    }
}

impl IntoResponse for AgentError {
    fn into_response(self) -> Response {
        if let Self::Internal(msg) = &self {
            tracing::error!(error = %msg, "internal error");
        }
        (self.status(), axum::Json(self.envelope())).into_response()
    }
}
