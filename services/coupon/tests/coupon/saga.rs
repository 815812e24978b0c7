//! The saga steps: using the order's coupon (or passing through), refusing a coupon the order
//! may not use, and giving it back exactly once when the order is compensated.

use serde_json::{Value, json};
use shared::envelope::{Envelope, SagaEvent};
use shared::events::{
    BalanceProcessingFailed, CouponFailed, CouponProcessed, CouponRestored, FailureReason,
    OrderCommand, OrderLine, PaymentRefunded, PricedItem, StockProcessed,
};
use testkit::clients::CouponClient;
use testkit::service::{outbox_events, publish};

use super::{Setup, coupon_body, expire, money, reply_to, start, wait_handled};

fn command(order_id: i64, user_id: i64, user_coupon_id: Option<i64>) -> OrderCommand {
    OrderCommand {
        order_id,
        user_id,
        items: vec![OrderLine {
            product_id: 1,
            quantity: 2,
        }],
        user_coupon_id,
    }
}

fn items() -> Vec<PricedItem> {
    vec![PricedItem {
        product_id: 1,
        quantity: 2,
        unit_price: money("60.00"),
    }]
}

pub(super) fn stock_processed(
    order_id: i64,
    user_id: i64,
    coupon: Option<i64>,
    total: &str,
) -> Envelope {
    let event = StockProcessed {
        command: command(order_id, user_id, coupon),
        items: items(),
        total_amount: money(total),
    };
    Envelope::new(&event, Some(order_id)).unwrap()
}

fn balance_failed(order_id: i64, user_id: i64, coupon: Option<i64>) -> Envelope {
    let event = BalanceProcessingFailed {
        command: command(order_id, user_id, coupon),
        items: items(),
        total_amount: money("120.00"),
        discount_amount: money("5.00"),
        reason: FailureReason::new("insufficient_balance", "needs 115.00, has 0.00"),
    };
    Envelope::new(&event, Some(order_id)).unwrap()
}

fn refunded(order_id: i64, user_id: i64, coupon: Option<i64>) -> Envelope {
    let event = PaymentRefunded {
        command: command(order_id, user_id, coupon),
        items: items(),
        refunded_amount: money("115.00"),
        reason: FailureReason::new("cancelled", "cancelled by the user"),
    };
    Envelope::new(&event, Some(order_id)).unwrap()
}

/// Publishes `event` and returns the event its handling emitted.
async fn step<E: SagaEvent>(s: &Setup, event: &Envelope) -> Envelope {
    publish(&s.amqp, event, E::ROUTING_KEY).await;
    reply_to(&s.db, event).await
}

/// Uses a new FIXED 5.00 coupon of `user_id` for `order_id`; returns the user coupon.
pub(super) async fn used_coupon(s: &Setup, user_id: i64, order_id: i64) -> i64 {
    let coupons = CouponClient::new(&s.app);
    let coupon = coupons
        .create_coupon(&coupon_body("FIXED", "5.00", 10))
        .await;
    let held = coupons.issue(coupon, user_id).await;
    let event = stock_processed(order_id, user_id, Some(held), "120.00");
    let reply = step::<StockProcessed>(s, &event).await;
    assert_eq!(
        reply.event_type,
        CouponProcessed::TYPE,
        "{:?}",
        reply.payload
    );
    held
}

/// The user coupon's status and order.
async fn state(s: &Setup, user_coupon_id: i64) -> (Value, Value) {
    let held = CouponClient::new(&s.app).user_coupon(user_coupon_id).await;
    (held["status"].clone(), held["order_id"].clone())
}

async fn usages(s: &Setup, kind: &str) -> i64 {
    let sql = format!("SELECT count(*) AS count FROM coupon_usages WHERE kind = '{kind}'");
    testkit::effects::count(&s.db, &sql).await
}

/// The discount and amount to pay of a `CouponProcessed`, as they travel.
fn amounts(reply: &Envelope) -> (&Value, &Value) {
    assert_eq!(
        reply.event_type,
        CouponProcessed::TYPE,
        "{:?}",
        reply.payload
    );
    (
        &reply.payload["discount_amount"],
        &reply.payload["amount_to_pay"],
    )
}

fn failure_code(reply: &Envelope) -> String {
    assert_eq!(reply.event_type, CouponFailed::TYPE, "{:?}", reply.payload);
    reply.decode::<CouponFailed>().unwrap().reason.code
}

