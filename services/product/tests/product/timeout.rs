//! `SagaTimedOut`: the reservation of an order that missed its deadline comes back once, and a
//! reservation arriving after the timeout takes nothing.

use shared::envelope::{Envelope, SagaEvent};
use shared::events::{FailureReason, OrderProcessingStarted, SagaTimedOut, StockProcessed};
use testkit::clients::ProductClient;
use testkit::service::{outbox_events, publish};

use super::{command, movements, start, started, wait_for_events, wait_for_inbox};

fn timed_out(order_id: i64, lines: &[(i64, i32)]) -> Envelope {
    let event = SagaTimedOut {
        command: command(order_id, lines),
        reason: FailureReason::new("timeout", "the saga did not end by its deadline"),
    };
    Envelope::new(&event, Some(order_id)).unwrap()
}

#[tokio::test]
async fn a_timeout_gives_back_the_reservation_once_and_emits_nothing() {
    let s = start().await;
    let products = ProductClient::new(&s.app);
    let a = products.create_product("Lamp", "20.00", 10).await;
    let b = products.create_product("Bulb", "2.00", 4).await;
    let lines = [(a, 3), (b, 4)];
    publish(
        &s.amqp,
        &started(51, &lines),
        OrderProcessingStarted::ROUTING_KEY,
    )
    .await;
    let events = wait_for_events(&s.db, 1).await;
    assert_eq!(events[0].event_type, StockProcessed::TYPE);
    assert_eq!((products.stock(a).await, products.stock(b).await), (7, 0));

    // The timeout, and another message carrying it: restored once.
    for _ in 0..2 {
        publish(&s.amqp, &timed_out(51, &lines), SagaTimedOut::ROUTING_KEY).await;
    }
    wait_for_inbox(&s.db, 3).await;
    assert_eq!((products.stock(a).await, products.stock(b).await), (10, 4));
    assert_eq!(
        movements(&s.db, "kind = 'RESTORE' AND order_id = 51").await,
        2
    );
    assert_eq!(outbox_events(&s.db).await.len(), 1, "nothing emitted");
    s.app.stop().await;
}

#[tokio::test]
async fn a_reservation_arriving_after_the_timeout_takes_nothing() {
    let s = start().await;
    let products = ProductClient::new(&s.app);
    let id = products.create_product("Chair", "45.00", 5).await;
    publish(
        &s.amqp,
        &timed_out(52, &[(id, 2)]),
        SagaTimedOut::ROUTING_KEY,
    )
    .await;
    wait_for_inbox(&s.db, 1).await;
    publish(
        &s.amqp,
        &started(52, &[(id, 2)]),
        OrderProcessingStarted::ROUTING_KEY,
    )
    .await;
    wait_for_inbox(&s.db, 2).await;
    assert_eq!(products.stock(id).await, 5);
    assert_eq!(movements(&s.db, "order_id = 52").await, 0);
    assert!(outbox_events(&s.db).await.is_empty(), "no StockProcessed");
    s.app.stop().await;
}
