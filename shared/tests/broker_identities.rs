//! Least-privilege broker identities against the real broker: each identity in a fresh vhost
//! set up by `shared::broker::setup`, doing what its process does (which works) and what it
//! must not (which the broker refuses).

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::time::Duration;

use lapin::options::{BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection};
use shared::amqp::publish::{Outcome, Outgoing, confirm_channel, publish_one};
use shared::amqp::{QueueSpec, connect, headers};
use shared::broker::Role;
use shared::dlq::{Filter, Operator};
use shared::envelope::{Envelope, SagaEvent};
use testkit::broker::TestBroker;
use testkit::effects::{
    Behaviour, Ping, Recorder, RunningConsumer, create_effects_table, fast_consumer_settings,
};
use testkit::{TestAmqp, TestDb, unique_suffix};

const DEADLINE: Duration = Duration::from_secs(20);

fn consumer(name: &str) -> Role {
    Role::Consumer(name.to_owned())
}

/// `name`'s queues as its consumer declares them at startup, under its own identity.
fn spec(name: &str) -> QueueSpec {
    QueueSpec::new(
        name,
        vec!["#".into()],
        fast_consumer_settings().retry_delays,
    )
}

/// Connects as `role` and declares `role`'s queues if it is a consumer, as the runtime does.
async fn connect_as(broker: &TestBroker, amqp: &TestAmqp, role: &Role) -> Connection {
    let connection = connect(
        &broker.settings(amqp, role),
        &format!("test {}", role.name()),
    )
    .await
    .unwrap();
    if let Role::Consumer(name) = role {
        let topology = &amqp.topology;
        topology.ensure_exchanges(&connection).await.unwrap();
        let channel = connection.create_channel().await.unwrap();
        topology.declare_queue(&channel, &spec(name)).await.unwrap();
        amqp.remember_consumer(name, &spec(name).retry_delays);
    }
    connection
}

/// Whether `error` is the broker's ACCESS_REFUSED (403).
fn refused(error: &impl std::fmt::Display) -> bool {
    let text = error.to_string();
    text.contains("ACCESS_REFUSED") || text.contains("ACCESSREFUSED")
}

