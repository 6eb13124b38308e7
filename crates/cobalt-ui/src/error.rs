//! The dashboard's one error type and its single JSON rendering.

use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};

/// Why a dashboard request failed. Rendered once, as `{"error": {"code", "message"}}`.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    /// No session, or a session the request may not use.
    #[error("{0}")]
    Unauthorized(String),
    /// A valid session that may not do this (another account, no storage key).
    #[error("{0}")]
    Forbidden(String),
    /// The request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// Nothing at that address.
    #[error("{0}")]
    NotFound(String),
    /// The node holding a file is not connected.
    #[error("{0}")]
    Unavailable(String),
    /// An error of the control plane, with its Azure code and status.
    #[error("{message}")]
    Batch {
        /// The Azure error code.
        code: &'static str,
        /// Its status.
        status: StatusCode,
        /// The message.
        message: String,
    },
    /// A failure the caller cannot fix; the cause is logged, never returned.
    #[error("internal error")]
    Internal,
}

/// Result of a dashboard operation.
pub type UiResult<T> = Result<T, UiError>;

impl UiError {
    /// The HTTP status and the short code of the error.
    pub fn status_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "Unauthorized"),
            Self::Forbidden(_) => (StatusCode::FORBIDDEN, "Forbidden"),
            Self::BadRequest(_) => (StatusCode::BAD_REQUEST, "BadRequest"),
            Self::NotFound(_) => (StatusCode::NOT_FOUND, "NotFound"),
            Self::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "Unavailable"),
            Self::Batch { code, status, .. } => (*status, code),
            Self::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
        }
    }

    /// Logs `cause` and returns [`UiError::Internal`].
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "dashboard request failed");
        Self::Internal
    }
}

impl From<cobalt_batch::BatchError> for UiError {
    fn from(e: cobalt_batch::BatchError) -> Self {
        let message = e
            .message
            .clone()
            .unwrap_or_else(|| e.code.message().to_owned());
        Self::Batch {
            code: e.code.as_str(),
            status: e.code.status(),
            message,
        }
    }
}

impl From<cobalt_blob::engine::EngineError> for UiError {
    fn from(e: cobalt_blob::engine::EngineError) -> Self {
        use cobalt_blob::engine::EngineError as E;
        match e {
            E::ContainerNotFound => {
                Self::NotFound("The specified container does not exist.".into())
            }
            E::BlobNotFound => Self::NotFound("The specified blob does not exist.".into()),
            other => Self::internal(other),
        }
    }
}

impl From<tokio::task::JoinError> for UiError {
    fn from(e: tokio::task::JoinError) -> Self {
        Self::internal(e)
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_code();
        let body = serde_json::json!({"error": {"code": code, "message": self.to_string()}});
        (
            status,
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            body.to_string(),
        )
            .into_response()
    }
}
