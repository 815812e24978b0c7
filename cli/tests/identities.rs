//! The whole system under least-privilege broker identities (`sagactl broker setup`'s, in a
//! vhost of the test's own): a saga completes with every process connecting as itself, and a
//! dead letter a service parked is replayed by the operator identity with `sagactl dlq`.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod system;

use std::time::Duration;

use lapin::BasicProperties;
use lapin::options::BasicPublishOptions;
use shared::amqp::headers;
use shared::broker::Role;
use shared::envelope::SagaEvent;
use shared::events::OrderProcessingStarted;
use system::{MONITOR, PRODUCT, System};
use testkit::eventually_async;

const DEADLINE: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_saga_completes_with_every_process_under_its_own_broker_identity() {
    let s = System::start_with_identities().await;
    let monitor = s.create_product("monitor", "249.00", 5).await;
    s.charge(2, "1000.00").await;
    let coupon = s.coupon_for(2, "PERCENT", "10").await;

    let id = s.place(2, &[(monitor, 2)], Some(coupon)).await;
    let order = s.wait_terminal(id).await;

    assert_eq!(order["status"], "COMPLETED", "{order}");
    assert_eq!(s.balance(2).await, "551.80");
    assert_eq!(s.stock(monitor).await, 3);
    s.assert_settled().await;
    s.stop().await;
}

#[tokio::test]
async fn a_dead_letter_parked_by_a_service_is_replayed_by_the_operator_identity() {
    let s = System::start_with_identities().await;
    let broker = s.broker.as_ref().unwrap();
    let dlq = s.amqp.topology.dead_letter_queue(PRODUCT);
    // Bytes that are no sealed event: the product service dead-letters them at once.
    s.amqp
        .channel
        .basic_publish(
            s.amqp.topology.events_exchange().as_str().into(),
            OrderProcessingStarted::ROUTING_KEY.into(),
            BasicPublishOptions::default(),
            b"not an event",
            BasicProperties::default().with_message_id("poison-1".into()),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    let depth = || async { s.amqp.depth(&dlq).await };
    eventually_async(DEADLINE, "the poison dead-lettered", || async {
        (depth().await == 1).then_some(())
    })
    .await;

    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_sagactl"))
        .args(["dlq", "replay", "--queue", PRODUCT, "--all", "--json"])
        .env("AMQP_URL", broker.url(&Role::Operator))
        .env("AMQP_PREFIX", &s.amqp.prefix)
        .env("MONITOR_DATABASE_URL", &s.dbs[MONITOR].url)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "sagactl dlq replay: {stderr}");

    // Replayed into the product queue, dead-lettered again by the product service.
    let again = s.amqp.take(&dlq, 1, DEADLINE).await;
    let table = again[0].properties.headers().as_ref();
    assert_eq!(headers::get_i64(table, headers::REPLAY_COUNT), Some(1));
    assert_eq!(
        again[0]
            .properties
            .user_id()
            .as_ref()
            .map(|u| u.to_string()),
        Some(broker.plan.user(&Role::Consumer(PRODUCT.to_owned())))
    );
    s.stop().await;
}
