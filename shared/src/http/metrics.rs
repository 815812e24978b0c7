//! HTTP metrics middleware and the `/metrics` route.
//!
//! Requests are labelled by route *pattern* (`/orders/{id}`), never by raw path, so the label
//! set stays bounded; unmatched paths count as `unmatched`.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, web};

use crate::metrics::SERVICE;

/// The service name the middleware labels with.
#[derive(Debug, Clone)]
pub struct ServiceName(pub String);

/// Counts and times every request.
pub async fn track(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let service = request
        .app_data::<web::Data<ServiceName>>()
        .map_or_else(|| "unknown".to_owned(), |name| name.0.clone());
    let route = request
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().as_str().to_owned();
    let response = next.call(request).await;
    let status = match &response {
        Ok(response) => response.status().as_u16(),
        Err(err) => err.as_response_error().status_code().as_u16(),
    };
    let elapsed = started.elapsed().as_secs_f64();
    metrics::counter!("http_requests_total", SERVICE => service.clone(), "route" => route.clone(), "method" => method.clone(), "status" => status.to_string())
        .increment(1);
    metrics::histogram!("http_request_duration_seconds", SERVICE => service, "route" => route, "method" => method)
        .record(elapsed);
    response
}

/// `GET /metrics`: this service's registry in the Prometheus text format.
pub async fn render(service: web::Data<ServiceName>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(crate::metrics::handle(&service.0).render())
}
