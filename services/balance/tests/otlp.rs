//! OpenTelemetry export: off by default, on with `OTEL_EXPORTER_OTLP_ENDPOINT`, and the spans a
//! service exports while handling a saga event belong to the saga's trace.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::sync::{Arc, Mutex};
use std::time::Duration;

use lapin::BasicProperties;
use lapin::options::BasicPublishOptions;
use lapin::types::FieldTable;
use shared::amqp::headers;
use shared::envelope::{Envelope, SagaEvent};
use shared::events::{CouponProcessed, OrderCommand, OrderLine};
use testkit::{TestAmqp, TestDb, eventually_async, init_tracing};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::process::Child;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// A minimal OTLP/HTTP collector: answers 200 to every POST and keeps the bodies.
async fn collector() -> (u16, Arc<Mutex<Vec<Vec<u8>>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let bodies: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let sink = bodies.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let sink = sink.clone();
            tokio::spawn(async move {
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
                        sink.lock()
                            .unwrap()
                            .push(buffer[end + 4..end + 4 + length].to_vec());
                        buffer.drain(..end + 4 + length);
                        let _ = socket
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                            .await;
                    }
                }
            });
        }
    });
    (port, bodies)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The real balance-service binary on a free port, exporting spans to the collector on
/// `collector_port`, once it is ready; killed when dropped.
async fn start_service(db: &TestDb, amqp: &TestAmqp, collector_port: u16) -> Child {
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
        .env(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            format!("http://127.0.0.1:{collector_port}"),
        )
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
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
    let traceparent = format!("00-{TRACE_ID}-00f067aa0ba902b7-01");
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
    let (collector_port, bodies) = collector().await;
    let _service = start_service(&db, &amqp, collector_port).await;
    publish_in_trace(&amqp).await;
    wait_for_trace(&bodies).await;
}
