//! The order saga end to end: five real services on their own databases, the relay, the broker.
//! Every test checks the outcome, the exact compensation, and that nothing is left behind.
//! Deadlines, and what a step arriving after one does, are in [`deadlines`].

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod system;

#[path = "saga/deadlines.rs"]
mod deadlines;

use serde_json::json;
use system::{ORDER, System};

#[tokio::test]
async fn an_order_without_a_coupon_completes_and_is_charged_exactly() {
    let s = System::start().await;
    let keyboard = s.create_product("keyboard", "89.90", 10).await;
    let cable = s.create_product("cable", "9.99", 10).await;
    s.charge(1, "500.00").await;

    let id = s.place(1, &[(keyboard, 2), (cable, 3)], None).await;
    let order = s.wait_terminal(id).await;

    assert_eq!(order["status"], "COMPLETED", "{order}");
    assert_eq!(order["total_amount"], "209.77");
    assert_eq!(order["discount_amount"], "0.00");
    assert_eq!(order["paid_amount"], "209.77");
    assert_eq!(order["items"][0]["unit_price"], "89.90");
    assert_eq!(s.stock(keyboard).await, 8);
    assert_eq!(s.stock(cable).await, 7);
    assert_eq!(s.balance(1).await, "290.23");
    s.assert_settled().await;
    s.stop().await;
}

#[tokio::test]
async fn an_order_with_a_coupon_pays_the_total_minus_the_discount() {
    let s = System::start().await;
    let monitor = s.create_product("monitor", "249.00", 5).await;
    s.charge(2, "1000.00").await;
    let coupon = s.coupon_for(2, "PERCENT", "10").await;

    let id = s.place(2, &[(monitor, 2)], Some(coupon)).await;
    let order = s.wait_terminal(id).await;

    assert_eq!(order["status"], "COMPLETED", "{order}");
    assert_eq!(order["total_amount"], "498.00");
    assert_eq!(order["discount_amount"], "49.80");
    assert_eq!(order["paid_amount"], "448.20", "paid = total - discount");
    assert_eq!(s.balance(2).await, "551.80");
    let used = s.user_coupon(coupon).await;
    assert_eq!(
        (used["status"].as_str(), used["order_id"].as_i64()),
        (Some("USED"), Some(id))
    );
    assert_eq!(s.stock(monitor).await, 3);
    s.assert_settled().await;
    s.stop().await;
}

#[tokio::test]
async fn not_enough_stock_fails_without_touching_anything() {
    let s = System::start().await;
    let stand = s.create_product("stand", "39.50", 1).await;
    let cable = s.create_product("cable", "9.99", 10).await;
    s.charge(3, "500.00").await;
    let coupon = s.coupon_for(3, "FIXED", "5").await;

    let id = s.place(3, &[(cable, 1), (stand, 2)], Some(coupon)).await;
    let order = s.wait_terminal(id).await;

    assert_eq!(order["status"], "FAILED", "{order}");
    assert_eq!(order["failure_code"], "insufficient_stock");
    assert!(
        order["failure_reason"]
            .as_str()
            .unwrap()
            .contains(&stand.to_string()),
        "{order}"
    );
    assert_eq!((s.stock(stand).await, s.stock(cable).await), (1, 10));
    assert_eq!(s.balance(3).await, "500.00");
    assert_eq!(s.user_coupon(coupon).await["status"], "AVAILABLE");
    s.assert_settled().await;
    s.stop().await;
}