#[tokio::test]
async fn an_order_without_coupon_passes_through() {
    let s = start().await;
    let event = stock_processed(1, 3, None, "120");
    let reply = step::<StockProcessed>(&s, &event).await;
    assert_eq!(amounts(&reply), (&json!("0.00"), &json!("120.00")));
    let processed: CouponProcessed = reply.decode().unwrap();
    assert_eq!(processed.command, command(1, 3, None));
    assert_eq!(
        (processed.items, processed.total_amount),
        (items(), money("120.00"))
    );
    assert_eq!(reply.saga_id, Some(1));
    s.app.stop().await;
}

#[tokio::test]
async fn a_fixed_discount_is_used_once_and_capped_at_the_total() {
    let s = start().await;
    let coupons = CouponClient::new(&s.app);
    let fifty = coupons
        .create_coupon(&coupon_body("FIXED", "50.00", 10))
        .await;
    let held = coupons.issue(fifty, 3).await;
    let event = stock_processed(11, 3, Some(held), "120.00");
    let reply = step::<StockProcessed>(&s, &event).await;
    assert_eq!(amounts(&reply), (&json!("50.00"), &json!("70.00")));
    assert_eq!(state(&s, held).await, (json!("USED"), json!(11)));

    let five_hundred = coupons
        .create_coupon(&coupon_body("FIXED", "500", 10))
        .await;
    let other = coupons.issue(five_hundred, 3).await;
    let reply = step::<StockProcessed>(&s, &stock_processed(12, 3, Some(other), "120.00")).await;
    assert_eq!(amounts(&reply), (&json!("120.00"), &json!("0.00")));

    // Another message for order 11's step (not a redelivery: a new id) finds the usage and
    // does nothing; in particular it does not report the coupon as used by another order.
    publish(
        &s.amqp,
        &stock_processed(11, 3, Some(held), "120.00"),
        StockProcessed::ROUTING_KEY,
    )
    .await;
    wait_handled(&s.db, 3).await;
    assert_eq!(outbox_events(&s.db).await.len(), 2);
    assert_eq!(usages(&s, "USE").await, 2);
    s.app.stop().await;
}

#[tokio::test]
async fn a_percent_discount_rounds_half_away_from_zero() {
    let s = start().await;
    let coupons = CouponClient::new(&s.app);
    let fifteen = coupons
        .create_coupon(&coupon_body("PERCENT", "15", 10))
        .await;
    let held = coupons.issue(fifteen, 3).await;
    // 14.9985 is 15.00.
    let reply = step::<StockProcessed>(&s, &stock_processed(21, 3, Some(held), "99.99")).await;
    assert_eq!(amounts(&reply), (&json!("15.00"), &json!("84.99")));
    assert_eq!(state(&s, held).await, (json!("USED"), json!(21)));

    // 0.025 is 0.03, where banker's rounding would say 0.02.
    let ten = coupons
        .create_coupon(&coupon_body("PERCENT", "10", 10))
        .await;
    let held = coupons.issue(ten, 3).await;
    let reply = step::<StockProcessed>(&s, &stock_processed(22, 3, Some(held), "0.25")).await;
    assert_eq!(amounts(&reply), (&json!("0.03"), &json!("0.22")));
    s.app.stop().await;
}