/// Consumes `queue` on a new channel of `connection`; the broker's verdict.
async fn consume(connection: &Connection, queue: &str) -> lapin::Result<()> {
    let channel = connection.create_channel().await.unwrap();
    let tag = format!("test-{}", unique_suffix());
    let consumed = channel
        .basic_consume(
            queue.into(),
            tag.as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await;
    let _ = channel.close(200, "done".into()).await;
    consumed.map(|_| ())
}

/// Publishes `body` as `user` through `exchange`, confirmed; the broker's verdict.
async fn publish(connection: &Connection, user: &str, exchange: &str, key: &str) -> Outcome {
    let channel = confirm_channel(connection).await.unwrap();
    let outgoing = Outgoing {
        exchange,
        routing_key: key,
        body: b"{}",
        properties: BasicProperties::default().with_delivery_mode(headers::PERSISTENT),
        user_id: user,
    };
    publish_one(&channel, &outgoing).await
}

fn assert_refused(outcome: &Outcome, what: &str) {
    match outcome {
        Outcome::Unknown(why) | Outcome::Rejected(why) => {
            assert!(refused(why), "{what}: refused, but not for access: {why}");
        }
        Outcome::Confirmed => panic!("{what}: confirmed, must be refused"),
    }
}

#[tokio::test]
async fn a_service_declares_its_own_queues_but_cannot_consume_another_services_or_its_dead_letters()
{
    let (broker, amqp) = TestBroker::new(&["order", "coupon"]).await;
    let topology = &amqp.topology;
    let _order = connect_as(&broker, &amqp, &consumer("order")).await;
    let coupon = connect_as(&broker, &amqp, &consumer("coupon")).await;

    consume(&coupon, &topology.partition_queue("coupon", 0))
        .await
        .unwrap();
    let theirs = consume(&coupon, &topology.partition_queue("order", 0))
        .await
        .unwrap_err();
    assert!(refused(&theirs), "another service's queue: {theirs}");
    let dead = consume(&coupon, &topology.dead_letter_queue("coupon"))
        .await
        .unwrap_err();
    assert!(
        refused(&dead),
        "its dead letters are the operator's: {dead}"
    );
}

#[tokio::test]
async fn a_service_cannot_publish_saga_events_nor_into_another_services_queue() {
    let (broker, amqp) = TestBroker::new(&["order", "coupon"]).await;
    let topology = &amqp.topology;
    let _order = connect_as(&broker, &amqp, &consumer("order")).await;
    let coupon = connect_as(&broker, &amqp, &consumer("coupon")).await;
    let user = broker.plan.user(&consumer("coupon"));

    let event = publish(&coupon, &user, &topology.events_exchange(), "order.created").await;
    assert_refused(&event, "a saga event");
    let direct = publish(&coupon, &user, "", &topology.partition_queue("order", 0)).await;
    assert_refused(&direct, "another queue through the default exchange");
    let retry = topology.retry_exchange("order");
    let sideways = publish(&coupon, &user, &retry, &topology.queue("order")).await;
    assert_refused(&sideways, "another service's retry exchange");
    let inbound = topology.inbound_exchange("order");
    let front = publish(&coupon, &user, &inbound, &topology.queue("order")).await;
    assert_refused(&front, "another service's inbound exchange");

    let own = topology.retry_queue("coupon", spec("coupon").retry_delays[0]);
    let mine = publish(&coupon, &user, &topology.retry_exchange("coupon"), &own).await;
    assert_eq!(mine, Outcome::Confirmed, "its own retry path");
}

#[tokio::test]
async fn the_relay_publishes_saga_events_but_cannot_consume_or_declare_anything() {
    let (broker, amqp) = TestBroker::new(&["order"]).await;
    let topology = &amqp.topology;
    let _order = connect_as(&broker, &amqp, &consumer("order")).await;
    let relay = connect_as(&broker, &amqp, &Role::Relay).await;
    let user = broker.plan.user(&Role::Relay);

    let event = publish(&relay, &user, &topology.events_exchange(), "order.created").await;
    assert_eq!(event, Outcome::Confirmed);
    let taken = consume(&relay, &topology.partition_queue("order", 0))
        .await
        .unwrap_err();
    assert!(refused(&taken), "consuming: {taken}");
    let direct = publish(&relay, &user, "", &topology.partition_queue("order", 0)).await;
    assert_refused(&direct, "a queue through the default exchange");
    let channel = relay.create_channel().await.unwrap();
    let name = format!("{}.relay-owned", topology.prefix());
    let declared = channel
        .queue_declare(
            name.as_str().into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_err();
    assert!(refused(&declared), "declaring a queue: {declared}");
}

#[tokio::test]
async fn a_publish_stating_another_user_than_the_connections_is_refused() {
    let (broker, amqp) = TestBroker::new(&["order"]).await;
    let topology = &amqp.topology;
    let order = connect_as(&broker, &amqp, &consumer("order")).await;
    let relay_user = broker.plan.user(&Role::Relay);
    let channel = confirm_channel(&order).await.unwrap();
    let retry = topology.retry_queue("order", spec("order").retry_delays[0]);

    // Raw, past the publish path that always states the connection's own user.
    let confirm = channel
        .basic_publish(
            topology.retry_exchange("order").as_str().into(),
            retry.as_str().into(),
            BasicPublishOptions::default(),
            b"{}",
            BasicProperties::default().with_user_id(relay_user.as_str().into()),
        )
        .await
        .unwrap()
        .await;
    let error = confirm.expect_err("the broker closes the channel");
    assert!(
        error.to_string().contains("user_id"),
        "refused for its user_id: {error}"
    );
}

#[tokio::test]
async fn a_consumer_retries_and_dead_letters_under_its_own_identity_and_the_operator_reads_them() {
    let (broker, amqp) = TestBroker::new(&["pings"]).await;
    let topology = &amqp.topology;
    let db = TestDb::new().await;
    create_effects_table(&db).await;
    let recorder = Recorder::new(Behaviour::AlwaysFail);
    let handlers = shared::consumer::Handlers::new().on::<Ping>(recorder.clone());
    amqp.remember_consumer("pings", &fast_consumer_settings().retry_delays);
    let running = RunningConsumer::start(
        "pings",
        &broker.settings(&amqp, &consumer("pings")),
        &db,
        fast_consumer_settings(),
        handlers,
    );

    let envelope = Envelope::new(&Ping { n: 1 }, Some(1)).unwrap();
    let relay = connect_as(&broker, &amqp, &Role::Relay).await;
    let channel = confirm_channel(&relay).await.unwrap();
    let (id, body) = (
        envelope.event_id.to_string(),
        testkit::keys::seal(&envelope),
    );
    let relay_user = broker.plan.user(&Role::Relay);
    let outgoing = Outgoing {
        exchange: &topology.events_exchange(),
        routing_key: Ping::ROUTING_KEY,
        body: &body,
        properties: BasicProperties::default()
            .with_message_id(id.as_str().into())
            .with_type(Ping::TYPE.into())
            .with_delivery_mode(headers::PERSISTENT),
        user_id: &relay_user,
    };
    // The consumer may not have bound its queue yet: an unroutable event is returned.
    let published = testkit::eventually_async(DEADLINE, "the event routed", || async {
        publish_one(&channel, &outgoing)
            .await
            .is_confirmed()
            .then_some(())
    });
    published.await;

    let dead = amqp
        .take(&topology.dead_letter_queue("pings"), 1, DEADLINE)
        .await;
    running.stop().await;
    assert_eq!(recorder.calls(), 3, "two retries went round the retry path");
    let pings_user = broker.plan.user(&consumer("pings"));
    assert_eq!(
        dead[0].properties.user_id().as_ref().map(|u| u.to_string()),
        Some(pings_user),
        "the dead letter is the consumer's publish, not the relay's"
    );

    assert_the_operator_reads_and_restores(&broker, &amqp).await;
}

/// The operator reads the `pings` dead letters (the one taken is gone; the queue is still
/// readable) and puts a message back through the dead-letter exchange, as a restore does.
async fn assert_the_operator_reads_and_restores(broker: &TestBroker, amqp: &TestAmqp) {
    let topology = &amqp.topology;
    let operator = Operator::connect(
        &broker.settings(amqp, &Role::Operator),
        vec!["pings".into()],
    )
    .await
    .unwrap();
    let listing = operator.list(&Filter::default()).await.unwrap();
    assert_eq!(listing[0].depth, 0);
    // A restore puts an archived message back the way its consumer dead-lettered it.
    let restoring = connect_as(broker, amqp, &Role::Operator).await;
    let operator_user = broker.plan.user(&Role::Operator);
    let (dlx, pings) = (topology.dead_letter_exchange(), topology.queue("pings"));
    let restored = publish(&restoring, &operator_user, &dlx, &pings).await;
    assert_eq!(
        restored,
        Outcome::Confirmed,
        "the operator writes to the dlx"
    );
    assert_eq!(
        operator
            .depth(&topology.dead_letter_queue("pings"))
            .await
            .unwrap(),
        1
    );
    operator.close().await;
}
