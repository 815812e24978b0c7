//! Saga deadlines: an order its saga cannot finish ends `FAILED` with code `timeout`, what its
//! steps took comes back, and a step of it arriving later (drained from a backlog, or replayed
//! from a dead-letter queue) changes nothing.

use std::time::Duration;

use testkit::effects::{count, execute};
use testkit::eventually_async;

use crate::system::{BALANCE, ORDER, System};

/// Long enough for the product and coupon steps of a loaded CI machine, short for a test.
const DEADLINE: Duration = Duration::from_secs(3);
const WAIT: Duration = Duration::from_secs(30);

/// The value of the series of `name` whose labels include every one of `labels` on `service`'s
/// `/metrics`, 0 when there is none yet.
async fn metric(s: &System, service: &str, name: &str, labels: &[&str]) -> f64 {
    let app = s.app(service);
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|line| line.starts_with(&format!("{name}{{")))
        .filter(|line| labels.iter().all(|label| line.contains(label)))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn assert_failed_by_timeout(s: &System, order_id: i64) {
    let order = s.wait_terminal(order_id).await;
    assert_eq!(order["status"], "FAILED", "{order}");
    assert_eq!(order["failure_code"], "timeout", "{order}");
}

#[tokio::test]
async fn orders_past_their_deadline_fail_and_what_they_took_comes_back() {
    let mut s = System::start_with_deadline(DEADLINE).await;
    let cable = s.create_product("cable", "10.00", 10).await;
    s.charge(7, "100.00").await;
    let coupon = s.coupon_for(7, "FIXED", "5.00").await;
    // Balance is down: every saga stalls after its coupon step.
    s.stop_service(BALANCE).await;
    let with_coupon = s.place(7, &[(cable, 2)], Some(coupon)).await;
    let without = s.place(7, &[(cable, 1)], None).await;

    for id in [with_coupon, without] {
        assert_failed_by_timeout(&s, id).await;
    }
    // Product and coupon undo their steps while balance is still down.
    eventually_async(WAIT, "stock and coupon restored", || async {
        let stock = s.stock(cable).await;
        let coupon = s.user_coupon(coupon).await;
        (stock == 10 && coupon["status"] == "AVAILABLE").then_some(())
    })
    .await;
    let timeouts = metric(&s, ORDER, "saga_finished_total", &["reason=\"timeout\""]).await;
    assert_eq!(timeouts, 2.0);

    // Balance comes back to a backlog of payments and timeouts of the same sagas: whatever it
    // applies of the payments, the timeouts undo.
    s.restart_service(BALANCE).await;
    s.assert_settled().await;
    assert_eq!(s.balance(7).await, "100.00");
    for id in [with_coupon, without] {
        assert_eq!(s.orders().order(id).await["status"], "FAILED");
    }
    assert_eq!(s.stock(cable).await, 10);
    assert_eq!(s.user_coupon(coupon).await["status"], "AVAILABLE");
    s.assert_verify_clean().await;
    s.stop().await;
}

#[tokio::test]
async fn a_dead_letter_of_a_timed_out_saga_replayed_later_changes_nothing() {
    // Deadlines far away: this test moves the order's deadline itself.
    let mut s = System::start_with_deadline(Duration::from_secs(600)).await;
    let lamp = s.create_product("lamp", "20.00", 5).await;
    s.charge(8, "50.00").await;
    s.stop_service(BALANCE).await;
    let id = s.place(8, &[(lamp, 1)], None).await;
    // The payment step gives up on the message, which waits in the dead-letter queue.
    let parked = s
        .amqp
        .park_next_as_dead_letter(BALANCE, "test_parked", WAIT)
        .await;
    assert_eq!(parked, "CouponProcessed");
    // The deadline passes; balance comes back and applies the timeout.
    execute(
        &s.dbs[ORDER],
        &format!("UPDATE orders SET deadline_at = now() WHERE id = {id}"),
    )
    .await;
    assert_failed_by_timeout(&s, id).await;
    eventually_async(WAIT, "the stock restored", || async {
        (s.stock(lamp).await == 5).then_some(())
    })
    .await;
    s.restart_service(BALANCE).await;
    eventually_async(WAIT, "balance applied the timeout", || async {
        let applied = metric(&s, BALANCE, "saga_timeouts_applied_total", &[]).await;
        (applied == 1.0).then_some(())
    })
    .await;

    // Days later an operator replays it: the inbox never saw it, the closed saga refuses it.
    let order = id.to_string();
    let replay = crate::sagactl_dlq(&s, &["dlq", "replay", "--order-id", &order, "--json"]).await;
    assert_eq!(replay["moved"].as_array().unwrap().len(), 1, "{replay}");
    eventually_async(WAIT, "the late payment refused", || async {
        let refused = metric(
            &s,
            BALANCE,
            "saga_late_steps_refused_total",
            &["event_type=\"CouponProcessed\""],
        )
        .await;
        (refused == 1.0).then_some(())
    })
    .await;
    assert_eq!(s.balance(8).await, "50.00");
    let payments = count(
        &s.dbs[BALANCE],
        &format!("SELECT count(*) AS count FROM balance_history WHERE order_id = {id}"),
    )
    .await;
    assert_eq!(payments, 0, "nothing paid, nothing refunded");
    assert_eq!(s.orders().order(id).await["status"], "FAILED");
    s.assert_settled().await;
    s.assert_verify_clean().await;
    s.stop().await;
}
