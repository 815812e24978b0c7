//! The server span of every HTTP request, by the OpenTelemetry HTTP conventions: kind `SERVER`,
//! named `{method} {route pattern}` (`POST /orders`, `GET /orders/{id}`; the method alone when
//! no route matched), with `http.request.method`, `http.route`, `url.path`, `url.scheme` and
//! `http.response.status_code`, and an error status on a 5xx. It is a child of the caller's
//! `traceparent` when one came with the request, else the root of a new trace; whatever the
//! handler does (an order's first event among it) happens inside it.
//!
//! Probes and scrapes (`/health`, `/ready`, `/metrics`) get the span at debug level: arriving
//! every few seconds from every instance they would bury the sagas, and the default filter
//! (`info`) keeps them out of the export.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use tracing::Instrument;

/// Paths whose spans are at debug level.
const OPERATOR_PATHS: [&str; 3] = ["/health", "/ready", "/metrics"];

macro_rules! server_span {
    ($level:expr, $name:expr, $method:expr, $route:expr, $path:expr, $scheme:expr) => {
        tracing::span!(
            $level,
            "HTTP request",
            otel.name = %$name,
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            http.request.method = %$method,
            http.route = $route,
            url.path = %$path,
            url.scheme = %$scheme,
            http.response.status_code = tracing::field::Empty,
        )
    };
}

/// Runs the rest of the chain inside the request's server span.
pub async fn trace(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let method = request.method().as_str().to_owned();
    let route = request.match_pattern();
    let name = match &route {
        Some(route) => format!("{method} {route}"),
        None => method.clone(),
    };
    let path = request.path().to_owned();
    let scheme = request.connection_info().scheme().to_owned();
    let route = route.as_deref();
    let span = if OPERATOR_PATHS.contains(&path.as_str()) {
        server_span!(tracing::Level::DEBUG, name, method, route, path, scheme)
    } else {
        server_span!(tracing::Level::INFO, name, method, route, path, scheme)
    };
    let traceparent = request
        .headers()
        .get(crate::amqp::headers::TRACEPARENT)
        .and_then(|value| value.to_str().ok());
    super::continue_trace(&span, traceparent);
    let response = next.call(request).instrument(span.clone()).await;
    let status = match &response {
        Ok(response) => response.status(),
        Err(err) => err.as_response_error().status_code(),
    };
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "error");
    }
    response
}
