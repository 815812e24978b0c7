//! A JSON body extractor whose errors name the field: a 400 with
//! `{"error":{"code":"invalid_json","field":"items[0].quantity",...}}` instead of actix's plain
//! text.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::web::Bytes;
use actix_web::{FromRequest, HttpRequest, HttpResponse, ResponseError};
use serde::de::DeserializeOwned;

use super::error::api_error;

/// Bodies larger than this are refused: no request of ours comes close.
const MAX_BODY: usize = 256 * 1024;

/// `T` decoded from a JSON body.
#[derive(Debug)]
pub struct ValidJson<T>(pub T);

/// Why a body was refused.
#[derive(Debug)]
pub struct JsonRejection {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<String>,
}

impl JsonRejection {
    pub(super) fn new(
        status: StatusCode,
        code: &'static str,
        message: String,
        field: Option<String>,
    ) -> Self {
        Self {
            status,
            code,
            message,
            field,
        }
    }
}

impl JsonRejection {
    /// The request field at fault, when there is one.
    pub fn field(&self) -> Option<&str> {
        self.field.as_deref()
    }
}

impl std::fmt::Display for JsonRejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl ResponseError for JsonRejection {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        api_error(self.status, self.code, &self.message, self.field.as_deref())
    }
}

/// Decodes `bytes` as `T`, naming the field of the first error. A string holding a NUL
/// character is refused with a 422 naming its field: PostgreSQL cannot store the byte, so it
/// would otherwise surface as a 500 at the first insert.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, JsonRejection> {
    if let Some(field) = nul_field(bytes) {
        return Err(JsonRejection {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "validation_failed",
            message: format!("{field}: must not contain a NUL character"),
            field: Some(field),
        });
    }
    let deserializer = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let (field, message) = match missing_field(&inner.to_string()) {
            // A missing field is reported at its parent's path; name the field itself.
            Some(name) if path == "." => (Some(name.to_owned()), format!("{name} is required")),
            Some(name) => (
                Some(format!("{path}.{name}")),
                format!("{path}.{name} is required"),
            ),
            None if path == "." => (
                None,
                format!("invalid JSON body: {}", strip_position(&inner.to_string())),
            ),
            None => (
                Some(path.clone()),
                format!("{path}: {}", strip_position(&inner.to_string())),
            ),
        };
        JsonRejection {
            status: StatusCode::BAD_REQUEST,
            code: "invalid_json",
            message,
            field,
        }
    })
}

/// The path (`items[0].name`, or the key itself for a key) of the first string holding a NUL.
/// JSON can only carry NUL as the escape `\u0000`, so bodies without one skip the walk.
fn nul_field(bytes: &[u8]) -> Option<String> {
    let has_escape = bytes
        .windows(6)
        .any(|w| w[..2] == *b"\\u" && w[2..].iter().all(|b| *b == b'0'));
    if !has_escape {
        return None;
    }
    let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    find_nul(&value, String::new())
}

fn find_nul(value: &serde_json::Value, path: String) -> Option<String> {
    use serde_json::Value;
    let child = |key: &str| match path.is_empty() {
        true => key.to_owned(),
        false => format!("{path}.{key}"),
    };
    match value {
        Value::String(text) if text.contains('\0') => Some(if path.is_empty() {
            ".".to_owned()
        } else {
            path
        }),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| find_nul(item, format!("{path}[{i}]"))),
        Value::Object(fields) => fields.iter().find_map(|(key, item)| {
            if key.contains('\0') {
                return Some(child(&key.replace('\0', "\\u0000")));
            }
            find_nul(item, child(key))
        }),
        _ => None,
    }
}

fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.split('`').next()
}

/// serde_json appends "at line 1 column 17"; the field path says more.
fn strip_position(message: &str) -> &str {
    message.split(" at line ").next().unwrap_or(message)
}

impl<T: DeserializeOwned + 'static> FromRequest for ValidJson<T> {
    type Error = JsonRejection;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let is_json = req
            .headers()
            .get(actix_web::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|v| v.starts_with("application/json"));
        let body = Bytes::from_request(req, payload);
        Box::pin(async move {
            if !is_json {
                return Err(JsonRejection {
                    status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    code: "unsupported_media_type",
                    message: "send the body as application/json".into(),
                    field: None,
                });
            }
            let bytes = body.await.map_err(|err| JsonRejection {
                status: StatusCode::BAD_REQUEST,
                code: "invalid_body",
                message: format!("cannot read the body: {err}"),
                field: None,
            })?;
            if bytes.len() > MAX_BODY {
                return Err(JsonRejection {
                    status: StatusCode::PAYLOAD_TOO_LARGE,
                    code: "body_too_large",
                    message: format!("the body exceeds {MAX_BODY} bytes"),
                    field: None,
                });
            }
            decode(&bytes).map(ValidJson)
        })
    }
}

/// Path and query extractor errors as the same JSON body (actix answers plain text otherwise).
pub fn configure_extractors(cfg: &mut actix_web::web::ServiceConfig) {
    use actix_web::web::{PathConfig, QueryConfig};
    cfg.app_data(PathConfig::default().error_handler(|err, req| {
        // Every route of ours has one path parameter, so the one that failed is that one.
        let mut params = req.match_info().iter();
        let field = match (params.next(), params.next()) {
            (Some((name, _)), None) => Some(name.to_owned()),
            _ => None,
        };
        let message = match &field {
            Some(name) => format!("{name}: {err}"),
            None => format!("invalid path parameter: {err}"),
        };
        JsonRejection {
            status: StatusCode::BAD_REQUEST,
            code: "invalid_path",
            message,
            field,
        }
        .into()
    }))
    .app_data(QueryConfig::default().error_handler(|err, _req| {
        let message = err.to_string();
        let field = message
            .split('`')
            .nth(1)
            .filter(|_| message.contains("field"))
            .map(str::to_owned);
        JsonRejection {
            status: StatusCode::BAD_REQUEST,
            code: "invalid_query",
            message: format!("invalid query string: {message}"),
            field,
        }
        .into()
    }));
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Line {
        product_id: i64,
        quantity: i32,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Order {
        user_id: i64,
        items: Vec<Line>,
    }

    #[test]
    fn errors_name_the_field() {
        let err = decode::<Order>(br#"{"user_id":1,"items":[{"product_id":1,"quantity":"x"}]}"#)
            .unwrap_err();
        assert_eq!(err.field.as_deref(), Some("items[0].quantity"));
        let err = decode::<Order>(br#"{"items":[]}"#).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("user_id"));
        let err = decode::<Order>(br#"{"user_id":1,"items":[{"quantity":1}]}"#).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("items[0].product_id"));
        let err = decode::<Order>(
            br#"{"user_id":1,"items":[{"product_id":1,"quantity":1,"note":"a\u0000b"}]}"#,
        )
        .unwrap_err();
        assert_eq!(err.field.as_deref(), Some("items[0].note"));
        assert_eq!(err.status, StatusCode::UNPROCESSABLE_ENTITY);
        // An escaped backslash followed by `u0000` is text, not a NUL.
        assert!(decode::<serde_json::Value>(br#"{"name":"a\\u0000b"}"#).is_ok());
        let err = decode::<Order>(b"not json").unwrap_err();
        assert_eq!(err.field, None);
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
    }
}