#[tokio::test]
async fn a_bad_coupon_fails_and_the_reserved_stock_comes_back() {
    let s = System::start().await;
    let cable = s.create_product("cable", "9.99", 10).await;
    s.charge(4, "500.00").await;
    s.charge(5, "500.00").await;
    let foreign = s.coupon_for(5, "FIXED", "5").await;
    let mine = s.coupon_for(4, "FIXED", "5").await;

    // Unknown, someone else's, and already used.
    let unknown = s.place(4, &[(cable, 1)], Some(999_999)).await;
    let stolen = s.place(4, &[(cable, 2)], Some(foreign)).await;
    let first = s.place(4, &[(cable, 1)], Some(mine)).await;
    assert_eq!(s.wait_terminal(first).await["status"], "COMPLETED");
    let reused = s.place(4, &[(cable, 3)], Some(mine)).await;

    for (id, code) in [
        (unknown, "coupon_not_found"),
        (stolen, "coupon_not_owned"),
        (reused, "coupon_already_used"),
    ] {
        let order = s.wait_terminal(id).await;
        assert_eq!(
            (order["status"].as_str(), order["failure_code"].as_str()),
            (Some("FAILED"), Some(code)),
            "{order}"
        );
    }
    assert_eq!(
        s.stock(cable).await,
        9,
        "only the completed order holds stock"
    );
    assert_eq!(
        s.balance(4).await,
        "495.01",
        "only the completed order was paid: 9.99 - 5.00"
    );
    assert_eq!(s.user_coupon(foreign).await["status"], "AVAILABLE");
    assert_eq!(s.user_coupon(mine).await["order_id"].as_i64(), Some(first));
    s.assert_settled().await;
    s.stop().await;
}

#[tokio::test]
async fn not_enough_balance_fails_and_coupon_and_stock_are_restored() {
    let s = System::start().await;
    let monitor = s.create_product("monitor", "249.00", 5).await;
    s.charge(6, "100.00").await;
    let coupon = s.coupon_for(6, "FIXED", "20").await;

    let id = s.place(6, &[(monitor, 1)], Some(coupon)).await;
    let order = s.wait_terminal(id).await;

    assert_eq!(order["status"], "FAILED", "{order}");
    assert_eq!(order["failure_code"], "insufficient_balance");
    assert_eq!(s.stock(monitor).await, 5);
    assert_eq!(s.balance(6).await, "100.00");
    let coupon = s.user_coupon(coupon).await;
    assert_eq!(
        (coupon["status"].as_str(), coupon["order_id"].as_i64()),
        (Some("AVAILABLE"), None)
    );
    s.assert_settled().await;
    s.stop().await;
}

#[tokio::test]
async fn cancelling_a_completed_order_refunds_restores_and_ends_cancelled() {
    let s = System::start().await;
    let keyboard = s.create_product("keyboard", "89.90", 10).await;
    s.charge(7, "300.00").await;
    let coupon = s.coupon_for(7, "FIXED", "10").await;
    let id = s.place(7, &[(keyboard, 2)], Some(coupon)).await;
    assert_eq!(s.wait_terminal(id).await["status"], "COMPLETED");
    assert_eq!(s.balance(7).await, "130.20");

    let body = s.orders().cancel(id).await;
    assert_eq!(body["status"], "CANCELLING", "{body}");
    let (status, body) = s
        .app(ORDER)
        .post(&format!("/orders/{id}/cancel"), &json!({}))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("not_cancellable")),
        "{body}"
    );

    let order = s.wait_terminal(id).await;
    assert_eq!(order["status"], "CANCELLED", "{order}");
    assert_eq!(s.balance(7).await, "300.00");
    assert_eq!(s.stock(keyboard).await, 10);
    assert_eq!(s.user_coupon(coupon).await["status"], "AVAILABLE");
    let (status, _) = s.app(ORDER).post("/orders/999999/cancel", &json!({})).await;
    assert_eq!(status, 404);
    s.assert_settled().await;
    s.stop().await;
}

