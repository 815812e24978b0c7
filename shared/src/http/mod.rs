//! What every service's HTTP layer shares: the error body (also for routing errors), a JSON
//! extractor that names the failing field, health and readiness routes, pagination and binding a
//! listener.

pub mod error;
pub mod fallback;
pub mod health;
pub mod json;
pub mod metrics;
pub mod openapi;
pub mod page;
pub mod query;

use std::net::TcpListener;

use anyhow::Context;

pub use error::{ApiError, ErrorBody, api_error};
pub use json::{ValidJson, configure_extractors};
pub use page::Page;
pub use query::ValidQuery;

/// `raw` if it is a positive id, else a 422 naming `field`.
pub fn positive_id(field: &str, raw: i64) -> Result<i64, ApiError> {
    if raw > 0 {
        Ok(raw)
    } else {
        Err(ApiError::validation(field, "must be a positive integer"))
    }
}

/// Binds `host:port` (port 0 picks a free one) and returns the listener and its real port.
pub fn bind(host: &str, port: u16) -> anyhow::Result<(TcpListener, u16)> {
    let listener =
        TcpListener::bind((host, port)).with_context(|| format!("binding {host}:{port}"))?;
    let port = listener.local_addr()?.port();
    Ok((listener, port))
}