#[tokio::test]
async fn a_coupon_the_order_may_not_use_fails_the_step_and_changes_nothing() {
    let s = start().await;
    let coupons = CouponClient::new(&s.app);
    let coupon = coupons
        .create_coupon(&coupon_body("FIXED", "5.00", 10))
        .await;
    let held = coupons.issue(coupon, 3).await;

    let reply = step::<StockProcessed>(&s, &stock_processed(31, 4, Some(held), "120.00")).await;
    assert_eq!(failure_code(&reply), "coupon_not_owned");
    let failed: CouponFailed = reply.decode().unwrap();
    assert_eq!(
        (failed.items, failed.total_amount),
        (items(), money("120.00"))
    );
    assert_eq!(state(&s, held).await, (json!("AVAILABLE"), Value::Null));

    let reply = step::<StockProcessed>(&s, &stock_processed(32, 3, Some(held), "120.00")).await;
    assert_eq!(amounts(&reply), (&json!("5.00"), &json!("115.00")));
    let reply = step::<StockProcessed>(&s, &stock_processed(33, 3, Some(held), "120.00")).await;
    assert_eq!(failure_code(&reply), "coupon_already_used");
    assert_eq!(state(&s, held).await, (json!("USED"), json!(32)));

    let mut body = coupon_body("FIXED", "5.00", 10);
    body["expires_at"] = json!((chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339());
    let expiring = coupons.create_coupon(&body).await;
    let held = coupons.issue(expiring, 3).await;
    expire(&s.db, expiring).await;
    let reply = step::<StockProcessed>(&s, &stock_processed(34, 3, Some(held), "120.00")).await;
    assert_eq!(failure_code(&reply), "coupon_expired");
    assert_eq!(state(&s, held).await, (json!("AVAILABLE"), Value::Null));

    let reply = step::<StockProcessed>(&s, &stock_processed(35, 3, Some(999_999), "120.00")).await;
    assert_eq!(failure_code(&reply), "coupon_not_found");
    assert_eq!(usages(&s, "USE").await, 1, "only order 32 used a coupon");
    s.app.stop().await;
}

#[tokio::test]
async fn a_failed_payment_gives_the_coupon_back_once() {
    let s = start().await;
    let held = used_coupon(&s, 3, 41).await;
    let event = balance_failed(41, 3, Some(held));
    let reply = step::<BalanceProcessingFailed>(&s, &event).await;
    assert_eq!(reply.event_type, CouponRestored::TYPE);
    let restored: CouponRestored = reply.decode().unwrap();
    assert_eq!(restored.command, command(41, 3, Some(held)));
    assert_eq!(restored.items, items());
    assert_eq!(restored.reason.code, "insufficient_balance");
    assert_eq!(state(&s, held).await, (json!("AVAILABLE"), Value::Null));

    // The same compensation again (a new message) restores and reports nothing more.
    publish(
        &s.amqp,
        &balance_failed(41, 3, Some(held)),
        BalanceProcessingFailed::ROUTING_KEY,
    )
    .await;
    wait_handled(&s.db, 3).await;
    assert_eq!(outbox_events(&s.db).await.len(), 2);
    assert_eq!(
        (usages(&s, "USE").await, usages(&s, "RESTORE").await),
        (1, 1)
    );

    // Available again for real: another order uses it, and a late copy of order 41's
    // compensation does not take it from that order.
    let reply = step::<StockProcessed>(&s, &stock_processed(42, 3, Some(held), "120.00")).await;
    assert_eq!(amounts(&reply), (&json!("5.00"), &json!("115.00")));
    publish(
        &s.amqp,
        &balance_failed(41, 3, Some(held)),
        BalanceProcessingFailed::ROUTING_KEY,
    )
    .await;
    wait_handled(&s.db, 5).await;
    assert_eq!(state(&s, held).await, (json!("USED"), json!(42)));
    s.app.stop().await;
}

#[tokio::test]
async fn a_refund_gives_back_the_coupon_of_that_order_only() {
    let s = start().await;
    let held = used_coupon(&s, 3, 51).await;
    // Order 52 named the same coupon but never got it (its step failed): its refund reports
    // and leaves order 51's coupon alone.
    let reply = step::<PaymentRefunded>(&s, &refunded(52, 3, Some(held))).await;
    assert_eq!(reply.event_type, CouponRestored::TYPE);
    assert_eq!(state(&s, held).await, (json!("USED"), json!(51)));

    let reply = step::<PaymentRefunded>(&s, &refunded(51, 3, Some(held))).await;
    assert_eq!(reply.event_type, CouponRestored::TYPE);
    assert_eq!(
        reply.decode::<CouponRestored>().unwrap().reason.code,
        "cancelled"
    );
    assert_eq!(state(&s, held).await, (json!("AVAILABLE"), Value::Null));
    assert_eq!(usages(&s, "RESTORE").await, 1);
    s.app.stop().await;
}

#[tokio::test]
async fn compensating_an_order_without_coupon_reports_and_changes_nothing() {
    let s = start().await;
    let held = used_coupon(&s, 3, 61).await;
    let reply = step::<BalanceProcessingFailed>(&s, &balance_failed(62, 3, None)).await;
    assert_eq!(reply.event_type, CouponRestored::TYPE);
    let restored: CouponRestored = reply.decode().unwrap();
    assert_eq!(restored.command, command(62, 3, None));
    assert_eq!(state(&s, held).await, (json!("USED"), json!(61)));
    assert_eq!(
        (usages(&s, "USE").await, usages(&s, "RESTORE").await),
        (1, 0)
    );
    s.app.stop().await;
}
