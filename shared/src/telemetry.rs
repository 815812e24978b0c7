//! One tracing setup for every binary: compact lines on stderr locally, JSON in containers
//! (`LOG_FORMAT=json`), `RUST_LOG` respected (default `info`), and OpenTelemetry export over
//! OTLP/HTTP when the standard `OTEL_EXPORTER_OTLP_ENDPOINT` is set (off otherwise), over TLS
//! for an `https://` endpoint ([`otlp_client`] reads the certificate variables).
//!
//! A saga's trace travels as a W3C `traceparent`: in the HTTP request that created the order,
//! in every envelope and AMQP header after it. Each event carries the context of the span that
//! produced it (its `create` span, [`messaging`]), and the span that consumes it is that span's
//! child ([`continue_trace`]), so one saga is one tree of spans across services, rooted in the
//! HTTP server span of the request that started it ([`http`]). The trace id is also a span field
//! (`trace_id`), hence in every log line of the saga. [`shutdown`] exports what is still
//! buffered; every binary calls it on its way out.

pub mod http;
pub mod messaging;
mod otlp_client;

use std::sync::OnceLock;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanContext, TraceContextExt as _, TracerProvider as _};
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
    let tracer = provider.tracer(service.to_owned());
    // Kept for [`shutdown`]: the global provider offers no flush since opentelemetry 0.28.
    if PROVIDER.set(provider.clone()).is_ok() {
        opentelemetry::global::set_tracer_provider(provider);
    }
    Some(tracer)
}

/// The provider [`init`] installed, if it exports.
static PROVIDER: OnceLock<opentelemetry_sdk::trace::SdkTracerProvider> = OnceLock::new();

/// Exports the spans still buffered and stops exporting (a no-op without OTLP export). Called
/// once a binary's work has stopped: the batch processor would otherwise drop up to a batch
/// delay of spans, the end of every saga in flight among them. Blocks for up to 5 s.
pub fn shutdown() {
    if let Some(provider) = PROVIDER.get()
        && let Err(err) = provider.shutdown()
    {
        eprintln!("OTLP export: flushing spans on shutdown failed: {err}");
    }
}

/// Makes `span` a child of the span `traceparent` names (a no-op without OTLP export, with a
/// malformed value, or once `span` was entered).
pub fn continue_trace(span: &tracing::Span, traceparent: Option<&str>) {
    if let Some(remote) = traceparent.and_then(span_context) {
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    }
}

/// Adds a link from `span` to the span `traceparent` names (a no-op without OTLP export or with
/// a malformed value).
pub fn link(span: &tracing::Span, traceparent: Option<&str>) {
    if let Some(remote) = traceparent.and_then(span_context) {
        span.add_link(remote);
    }
}

/// The span context a well-formed `traceparent` names.
fn span_context(traceparent: &str) -> Option<SpanContext> {
    if !is_traceparent(traceparent) {
        return None;
    }
    let carrier =
        std::collections::HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let context = TraceContextPropagator::new().extract(&carrier);
    let remote = context.span().span_context().clone();
    remote.is_valid().then_some(remote)
}

/// The W3C `traceparent` of `span` when it is exported (`None` without OTLP export): what a
/// message or a request caused by `span` carries so that its spans become children of `span`.
/// Starts `span` if it was not yet: its parent is fixed from then on.
pub fn traceparent_of(span: &tracing::Span) -> Option<String> {
    let context = span.context();
    let span = context.span();
    let span_context = span.span_context();
    span_context.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            span_context.trace_id(),
            span_context.span_id(),
            span_context.trace_flags().to_u8()
        )
    })
}

/// [`traceparent_of`] the current span.
pub fn current_traceparent() -> Option<String> {
    traceparent_of(&tracing::Span::current())
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
