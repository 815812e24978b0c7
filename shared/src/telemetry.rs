//! One tracing setup for every binary: compact lines locally, JSON in containers
//! (`LOG_FORMAT=json`), `RUST_LOG` respected (default `info`).
//!
//! The metrics exporter is installed by each binary's metrics module; the `metrics` facade
//! calls made here and in the consumer runtime are no-ops until one is.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Calling it twice is harmless (the second call is ignored),
/// which lets tests call it from every test.
pub fn init(service: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|format| format.eq_ignore_ascii_case("json"));
    let result = if json {
        tracing_subscriber::fmt()
            .json()
            .with_current_span(true)
            .with_env_filter(filter)
            .try_init()
    } else {
        tracing_subscriber::fmt()
            .compact()
            .with_env_filter(filter)
            .try_init()
    };
    if result.is_ok() {
        tracing::debug!(service, "telemetry initialised");
    }
}

/// A new W3C `traceparent` (version 00, sampled) with random trace and span ids.
pub fn new_traceparent() -> String {
    let trace = uuid::Uuid::new_v4().simple().to_string();
    let span = &uuid::Uuid::new_v4().simple().to_string()[..16];
    format!("00-{trace}-{span}-01")
}

/// Whether `value` is a well-formed W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`, ids not
/// all zero).
pub fn is_traceparent(value: &str) -> bool {
    let parts: Vec<&str> = value.split('-').collect();
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    parts.len() == 4
        && hex(parts[0], 2)
        && hex(parts[1], 32)
        && hex(parts[2], 16)
        && hex(parts[3], 2)
        && parts[1].bytes().any(|b| b != b'0')
        && parts[2].bytes().any(|b| b != b'0')
}

/// The trace id of a `traceparent`, for span fields and timelines.
pub fn trace_id(traceparent: &str) -> Option<&str> {
    is_traceparent(traceparent)
        .then(|| traceparent.split('-').nth(1))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparents_are_generated_and_checked() {
        let fresh = new_traceparent();
        assert!(is_traceparent(&fresh), "{fresh}");
        assert_eq!(trace_id(&fresh).map(str::len), Some(32));
        assert!(is_traceparent(
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        ));
        assert!(!is_traceparent(
            "00-00000000000000000000000000000000-b7ad6b7169203331-01"
        ));
        assert!(!is_traceparent("garbage"));
    }
}
