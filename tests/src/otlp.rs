//! A minimal OTLP/HTTP collector: answers 200 to every POST and keeps the bodies, over plain
//! TCP or over TLS with a certificate the test made (optionally requiring a client
//! certificate); a TLS handshake that fails is kept as well, for the tests that expect one.
//! [`Collector::spans`] decodes what it received (OTLP protobuf) into [`ExportedSpan`]s.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
pub use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message as _;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

pub type Log = Arc<Mutex<Vec<Vec<u8>>>>;

/// One span as the exporter sent it; ids in lowercase hex.
#[derive(Debug, Clone)]
pub struct ExportedSpan {
    pub trace_id: String,
    pub span_id: String,
    /// `None` for a root span.
    pub parent_span_id: Option<String>,
    pub name: String,
    pub kind: SpanKind,
    /// String, integer and boolean attributes, as text.
    pub attributes: HashMap<String, String>,
    /// The spans it links to: (trace id, span id).
    pub links: Vec<(String, String)>,
    /// The status code: 0 unset, 1 ok, 2 error.
    pub status: i32,
    /// The `service.name` of its resource.
    pub service: String,
}

impl ExportedSpan {
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

pub struct Collector {
    pub port: u16,
    /// The request bodies, in arrival order.
    pub bodies: Log,
    /// Why TLS handshakes failed.
    pub refused: Arc<Mutex<Vec<String>>>,
}

impl Collector {
    /// Listens on a free port; with `tls`, every connection is a TLS server session first.
    pub async fn start(tls: Option<rustls::ServerConfig>) -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the collector");
        let collector = Collector {
            port: listener.local_addr().expect("its address").port(),
            bodies: Log::default(),
            refused: Arc::default(),
        };
        let (sink, refused) = (collector.bodies.clone(), collector.refused.clone());
        let acceptor = tls.map(|config| TlsAcceptor::from(Arc::new(config)));
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let (sink, refused, acceptor) = (sink.clone(), refused.clone(), acceptor.clone());
                tokio::spawn(async move {
                    match acceptor {
                        None => serve(socket, sink).await,
                        Some(acceptor) => match acceptor.accept(socket).await {
                            Ok(stream) => serve(stream, sink).await,
                            Err(err) => lock(&refused).push(err.to_string()),
                        },
                    }
                });
            }
        });
        collector
    }

    /// Every span received so far; panics on a body that is no OTLP trace export.
    pub fn spans(&self) -> Vec<ExportedSpan> {
        let bodies = lock(&self.bodies);
        bodies
            .iter()
            .flat_map(|body| {
                let request = ExportTraceServiceRequest::decode(body.as_slice())
                    .expect("an OTLP/HTTP protobuf trace export");
                request.resource_spans
            })
            .flat_map(|resource_spans| {
                let service = resource_spans
                    .resource
                    .iter()
                    .flat_map(|resource| &resource.attributes)
                    .find(|kv| kv.key == "service.name")
                    .and_then(|kv| text(kv.value.as_ref()))
                    .unwrap_or_default();
                resource_spans
                    .scope_spans
                    .into_iter()
                    .flat_map(|scope| scope.spans)
                    .map(move |span| ExportedSpan {
                        trace_id: hex(&span.trace_id),
                        span_id: hex(&span.span_id),
                        parent_span_id: (!span.parent_span_id.is_empty())
                            .then(|| hex(&span.parent_span_id)),
                        kind: SpanKind::try_from(span.kind).unwrap_or(SpanKind::Unspecified),
                        attributes: attributes(&span.attributes),
                        links: span
                            .links
                            .iter()
                            .map(|link| (hex(&link.trace_id), hex(&link.span_id)))
                            .collect(),
                        status: span.status.map_or(0, |status| status.code),
                        service: service.clone(),
                        name: span.name,
                    })
            })
            .collect()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(value: Option<&AnyValue>) -> Option<String> {
    match value?.value.as_ref()? {
        any_value::Value::StringValue(text) => Some(text.clone()),
        any_value::Value::IntValue(n) => Some(n.to_string()),
        any_value::Value::BoolValue(b) => Some(b.to_string()),
        any_value::Value::DoubleValue(x) => Some(x.to_string()),
        _ => None,
    }
}

fn attributes(pairs: &[KeyValue]) -> HashMap<String, String> {
    pairs
        .iter()
        .filter_map(|kv| Some((kv.key.clone(), text(kv.value.as_ref())?)))
        .collect()
}

/// Reads HTTP/1.1 requests off `socket`, keeping each body and answering 200.
async fn serve(mut socket: impl AsyncRead + AsyncWrite + Unpin, sink: Log) {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let Ok(read) = socket.read(&mut chunk).await else {
            return;
        };
        if read == 0 {
            return;
        }
        buffer.extend_from_slice(&chunk[..read]);
        let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buffer[..end]).to_lowercase();
        let length: usize = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        if buffer.len() >= end + 4 + length {
            lock(&sink).push(buffer[end + 4..end + 4 + length].to_vec());
            buffer.drain(..end + 4 + length);
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                .await;
        }
    }
}

/// The data behind `mutex`, even if a panicking test thread poisoned it.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
