//! The broker over TLS, against a real server: a private RabbitMQ node ([`node`]) that listens
//! for `amqps://` only. The one connect function verifies the broker's certificate and name,
//! presents a client certificate to a node that requires one, and the consumer runtime works
//! unchanged over such a connection.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

// The harness lives in `tests/amqp_tls/` (no `main.rs` there, so cargo builds no second target).
#[path = "amqp_tls/node.rs"]
mod node;

use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicPublishOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Confirmation, Connection};
use node::{Node, Peers};
use shared::amqp::{Topology, connect, publish};
use shared::config::{AmqpSettings, AmqpTls};
use shared::envelope::{Envelope, SagaEvent};
use testkit::effects::{
    Behaviour, Ping, Recorder, RunningConsumer, create_effects_table, effect_count,
    fast_consumer_settings,
};
use testkit::{TestDb, eventually_async, init_tracing};

const DEADLINE: Duration = Duration::from_secs(20);

/// The error connecting with `settings`, which must fail.
async fn refusal(settings: &AmqpSettings) -> String {
    match connect(settings, "refused").await {
        Ok(_) => panic!("{} connected with {:?}", settings.url, settings.tls),
        Err(err) => format!("{err:#}"),
    }
}

/// Asserts that a broker requiring client certificates refused a connection, with `alert` when
/// the client read it. In TLS 1.3 the client finishes its handshake before the server checks the
/// client's certificate, so the server's alert races with its closing the socket: the client
/// sees either the alert or the connection reset. Either way it never got in (`refusal`).
fn assert_client_refused(err: &str, alert: &str) {
    let reset = err.contains("Connection reset by peer") || err.contains("end of file");
    assert!(err.contains(alert) || reset, "{err}");
}

/// Publishes one message on a confirm channel to a queue of its own and reads it back.
async fn round_trip(connection: &Connection) {
    let channel = publish::confirm_channel(connection).await.unwrap();
    let queue = channel
        .queue_declare(
            "".into(),
            lapin::options::QueueDeclareOptions {
                exclusive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let confirmation = channel
        .basic_publish(
            "".into(),
            queue.name().clone(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            b"over tls",
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(
        matches!(confirmation, Confirmation::Ack(None)),
        "{confirmation:?}"
    );
    let mut consumer = channel
        .basic_consume(
            queue.name().clone(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let delivery = tokio::time::timeout(DEADLINE, consumer.next())
        .await
        .expect("a delivery within the deadline")
        .expect("the consumer is open")
        .unwrap();
    assert_eq!(delivery.data, b"over tls");
    delivery
        .acker
        .ack(BasicAckOptions::default())
        .await
        .unwrap();
}

fn ca_only(path: &std::path::Path) -> AmqpTls {
    AmqpTls {
        ca: Some(path.to_owned()),
        ..AmqpTls::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_is_verified_and_carries_confirmed_messages_over_tls() {
    init_tracing();
    let node = Node::start(Peers::Anonymous).await;

    let verified = connect(&node.settings("127.0.0.1", ca_only(&node.ca)), "verified")
        .await
        .unwrap();
    round_trip(&verified).await;
    verified.close(200, "done".into()).await.unwrap();

    let err = refusal(&node.settings("127.0.0.1", ca_only(&node.other_ca))).await;
    assert!(err.contains("UnknownIssuer"), "{err}");
    // Without a CA the system's trust store is all there is, and it does not know the test CA.
    let err = refusal(&node.settings("127.0.0.1", AmqpTls::default())).await;
    assert!(err.contains("UnknownIssuer"), "{err}");
    // The certificate names 127.0.0.1 only: the host name is checked.
    let err = refusal(&node.settings("localhost", ca_only(&node.ca))).await;
    assert!(err.contains("not valid for name \"localhost\""), "{err}");
    // TLS options with a plain URL would send in the clear what the operator meant to encrypt.
    let plain = AmqpSettings {
        url: format!("amqp://guest:guest@127.0.0.1:{}/%2f", node.port),
        ..node.settings("127.0.0.1", ca_only(&node.ca))
    };
    let err = refusal(&plain).await;
    assert!(err.contains("not amqps://"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_requires_client_certificates_admits_only_those_its_ca_signed() {
    init_tracing();
    let node = Node::start(Peers::CertificateRequired).await;

    let err = refusal(&node.settings("127.0.0.1", ca_only(&node.ca))).await;
    assert_client_refused(&err, "CertificateRequired");
    let stranger = AmqpTls {
        client_cert: Some(node.stranger.cert.clone()),
        client_key: Some(node.stranger.key.clone()),
        ..ca_only(&node.ca)
    };
    let err = refusal(&node.settings("127.0.0.1", stranger)).await;
    assert_client_refused(&err, "UnknownCA");
    let mismatched = AmqpTls {
        client_key: Some(node.stranger.key.clone()),
        ..node.trusted()
    };
    let err = refusal(&node.settings("127.0.0.1", mismatched)).await;
    assert!(
        err.contains("KeyMismatch") && !err.contains("PRIVATE KEY"),
        "{err}"
    );

    let admitted = connect(&node.settings("127.0.0.1", node.trusted()), "mutual")
        .await
        .unwrap();
    round_trip(&admitted).await;
    admitted.close(200, "done".into()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consumer_runtime_works_over_mutual_tls() {
    init_tracing();
    let node = Node::start(Peers::CertificateRequired).await;
    let amqp = node.settings("127.0.0.1", node.trusted());
    let db = TestDb::new().await;
    create_effects_table(&db).await;
    let recorder = Recorder::new(Behaviour::Succeed);
    let handlers = || shared::consumer::Handlers::new().on::<Ping>(recorder.clone());
    let settings = fast_consumer_settings();

    // Queue and exchanges first, so the event published below is routed.
    let connection = connect(&amqp, "test publisher").await.unwrap();
    let channel = publish::confirm_channel(&connection).await.unwrap();
    let topology = Topology::new(amqp.prefix.clone());
    topology.declare_exchanges(&channel).await.unwrap();
    let probe = shared::consumer::Consumer::new(
        "pings",
        &amqp,
        db.pool.clone(),
        settings.clone(),
        handlers(),
        testkit::keys::reader(),
    );
    topology
        .declare_queue(&channel, &probe.queue_spec())
        .await
        .unwrap();
    let consumer = RunningConsumer::start("pings", &amqp, &db, settings, handlers());

    let envelope = Envelope::new(&Ping { n: 1 }, Some(1)).unwrap();
    let outcome = publish::publish_one(
        &channel,
        &publish::Outgoing {
            exchange: &topology.events_exchange(),
            routing_key: Ping::ROUTING_KEY,
            body: &testkit::keys::seal(&envelope),
            properties: BasicProperties::default()
                .with_message_id(envelope.event_id.to_string().as_str().into())
                .with_type(envelope.event_type.as_str().into())
                .with_delivery_mode(2),
            user_id: &shared::amqp::user_of(&amqp.url).unwrap(),
        },
    )
    .await;
    assert!(outcome.is_confirmed(), "{outcome:?}");
    eventually_async(DEADLINE, "the handler's effect", || async {
        (effect_count(&db).await == 1).then_some(())
    })
    .await;
    consumer.stop().await;
    assert_eq!(recorder.calls(), 1);
    let _ = connection.close(200, "done".into()).await;
}
