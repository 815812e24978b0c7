//! OpenTelemetry export: off by default, on with `OTEL_EXPORTER_OTLP_ENDPOINT`, and the spans a
//! service exports while handling a saga event belong to the saga's trace. Over `https://`, the
//! collector's certificate is verified against `OTEL_EXPORTER_OTLP_CERTIFICATE` and a client
//! certificate is shown to a collector that requires one.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::ffi::OsStr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lapin::BasicProperties;
use lapin::options::BasicPublishOptions;
use lapin::types::FieldTable;
use shared::amqp::headers;
use shared::envelope::{Envelope, SagaEvent};
use shared::events::{CouponProcessed, OrderCommand, OrderLine};
use testkit::otlp::Collector;
use testkit::pki::{Ca, IssuedFiles};
use testkit::{TestAmqp, TestDb, eventually_async, init_tracing};
use tokio::process::Child;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
/// The span that produced the event the test publishes.
const PARENT_SPAN_ID: &str = "00f067aa0ba902b7";
const DEADLINE: Duration = Duration::from_secs(30);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The real balance-service binary on a free port, exporting spans to `endpoint` with the
/// `otel` variables (a batch delay of 100 ms unless they set one), once it is ready; killed when
/// dropped.
async fn start_service(
    db: &TestDb,
    amqp: &TestAmqp,
    endpoint: &str,
    otel: &[(&str, &OsStr)],
) -> Child {
    amqp.remember_consumer(
        balance_service::NAME,
        &[
            Duration::from_millis(1000),
            Duration::from_millis(5000),
            Duration::from_millis(30000),
            Duration::from_millis(120000),
        ],
    );
    let port = free_port();
    let service = tokio::process::Command::new(env!("CARGO_BIN_EXE_balance-service"))
        .env("BALANCE_DATABASE_URL", &db.url)
        .env("BALANCE_PORT", port.to_string())
        .env("AMQP_URL", &amqp.url)
        .env("AMQP_PREFIX", &amqp.prefix)
        .env("EVENT_KEYS", "dev")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .envs(otel.iter().copied())
        .env("RUST_LOG", "info")
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    eventually_async(
        Duration::from_secs(30),
        "the service to be ready",
        || async {
            let ready = client
                .get(format!("http://127.0.0.1:{port}/ready"))
                .send()
                .await
                .ok()?;
            ready.status().is_success().then_some(())
        },
    )
    .await;
    service
}

/// Publishes a `CouponProcessed` of the saga whose trace is [`TRACE_ID`], the trace context in
/// the envelope and in the message headers, as the relay would.
async fn publish_in_trace(amqp: &TestAmqp) {
    let event = CouponProcessed {
        command: OrderCommand {
            order_id: 7,
            user_id: 3,
            items: vec![OrderLine {
                product_id: 1,
                quantity: 1,
            }],
            user_coupon_id: None,
        },
        items: vec![],
        total_amount: 10.into(),
        discount_amount: 0.into(),
        amount_to_pay: 10.into(),
    };
    let traceparent = format!("00-{TRACE_ID}-{PARENT_SPAN_ID}-01");
    let envelope = Envelope::new(&event, Some(7))
        .unwrap()
        .with_traceparent(Some(traceparent.clone()));
    let mut table = FieldTable::default();
    headers::set_str(&mut table, headers::TRACEPARENT, &traceparent);
    amqp.channel
        .basic_publish(
            amqp.topology.events_exchange().as_str().into(),
            CouponProcessed::ROUTING_KEY.into(),
            BasicPublishOptions::default(),
            &testkit::keys::seal(&envelope),
            BasicProperties::default()
                .with_message_id(envelope.event_id.to_string().as_str().into())
                .with_type(CouponProcessed::TYPE.into())
                .with_headers(table),
        )
        .await
        .unwrap();
}

