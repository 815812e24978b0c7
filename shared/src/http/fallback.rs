//! Every error a client sees is the JSON error object, also those no handler wrote: an unknown
//! path (404), a known path with another method (405), a body actix refused on its own. Such
//! responses arrive here with an empty body and get the body their status calls for.

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::middleware::Next;

use super::error::api_error;

/// Gives an empty 4xx/5xx response the JSON error body; every other response passes untouched.
pub async fn json_errors(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let method = request.method().clone();
    let path = request.path().to_owned();
    let response = next.call(request).await?;
    let status = response.status();
    let empty = matches!(
        response.response().body().size(),
        BodySize::None | BodySize::Sized(0)
    );
    if !(empty && (status.is_client_error() || status.is_server_error())) {
        return Ok(response.map_into_boxed_body());
    }
    let allow = response.headers().get(header::ALLOW).cloned();
    let (code, message) = describe(status, method.as_str(), &path);
    let mut body = api_error(status, code, message, None);
    if let Some(allow) = allow {
        body.headers_mut().insert(header::ALLOW, allow);
    }
    Ok(response.into_response(body))
}

fn describe(status: StatusCode, method: &str, path: &str) -> (&'static str, String) {
    // The path is echoed only as far as it is printable, and bounded: it is client input.
    let shown: String = path.chars().filter(|c| !c.is_control()).take(200).collect();
    match status {
        StatusCode::NOT_FOUND => ("not_found", format!("no route for {method} {shown}")),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            format!("{method} is not allowed on {shown}"),
        ),
        other if other.is_server_error() => ("internal_error", "the request failed".to_owned()),
        other => (
            "request_refused",
            other
                .canonical_reason()
                .unwrap_or("the request was refused")
                .to_owned(),
        ),
    }
}
