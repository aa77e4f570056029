//! The one place where errors become HTTP statuses and public messages. Internal detail is
//! logged here once and never returned.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use islet_runtime::RuntimeError;
use islet_store::StoreError;

use crate::request_id;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    Validation { message: String, field: Option<&'static str> },
    #[error("missing or invalid API key")]
    Unauthenticated,
    #[error("{0} not found")]
    NotFound(&'static str),
    /// An organization (`X-Miosa-Bill-To`, `/tenants/{id}`) that is not the caller's.
    #[error("{0}")]
    OrgNotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("sandbox is {0}, not running")]
    NotRunning(String),
    #[error("sandbox is still starting")]
    Starting,
    #[error("Idempotency-Key was used with a different request body")]
    IdempotencyMismatch,
    #[error("scope must be `read` or `interact`")]
    InvalidScope,
    #[error("no capacity left on this node")]
    Capacity,
    #[error("the sandbox's agent is unreachable")]
    AgentUnavailable,
    /// A tunnel's port: nothing in the sandbox accepts connections on it.
    #[error("nothing in the sandbox listens on port {port}")]
    PortNotListening { port: u16 },
    #[error("{0}")]
    RateLimited(String),
    /// Over a rate limit: this key's, or its end user's.
    #[error("too many requests for this {what}; retry after {} ms", retry_after.as_millis())]
    Throttled { what: &'static str, retry_after: std::time::Duration, limit: u32 },
    #[error("external user {0} is suspended")]
    Suspended(String),
    /// The credential lacks the scope (or is bound to one end user).
    #[error("{0}")]
    Forbidden(String),
    #[error("{limit} for external user {external_user_id} is {max}; {current} in use, {requested} more requested")]
    QuotaExceeded {
        limit: &'static str,
        max: u64,
        current: u64,
        requested: u64,
        external_user_id: String,
    },
    #[error("request body is larger than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("this route does not answer that method")]
    MethodNotAllowed,
    /// A call the MIOSA API has that cannot mean anything on this platform (yet).
    #[error("{what} is not supported here: {reason}")]
    Unsupported { what: &'static str, reason: &'static str },
    /// Admitted, but the runtime could not start it (it is in `error`).
    #[error("the sandbox failed to start")]
    StartFailed { sandbox_id: islet_types::SandboxId },
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn quota(refusal: islet_types::policy::Refusal, external_user_id: String) -> Self {
        ApiError::QuotaExceeded {
            limit: refusal.limit,
            max: refusal.max,
            current: refusal.current,
            requested: refusal.requested,
            external_user_id,
        }
    }

    pub fn validation(message: impl Into<String>, field: &'static str) -> Self {
        ApiError::Validation { message: message.into(), field: Some(field) }
    }

    /// The envelope's `code` (`NOT_FOUND`, `QUOTA_EXCEEDED`, …).
    pub fn code(&self) -> &'static str {
        self.parts().1
    }

    fn parts(&self) -> (StatusCode, &'static str, bool) {
        match self {
            ApiError::Validation { .. } => (StatusCode::BAD_REQUEST, "VALIDATION_FAILED", false),
            ApiError::Unauthenticated => (StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", false),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "NOT_FOUND", false),
            ApiError::OrgNotFound(_) => (StatusCode::NOT_FOUND, "ORG_NOT_FOUND", false),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "CONFLICT", false),
            ApiError::NotRunning(_) => (StatusCode::CONFLICT, "SANDBOX_NOT_RUNNING", false),
            ApiError::Starting => (StatusCode::CONFLICT, "SANDBOX_STARTING", true),
            ApiError::IdempotencyMismatch => {
                (StatusCode::UNPROCESSABLE_ENTITY, "IDEMPOTENCY_KEY_REUSED", false)
            }
            ApiError::InvalidScope => (StatusCode::UNPROCESSABLE_ENTITY, "INVALID_SCOPE", false),
            ApiError::Capacity => (StatusCode::SERVICE_UNAVAILABLE, "NO_CAPACITY", true),
            ApiError::AgentUnavailable => (StatusCode::BAD_GATEWAY, "AGENT_UNAVAILABLE", true),
            ApiError::PortNotListening { .. } => (StatusCode::CONFLICT, "PORT_NOT_LISTENING", true),
            ApiError::RateLimited(_) => (StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED", true),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "INSUFFICIENT_SCOPE", false),
            ApiError::Suspended(_) => (StatusCode::FORBIDDEN, "USER_SUSPENDED", false),
            ApiError::Throttled { .. } => (StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED", true),
            // The contract's credit refusal: the SDK raises `InsufficientCreditsError`.
            ApiError::QuotaExceeded { limit: "max_credit_cents", .. } => {
                (StatusCode::PAYMENT_REQUIRED, "INSUFFICIENT_CREDITS", false)
            }
            ApiError::QuotaExceeded { .. } => (StatusCode::FORBIDDEN, "QUOTA_EXCEEDED", false),
            ApiError::TooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "TOO_LARGE", false),
            ApiError::Unsupported { .. } => (StatusCode::CONFLICT, "UNSUPPORTED", false),
            ApiError::MethodNotAllowed => {
                (StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED", false)
            }
            ApiError::StartFailed { .. } => {
                (StatusCode::INTERNAL_SERVER_ERROR, "SANDBOX_START_FAILED", false)
            }
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", true),
        }
    }
}

/// The envelope's `error` object (contract §4).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ErrorObject {
    /// Stable, upper snake case (`NOT_FOUND`, `QUOTA_EXCEEDED`, …).
    pub code: &'static str,
    pub message: String,
    /// Whether the same request may succeed later.
    pub retryable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<ErrorDetails>,
    /// How long to wait before retrying, when the error says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

/// What an error adds about itself.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(untagged)]
pub enum ErrorDetails {
    /// A body, query or header field that was refused.
    Field { field: &'static str },
    /// The limit a create or resume met.
    Quota { limit: &'static str, max: u64, current: u64, requested: u64, external_user_id: String },
    /// The sandbox that failed to start.
    Sandbox { sandbox_id: islet_types::SandboxId },
    /// The most a body may hold.
    Limit { limit_bytes: u64 },
    /// Why a call is not supported.
    Reason { reason: &'static str },
}

/// A whole error answer: `{"error": {…}, "request_id": "req_…"}`.
#[derive(Debug, serde::Serialize)]
pub struct ErrorBody {
    pub error: ErrorObject,
    pub request_id: String,
}

impl ApiError {
    /// The status, and the envelope's `error` object: code, message, retryable and whatever
    /// details the error carries.
    pub fn envelope(&self) -> (StatusCode, ErrorObject) {
        let (status, code, retryable) = self.parts();
        let details = match self {
            ApiError::Validation { field: Some(field), .. } => Some(ErrorDetails::Field { field }),
            ApiError::QuotaExceeded { limit, max, current, requested, external_user_id } => {
                Some(ErrorDetails::Quota {
                    limit,
                    max: *max,
                    current: *current,
                    requested: *requested,
                    external_user_id: external_user_id.clone(),
                })
            }
            ApiError::StartFailed { sandbox_id } => {
                Some(ErrorDetails::Sandbox { sandbox_id: sandbox_id.clone() })
            }
            ApiError::TooLarge { limit } => Some(ErrorDetails::Limit { limit_bytes: *limit }),
            ApiError::Unsupported { reason, .. } => Some(ErrorDetails::Reason { reason }),
            _ => None,
        };
        let retry_after_ms = match self {
            ApiError::Starting => Some(500),
            ApiError::Throttled { retry_after, .. } => Some(retry_after.as_millis() as u64),
            _ => None,
        };
        (
            status,
            ErrorObject { code, message: self.to_string(), retryable, details, retry_after_ms },
        )
    }
}

/// The code of an error whose raiser gave only a status (a relayed answer that is not an
/// envelope): the contract's code for that status.
pub(crate) fn code_for_status(status: StatusCode) -> (&'static str, bool) {
    match status {
        StatusCode::BAD_REQUEST | StatusCode::UNPROCESSABLE_ENTITY => ("VALIDATION_FAILED", false),
        StatusCode::NOT_FOUND => ("NOT_FOUND", false),
        StatusCode::METHOD_NOT_ALLOWED => ("METHOD_NOT_ALLOWED", false),
        StatusCode::CONFLICT => ("CONFLICT", false),
        StatusCode::PAYLOAD_TOO_LARGE => ("TOO_LARGE", false),
        StatusCode::FORBIDDEN => ("PERMISSION_DENIED", false),
        StatusCode::TOO_MANY_REQUESTS => ("RATE_LIMITED", true),
        s if s.is_server_error() => ("INTERNAL", true),
        s if s.is_client_error() => ("INVALID_REQUEST", false),
        _ => ("INTERNAL", true),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let request_id = request_id::current();
        if let ApiError::Internal(detail) = &self {
            tracing::error!(%request_id, error = %detail, "internal error");
        }
        let (status, error) = self.envelope();
        let mut headers = axum::http::HeaderMap::new();
        if let ApiError::TooLarge { .. } = &self {
            // The rest of the body is never read, so this connection cannot carry another
            // request: say so, or a client reuses it and finds it closed.
            headers.insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
        }
        if let ApiError::Throttled { retry_after, limit, .. } = &self {
            let secs = retry_after.as_secs_f64().ceil().max(1.0) as u64;
            for (name, value) in [
                ("retry-after", secs.to_string()),
                ("x-ratelimit-limit", limit.to_string()),
                ("x-ratelimit-remaining", "0".to_owned()),
                ("x-ratelimit-reset", secs.to_string()),
            ] {
                if let Ok(v) = axum::http::HeaderValue::from_str(&value) {
                    headers.insert(name, v);
                }
            }
        }
        (status, headers, axum::Json(ErrorBody { error, request_id })).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => ApiError::NotFound(what),
            StoreError::NameTaken(name) => {
                ApiError::Conflict(format!("a sandbox named `{name}` already exists"))
            }
            StoreError::Conflict(message) => ApiError::Conflict(message),
            StoreError::Suspended(user) => ApiError::Suspended(user),
            StoreError::QuotaExceeded { refusal, external_user_id } => {
                ApiError::quota(refusal, external_user_id)
            }
            StoreError::NoNetworkSlot => ApiError::Capacity,
            StoreError::Transition(t) => ApiError::Conflict(t.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<RuntimeError> for ApiError {
    fn from(e: RuntimeError) -> Self {
        ApiError::Internal(e.to_string())
    }
}

impl From<islet_types::TransitionError> for ApiError {
    fn from(e: islet_types::TransitionError) -> Self {
        ApiError::Conflict(e.to_string())
    }
}