/// Waits until a body the collector received carries [`TRACE_ID`].
async fn wait_for_trace(bodies: &Mutex<Vec<Vec<u8>>>) {
    // OTLP protobuf carries the trace id as its 16 raw bytes.
    let trace_bytes: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&TRACE_ID[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    eventually_async(
        Duration::from_secs(30),
        "a span of the saga's trace at the collector",
        || async {
            let bodies = bodies.lock().unwrap();
            bodies
                .iter()
                .any(|body| body.windows(16).any(|w| w == trace_bytes.as_slice()))
                .then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn spans_are_exported_in_the_sagas_trace_when_an_endpoint_is_set() {
    init_tracing();
    let db = TestDb::with_migrations(vec![balance_service::MIGRATIONS]).await;
    let amqp = TestAmqp::new().await;
    let collector = Collector::start(None).await;
    let endpoint = format!("http://127.0.0.1:{}", collector.port);
    let _service = start_service(&db, &amqp, &endpoint, &[]).await;
    publish_in_trace(&amqp).await;
    wait_for_trace(&collector.bodies).await;
}

#[tokio::test]
async fn spans_still_buffered_are_exported_when_the_service_stops() {
    init_tracing();
    let db = TestDb::with_migrations(vec![balance_service::MIGRATIONS]).await;
    let amqp = TestAmqp::new().await;
    let collector = Collector::start(None).await;
    let endpoint = format!("http://127.0.0.1:{}", collector.port);
    // Longer than the test: whatever arrives was flushed at shutdown.
    let otel = [("OTEL_BSP_SCHEDULE_DELAY", OsStr::new("600000"))];
    let mut service = start_service(&db, &amqp, &endpoint, &otel).await;
    publish_in_trace(&amqp).await;
    // Handled: user 3 has no money, so a BalanceProcessingFailed waits in the outbox.
    eventually_async(DEADLINE, "the event handled", || async {
        (testkit::effects::unpublished(&db).await == 1).then_some(())
    })
    .await;
    assert!(
        collector.bodies.lock().unwrap().is_empty(),
        "exported early"
    );

    let pid = service.id().unwrap().to_string();
    let term = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    assert!(term.unwrap().success(), "SIGTERM to the service");
    let status = tokio::time::timeout(DEADLINE, service.wait())
        .await
        .unwrap();
    assert!(status.unwrap().success());
    let spans = collector.spans();
    let consumed = spans
        .iter()
        .find(|span| span.name.starts_with("process ") && span.trace_id == TRACE_ID)
        .unwrap_or_else(|| panic!("no consumer span of the saga in {spans:#?}"));
    assert_eq!(consumed.parent_span_id.as_deref(), Some(PARENT_SPAN_ID));
    assert_eq!(consumed.service, balance_service::NAME);
}

/// A CA, the collector's certificate for 127.0.0.1 and a client certificate, as files in a
/// directory removed when dropped.
struct Pki {
    dir: PathBuf,
    ca_file: PathBuf,
    server: IssuedFiles,
    client: IssuedFiles,
}

impl Pki {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("saga-otlp-{}", testkit::unique_suffix()));
        std::fs::create_dir(&dir).unwrap();
        let ca = Ca::new("otlp test CA");
        Self {
            ca_file: ca.write(&dir.join("ca.crt")),
            server: ca.server(&["127.0.0.1"]).write(&dir, "collector"),
            client: ca.client("balance-service").write(&dir, "client"),
            dir,
        }
    }

    /// The collector's TLS: its certificate, and client certificates of the CA required.
    fn server_config(&self) -> rustls::ServerConfig {
        let provider = shared::tls::provider();
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(shared::tls::certificates(&self.ca_file).unwrap());
        let clients = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .unwrap();
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(clients)
            .with_single_cert(
                shared::tls::certificates(&self.server.cert).unwrap(),
                shared::tls::private_key(&self.server.key).unwrap(),
            )
            .unwrap()
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn spans_reach_a_collector_over_https_that_requires_a_client_certificate() {
    init_tracing();
    let db = TestDb::with_migrations(vec![balance_service::MIGRATIONS]).await;
    let amqp = TestAmqp::new().await;
    let pki = Pki::new();
    let collector = Collector::start(Some(pki.server_config())).await;
    let endpoint = format!("https://127.0.0.1:{}", collector.port);
    let otel = [
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", pki.ca_file.as_os_str()),
        (
            "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
            pki.client.cert.as_os_str(),
        ),
        ("OTEL_EXPORTER_OTLP_CLIENT_KEY", pki.client.key.as_os_str()),
    ];
    let _service = start_service(&db, &amqp, &endpoint, &otel).await;
    publish_in_trace(&amqp).await;
    wait_for_trace(&collector.bodies).await;
}

#[tokio::test]
async fn a_collector_whose_certificate_another_ca_signed_gets_no_span() {
    init_tracing();
    let db = TestDb::with_migrations(vec![balance_service::MIGRATIONS]).await;
    let amqp = TestAmqp::new().await;
    let pki = Pki::new();
    let collector = Collector::start(Some(pki.server_config())).await;
    let endpoint = format!("https://127.0.0.1:{}", collector.port);
    let other = Ca::new("unrelated CA").write(&pki.dir.join("other-ca.crt"));
    let otel = [
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", other.as_os_str()),
        (
            "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
            pki.client.cert.as_os_str(),
        ),
        ("OTEL_EXPORTER_OTLP_CLIENT_KEY", pki.client.key.as_os_str()),
    ];
    let _service = start_service(&db, &amqp, &endpoint, &otel).await;
    publish_in_trace(&amqp).await;
    let refused = collector.refused.clone();
    let reason = eventually_async(DEADLINE, "the exporter to refuse the collector", || async {
        refused.lock().unwrap().first().cloned()
    })
    .await;
    // The exporter hangs up mid-handshake (ureq sends no alert), before any request.
    assert!(reason.contains("handshake"), "{reason}");
    assert!(collector.bodies.lock().unwrap().is_empty());
}
