//! `SagaTimedOut`: the coupon an order used before it missed its deadline is available again,
//! once, and a use arriving after the timeout takes nothing.

use shared::envelope::{Envelope, SagaEvent};
use shared::events::{FailureReason, OrderCommand, OrderLine, SagaTimedOut, StockProcessed};
use testkit::clients::CouponClient;
use testkit::service::{outbox_events, publish};

use super::saga::{stock_processed, used_coupon};
use super::{Setup, coupon_body, start, wait_handled};

fn timed_out(order_id: i64, user_id: i64, user_coupon_id: Option<i64>) -> Envelope {
    let event = SagaTimedOut {
        command: OrderCommand {
            order_id,
            user_id,
            items: vec![OrderLine {
                product_id: 1,
                quantity: 2,
            }],
            user_coupon_id,
        },
        reason: FailureReason::new("timeout", "the saga did not end by its deadline"),
    };
    Envelope::new(&event, Some(order_id)).unwrap()
}

async fn status(s: &Setup, user_coupon_id: i64) -> String {
    let held = CouponClient::new(&s.app).user_coupon(user_coupon_id).await;
    held["status"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_timeout_gives_the_used_coupon_back_once_and_emits_nothing() {
    let s = start().await;
    let held = used_coupon(&s, 6, 61).await;
    assert_eq!(status(&s, held).await, "USED");
    for _ in 0..2 {
        publish(
            &s.amqp,
            &timed_out(61, 6, Some(held)),
            SagaTimedOut::ROUTING_KEY,
        )
        .await;
    }
    wait_handled(&s.db, 3).await;
    assert_eq!(status(&s, held).await, "AVAILABLE");
    let restores = "SELECT count(*) AS count FROM coupon_usages WHERE kind = 'RESTORE'";
    assert_eq!(testkit::effects::count(&s.db, restores).await, 1);
    assert_eq!(
        outbox_events(&s.db).await.len(),
        1,
        "only the CouponProcessed"
    );
    s.app.stop().await;
}

#[tokio::test]
async fn a_use_arriving_after_the_timeout_takes_nothing() {
    let s = start().await;
    let coupons = CouponClient::new(&s.app);
    let coupon = coupons
        .create_coupon(&coupon_body("FIXED", "5.00", 10))
        .await;
    let held = coupons.issue(coupon, 7).await;
    publish(
        &s.amqp,
        &timed_out(62, 7, Some(held)),
        SagaTimedOut::ROUTING_KEY,
    )
    .await;
    publish(&s.amqp, &timed_out(63, 7, None), SagaTimedOut::ROUTING_KEY).await;
    wait_handled(&s.db, 2).await;
    let late = stock_processed(62, 7, Some(held), "120.00");
    publish(&s.amqp, &late, StockProcessed::ROUTING_KEY).await;
    let without_coupon = stock_processed(63, 7, None, "120.00");
    publish(&s.amqp, &without_coupon, StockProcessed::ROUTING_KEY).await;
    wait_handled(&s.db, 4).await;
    assert_eq!(status(&s, held).await, "AVAILABLE");
    assert!(outbox_events(&s.db).await.is_empty(), "no CouponProcessed");
    s.app.stop().await;
}
