//! A query-string extractor whose errors name the parameter: actix's own says only that the
//! query did not deserialize, which leaves a client guessing which of its parameters was wrong.

use std::future::{Ready, ready};

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpRequest};
use serde::de::DeserializeOwned;

use super::json::JsonRejection;

/// `T` decoded from the query string.
#[derive(Debug)]
pub struct ValidQuery<T>(pub T);

impl<T> ValidQuery<T> {
    pub fn into_inner(self) -> T {
        self.0
    }
}

/// Decodes `raw` as `T`; a value that does not parse is a 400 naming its parameter.
pub fn decode<T: DeserializeOwned>(raw: &str) -> Result<T, JsonRejection> {
    let deserializer = serde_urlencoded::Deserializer::new(form_urlencoded::parse(raw.as_bytes()));
    serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let path = err.path().to_string();
        let cause = err.into_inner().to_string();
        // A duplicate or missing parameter is reported at the top, its name only in the words.
        let named = || cause.split('`').nth(1).map(str::to_owned);
        let field = if path == "." { named() } else { Some(path) };
        let message = match &field {
            Some(name) => format!("{name}: {cause}"),
            None => format!("invalid query string: {cause}"),
        };
        JsonRejection::new(StatusCode::BAD_REQUEST, "invalid_query", message, field)
    })
}

impl<T: DeserializeOwned> FromRequest for ValidQuery<T> {
    type Error = JsonRejection;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(decode(req.query_string()).map(ValidQuery))
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    struct Query {
        #[allow(dead_code)]
        page: Option<i64>,
        #[allow(dead_code)]
        user_id: Option<i64>,
    }

    #[test]
    fn a_value_that_does_not_parse_names_its_parameter() {
        let err = decode::<Query>("page=2&user_id=abc").expect_err("abc is no number");
        assert_eq!(err.field(), Some("user_id"), "{err}");
        let twice = decode::<Query>("page=2&page=3").expect_err("page twice");
        assert_eq!(twice.field(), Some("page"), "{twice}");
        assert!(decode::<Query>("page=2&user_id=7").is_ok());
        assert!(decode::<Query>("").is_ok());
    }
}
