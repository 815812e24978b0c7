//! One tracing setup for every binary: compact lines on stderr locally, JSON in containers
//! (`LOG_FORMAT=json`), `RUST_LOG` respected (default `info`), and OpenTelemetry export over
//! OTLP/HTTP when the standard `OTEL_EXPORTER_OTLP_ENDPOINT` is set (off otherwise), over TLS
//! for an `https://` endpoint ([`otlp_client`] reads the certificate variables).
//!
//! A saga's trace travels as a W3C `traceparent`: in the HTTP request that created the order,
//! in every envelope and AMQP header after it. [`continue_trace`] makes a span a child of that
//! context, so all spans of one saga share one trace id across services; the id is also a span
//! field (`trace_id`), hence in every log line of the saga.

mod otlp_client;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Installs the global subscriber. Calling it twice is harmless (the second call is ignored),
/// which lets tests call it from every test.
pub fn init(service: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("LOG_FORMAT").is_ok_and(|format| format.eq_ignore_ascii_case("json"));
    // Logs go to stderr in every binary: stdout is for what a command prints (`--json`
    // output piped to jq, the addresses `sagactl up` lists).
    let fmt = if json {
        tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_writer(std::io::stderr)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .compact()
            .with_writer(std::io::stderr)
            .boxed()
    };
    let otel =
        otlp_tracer(service).map(|tracer| tracing_opentelemetry::layer().with_tracer(tracer));
    let result = tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .with(otel)
        .try_init();
    if result.is_ok() {
        tracing::debug!(service, "telemetry initialised");
    }
}

/// The OTLP tracer when `OTEL_EXPORTER_OTLP_ENDPOINT` is set; the exporter reads the standard
/// `OTEL_EXPORTER_OTLP_*` variables itself, but for TLS ([`otlp_client`]).
fn otlp_tracer(service: &str) -> Option<opentelemetry_sdk::trace::Tracer> {
    use opentelemetry_otlp::WithHttpConfig;
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
        .ok()
        .filter(|e| !e.trim().is_empty())?;
    let client = match otlp_client::OtlpClient::from_env() {
        Ok(client) => client,
        Err(err) => {
            eprintln!("OTLP export to {endpoint} disabled: {err}");
            return None;
        }
    };
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .build()
    {
        Ok(exporter) => exporter,
        Err(err) => {
            eprintln!("OTLP export to {endpoint} disabled: {err}");
            return None;
        }
    };
    let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(service.to_owned())
                .build(),
        )
        .build();
    opentelemetry::global::set_tracer_provider(provider.clone());
    Some(provider.tracer(service.to_owned()))
}

/// Makes `span` part of the trace `traceparent` names (a no-op without OTLP export or with a
/// malformed value).
pub fn continue_trace(span: &tracing::Span, traceparent: Option<&str>) {
    let Some(traceparent) = traceparent.filter(|tp| is_traceparent(tp)) else {
        return;
    };
    let carrier =
        std::collections::HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let context = TraceContextPropagator::new().extract(&carrier);
    let _ = span.set_parent(context);
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