#[tokio::test]
async fn the_monitor_timeline_of_a_failed_order_is_causal_and_shares_one_trace() {
    let s = System::start().await;
    let monitor = s.create_product("monitor", "249.00", 5).await;
    s.charge(8, "10.00").await;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let response = s
        .app(ORDER)
        .client
        .post(s.app(ORDER).url("/orders"))
        .header("traceparent", traceparent)
        .json(&json!({"user_id": 8, "items": [{"product_id": monitor, "quantity": 1}]}))
        .send()
        .await
        .unwrap();
    let id = response.json::<serde_json::Value>().await.unwrap()["order_id"]
        .as_i64()
        .unwrap();
    assert_eq!(s.wait_terminal(id).await["status"], "FAILED");

    let timeline = testkit::eventually_async(
        std::time::Duration::from_secs(20),
        "the whole timeline",
        || async {
            let (status, body) = s.app(system::MONITOR).get(&format!("/sagas/{id}")).await;
            (status == 200 && body["events"].as_array().is_some_and(|e| e.len() == 7))
                .then_some(body)
        },
    )
    .await;
    let events = timeline["events"].as_array().unwrap();
    let types: Vec<&str> = events
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "OrderProcessingStarted",
            "StockProcessed",
            "CouponProcessed",
            "BalanceProcessingFailed",
            "CouponRestored",
            "StockRestored",
            "OrderFailed"
        ],
        "forward steps, then the compensations in reverse, in causal order"
    );
    for pair in events.windows(2) {
        assert_eq!(
            pair[1]["causation_id"], pair[0]["event_id"],
            "each step caused by the previous one"
        );
        assert!(pair[1]["since_previous_ms"].as_f64().unwrap() >= 0.0);
    }
    assert!(
        events
            .iter()
            .all(|e| e["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"),
        "{timeline}"
    );
    s.assert_settled().await;
    s.stop().await;
}

#[tokio::test]
async fn a_stalled_saga_is_listed_as_stuck_until_it_moves_on() {
    let mut s = System::start().await;
    let cable = s.create_product("cable", "9.99", 10).await;
    s.charge(9, "100.00").await;
    // Balance is down: the saga stalls after the coupon step.
    s.apps.remove(system::BALANCE).unwrap().stop().await;
    let id = s.place(9, &[(cable, 1)], None).await;

    let monitor = s.app(system::MONITOR).base_url.clone();
    let client = reqwest::Client::new();
    let stuck = |path: &'static str| {
        let request = client.get(format!("{monitor}{path}"));
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.json::<serde_json::Value>().await.unwrap())
        }
    };
    let listed = testkit::eventually_async(
        std::time::Duration::from_secs(20),
        "the saga listed as stuck",
        || async {
            let (_, body) = stuck("/sagas?state=stuck&older_than=300ms").await;
            body["sagas"]
                .as_array()?
                .iter()
                .find(|saga| saga["order_id"] == id)
                .cloned()
        },
    )
    .await;
    assert_eq!(listed["last_event_type"], "CouponProcessed", "{listed}");
    assert_eq!(listed["state"], "in_flight");

    let balance = testkit::service::TestApp::start(
        balance_service::build(&testkit::service::service_settings(
            system::BALANCE,
            &s.dbs[system::BALANCE],
            &s.amqp,
        ))
        .await
        .unwrap(),
    );
    s.apps.insert(system::BALANCE, balance);
    assert_eq!(s.wait_terminal(id).await["status"], "COMPLETED");
    testkit::eventually_async(
        std::time::Duration::from_secs(20),
        "the saga no longer stuck but completed",
        || async {
            let (_, stuck_now) = stuck("/sagas?state=stuck&older_than=0s").await;
            let (_, completed) = stuck("/sagas?state=completed").await;
            let in_stuck = stuck_now["sagas"]
                .as_array()?
                .iter()
                .any(|saga| saga["order_id"] == id);
            let in_completed = completed["sagas"]
                .as_array()?
                .iter()
                .any(|saga| saga["order_id"] == id);
            (!in_stuck && in_completed).then_some(())
        },
    )
    .await;
    assert_eq!(
        stuck("/sagas?state=bogus").await.1["error"]["field"],
        "state"
    );
    assert_eq!(
        stuck("/sagas?state=stuck&older_than=soon").await.1["error"]["field"],
        "older_than"
    );
    s.assert_settled().await;
    s.stop().await;
}

/// `sagactl` with `args` against this system's broker and monitor database; its JSON answer.
async fn sagactl_dlq(s: &System, args: &[&str]) -> serde_json::Value {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_sagactl"))
        .args(args)
        .env("AMQP_URL", &s.amqp.url)
        .env("AMQP_PREFIX", &s.amqp.prefix)
        .env("MONITOR_DATABASE_URL", &s.dbs[system::MONITOR].url)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "sagactl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}
