//! Who may call the admin API: the bearer token, compared in constant time (of equal-length
//! digests, so not even its length leaks), and a per-client rate limit on every admin request,
//! so that guessing the token is slow even when it is weak.
//!
//! The client is the TCP peer: behind a proxy every caller shares the proxy's budget, which is
//! why the admin API belongs on an internal port, not behind the public gateway.

use std::net::{IpAddr, Ipv4Addr};
use std::num::NonZeroU32;
use std::sync::Arc;

use actix_web::HttpRequest;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use ring::digest::{SHA256, digest};
use secrecy::{ExposeSecret, SecretString};
use shared::http::ApiError;
use subtle::ConstantTimeEq;

/// Clients tracked before the limiter forgets those whose budget is full again.
const TRACKED_CLIENTS: usize = 10_000;

/// The admin token: never printed, compared in constant time.
#[derive(Clone)]
pub struct AdminToken(Arc<SecretString>);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

impl AdminToken {
    /// `None` for an empty or blank token: an admin API that anyone could open stays off.
    pub fn new(token: String) -> Option<Self> {
        (!token.trim().is_empty()).then(|| Self(Arc::new(SecretString::from(token))))
    }

    fn matches(&self, presented: &str) -> bool {
        let expected = digest(&SHA256, self.0.expose_secret().as_bytes());
        let presented = digest(&SHA256, presented.as_bytes());
        expected.as_ref().ct_eq(presented.as_ref()).into()
    }
}

/// Admin requests allowed per client and minute (a burst of as many, refilled evenly).
#[derive(Clone)]
pub struct RateLimit(Arc<DefaultKeyedRateLimiter<IpAddr>>);

impl std::fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RateLimit")
    }
}

impl RateLimit {
    pub fn per_minute(requests: NonZeroU32) -> Self {
        Self(Arc::new(RateLimiter::keyed(Quota::per_minute(requests))))
    }

    fn check(&self, client: IpAddr) -> Result<(), ApiError> {
        if self.0.len() > TRACKED_CLIENTS {
            self.0.retain_recent();
        }
        self.0.check_key(&client).map_err(|not_until| {
            let retry_after = not_until.wait_time_from(DefaultClock::default().now());
            ApiError::TooManyRequests { retry_after }
        })
    }
}

/// Lets `request` through if its client is within the rate limit and it carries `token`:
/// 429 past the limit (whatever the token), else 401 for a missing or wrong token.
pub fn authorize(
    request: &HttpRequest,
    token: &AdminToken,
    limit: &RateLimit,
) -> Result<(), ApiError> {
    let client = request
        .peer_addr()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |peer| peer.ip());
    limit.check(client)?;
    match bearer(request) {
        Some(presented) if token.matches(presented) => Ok(()),
        _ => Err(ApiError::Unauthorized),
    }
}

/// The credentials of an `Authorization: Bearer <token>` header; the scheme is
/// case-insensitive (RFC 7235).
fn bearer(request: &HttpRequest) -> Option<&str> {
    let value = request
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .trim();
    let (scheme, credentials) = value.split_once(char::is_whitespace)?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| credentials.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_matches_only_itself_and_never_prints() {
        let token = AdminToken::new("s3cret".into()).expect("a token");
        assert!(token.matches("s3cret"));
        assert!(!token.matches("s3cre") && !token.matches("s3cret ") && !token.matches(""));
        assert!(!format!("{token:?}").contains("s3cret"));
        assert!(AdminToken::new("  ".into()).is_none());
    }

    #[test]
    fn the_scheme_is_case_insensitive() {
        for header in ["Bearer t", "bearer t", "BEARER   t", " Bearer t "] {
            let request = actix_web::test::TestRequest::default()
                .insert_header(("authorization", header))
                .to_http_request();
            assert_eq!(bearer(&request), Some("t"), "{header:?}");
        }
        let basic = actix_web::test::TestRequest::default()
            .insert_header(("authorization", "Basic t"))
            .to_http_request();
        assert_eq!(bearer(&basic), None);
    }

    #[test]
    fn a_client_past_its_budget_waits_whatever_it_presents() {
        let limit = RateLimit::per_minute(NonZeroU32::new(2).expect("2"));
        let client = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert!(limit.check(client).is_ok() && limit.check(client).is_ok());
        match limit.check(client) {
            Err(ApiError::TooManyRequests { retry_after }) => assert!(retry_after.as_secs() <= 30),
            other => panic!("{other:?}"),
        }
        assert!(limit.check(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1))).is_ok());
    }
}
