//! `SagaTimedOut`: what an order paid before it missed its deadline is refunded once, and a
//! payment arriving after the timeout takes nothing.

use shared::envelope::{Envelope, SagaEvent};
use shared::events::{CouponProcessed, FailureReason, SagaTimedOut};
use testkit::clients::BalanceClient;
use testkit::effects::count;
use testkit::service::{outbox_events, publish};

use super::{command, coupon_processed, start, wait_for_events};

fn timed_out(order_id: i64, user_id: i64) -> Envelope {
    let event = SagaTimedOut {
        command: command(order_id, user_id),
        reason: FailureReason::new("timeout", "the saga did not end by its deadline"),
    };
    Envelope::new(&event, Some(order_id)).unwrap()
}

async fn wait_handled(db: &testkit::TestDb, messages: i64) {
    testkit::eventually_async(
        std::time::Duration::from_secs(20),
        &format!("{messages} messages handled"),
        || async {
            (count(db, "SELECT count(*) AS count FROM inbox").await == messages).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn a_timeout_refunds_the_payment_once_and_emits_nothing() {
    let s = start().await;
    let balances = BalanceClient::new(&s.app);
    balances.charge(5, "150.00").await;
    publish(
        &s.amqp,
        &coupon_processed(71, 5, "100.00"),
        CouponProcessed::ROUTING_KEY,
    )
    .await;
    wait_for_events(&s.db, 1).await;
    assert_eq!(balances.balance(5).await, "50.00");
    for _ in 0..2 {
        publish(&s.amqp, &timed_out(71, 5), SagaTimedOut::ROUTING_KEY).await;
    }
    wait_handled(&s.db, 3).await;
    assert_eq!(balances.balance(5).await, "150.00");
    let refunds = "SELECT count(*) AS count FROM balance_history \
                   WHERE order_id = 71 AND kind = 'REFUND' AND amount = 100";
    assert_eq!(count(&s.db, refunds).await, 1);
    assert_eq!(
        outbox_events(&s.db).await.len(),
        1,
        "only the BalanceProcessed"
    );
    s.app.stop().await;
}

#[tokio::test]
async fn a_payment_arriving_after_the_timeout_takes_nothing() {
    let s = start().await;
    let balances = BalanceClient::new(&s.app);
    balances.charge(6, "150.00").await;
    publish(&s.amqp, &timed_out(72, 6), SagaTimedOut::ROUTING_KEY).await;
    // A user never charged: nothing to lock, nothing to refund.
    publish(&s.amqp, &timed_out(73, 99), SagaTimedOut::ROUTING_KEY).await;
    wait_handled(&s.db, 2).await;
    publish(
        &s.amqp,
        &coupon_processed(72, 6, "100.00"),
        CouponProcessed::ROUTING_KEY,
    )
    .await;
    wait_handled(&s.db, 3).await;
    assert_eq!(balances.balance(6).await, "150.00");
    let entries = "SELECT count(*) AS count FROM balance_history WHERE order_id IS NOT NULL";
    assert_eq!(count(&s.db, entries).await, 0);
    assert!(outbox_events(&s.db).await.is_empty(), "no BalanceProcessed");
    s.app.stop().await;
}
