//! The one error body: `{"error":{"code":"...","message":"...","field":"..."}}`.
//!
//! 4xx bodies are stable and name the field at fault. 5xx bodies say only that the request
//! failed; the cause goes to the log, never to the client.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use serde::Serialize;

/// Every error response's body.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable: `validation_failed`, `not_found`, `conflict`, ...
    pub code: String,
    pub message: String,
    /// The request field at fault (a JSON path like `items[2].quantity`), when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// A JSON error response.
pub fn api_error(
    status: StatusCode,
    code: &str,
    message: impl Into<String>,
    field: Option<&str>,
) -> HttpResponse {
    HttpResponse::build(status).json(ErrorBody {
        error: ErrorDetail {
            code: code.to_owned(),
            message: message.into(),
            field: field.map(str::to_owned),
        },
    })
}

/// The 500 body; `cause` is logged, not returned.
pub fn internal_error(cause: &anyhow::Error) -> HttpResponse {
    tracing::error!(error = format!("{cause:#}"), "request failed");
    api_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal_error",
        "the request failed",
        None,
    )
}

/// The 503 body for an exhausted pool or an unreachable database.
pub fn unavailable(cause: &anyhow::Error) -> HttpResponse {
    tracing::warn!(error = format!("{cause:#}"), "service unavailable");
    api_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "unavailable",
        "the service is temporarily unavailable, retry later",
        None,
    )
}

/// The error of an HTTP handler. One enum serves every service: they share the same failure
/// modes and the same body, and four copies would drift.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A value breaks a rule: 422, naming the field.
    #[error("{field}: {message}")]
    Validation { field: String, message: String },
    /// 404.
    #[error("{what} not found")]
    NotFound { what: &'static str },
    /// Missing or wrong credentials: 401 (which of the two is not said).
    #[error("unauthorized")]
    Unauthorized,
    /// A state conflict (used coupon, duplicate issue, non-cancellable order): 409.
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    /// Too many requests from one client: 429 with `Retry-After` (whole seconds, rounded up).
    #[error("too many requests")]
    TooManyRequests { retry_after: std::time::Duration },
    /// Database unreachable or pool exhausted: 503, retry later.
    #[error("unavailable: {0:#}")]
    Unavailable(anyhow::Error),
    /// Anything else: 500, the cause only in the log.
    #[error("internal: {0:#}")]
    Internal(anyhow::Error),
}

impl ApiError {
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::Conflict {
            code,
            message: message.into(),
        }
    }
}

impl actix_web::ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Validation { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            Self::Validation { field, message } => api_error(
                self.status_code(),
                "validation_failed",
                format!("{field}: {message}"),
                Some(field),
            ),
            Self::NotFound { what } => api_error(
                self.status_code(),
                "not_found",
                format!("{what} not found"),
                None,
            ),
            Self::Unauthorized => {
                let mut response = api_error(
                    self.status_code(),
                    "unauthorized",
                    "a valid bearer token is required",
                    None,
                );
                response.headers_mut().insert(
                    actix_web::http::header::WWW_AUTHENTICATE,
                    actix_web::http::header::HeaderValue::from_static("Bearer"),
                );
                response
            }
            Self::TooManyRequests { retry_after } => {
                let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
                let mut response = api_error(
                    self.status_code(),
                    "too_many_requests",
                    format!("too many requests from this client; retry in {seconds} s"),
                    None,
                );
                response.headers_mut().insert(
                    actix_web::http::header::RETRY_AFTER,
                    actix_web::http::header::HeaderValue::from(seconds.max(1)),
                );
                response
            }
            Self::Conflict { code, message } => api_error(self.status_code(), code, message, None),
            Self::Unavailable(cause) => unavailable(cause),
            Self::Internal(cause) => internal_error(cause),
        }
    }
}

impl From<diesel::result::Error> for ApiError {
    fn from(err: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind, Error};
        match err {
            Error::NotFound => Self::NotFound { what: "resource" },
            Error::DatabaseError(DatabaseErrorKind::ClosedConnection, _) => {
                Self::Unavailable(anyhow::Error::new(err))
            }
            // A unique constraint the handler did not anticipate: the request conflicts with
            // existing data, which is the client's to resolve.
            Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
                Self::conflict("conflict", "the request conflicts with existing data")
            }
            other => Self::Internal(anyhow::Error::new(other)),
        }
    }
}

impl From<crate::db::PoolError> for ApiError {
    fn from(err: crate::db::PoolError) -> Self {
        Self::Unavailable(anyhow::Error::new(err).context("database pool"))
    }
}
