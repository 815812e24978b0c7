//! The one error body: `{"error":{"code":"...","message":"...","field":"..."}}`.
//!
//! 4xx bodies are stable and name the field at fault. 5xx bodies say only that the request
//! failed; the cause goes to the log, never to the client.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use serde::Serialize;

#[derive(Debug, Serialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize)]
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
