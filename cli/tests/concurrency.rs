//! The saga under contention and duplication: no oversell, no double effect, and a long poll
//! that is woken by whichever order-service instance settles the order.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

mod system;

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use serde_json::json;
use shared::envelope::{Envelope, SagaEvent};
use shared::events::{OrderCommand, OrderLine, OrderProcessingStarted};
use system::{BALANCE, ORDER, PRODUCT, System};
use testkit::TestAmqp;
use testkit::effects::count;
use testkit::service::{TestApp, publish, service_settings};

#[tokio::test]
async fn two_hundred_concurrent_orders_for_fifty_in_stock_complete_exactly_fifty() {
    let s = System::start().await;
    let product = s.create_product("limited", "10.00", 50).await;
    for user in 1..=200 {
        s.charge(user, "100.00").await;
    }
    let line = [(product, 1)];
    let ids: Vec<i64> = join_all((1..=200).map(|user| s.place(user, &line, None))).await;
    let orders = join_all(ids.iter().map(|id| s.wait_terminal(*id))).await;

    let completed: Vec<_> = orders
        .iter()
        .filter(|o| o["status"] == "COMPLETED")
        .collect();
    let failed = orders.iter().filter(|o| o["status"] == "FAILED").count();
    assert_eq!((completed.len(), failed), (50, 150));
    assert!(
        orders
            .iter()
            .filter(|o| o["status"] == "FAILED")
            .all(|o| o["failure_code"] == "insufficient_stock")
    );
    assert_eq!(
        s.stock(product).await,
        0,
        "initial stock = current + held by completed orders"
    );

    // Balance: every completed order's user paid 10.00, nobody else paid anything.
    for order in &orders {
        let user = order["user_id"].as_i64().unwrap();
        let expected = if order["status"] == "COMPLETED" {
            "90.00"
        } else {
            "100.00"
        };
        assert_eq!(s.balance(user).await, expected, "user {user}");
    }
    // Ledgers agree with state.
    let product_db = &s.dbs[PRODUCT];
    assert_eq!(
        count(
            product_db,
            "SELECT count(*) AS count FROM stock_movements WHERE kind = 'RESERVE'"
        )
        .await,
        50
    );
    let paid = count(
        &s.dbs[system::BALANCE],
        "SELECT count(*) AS count FROM balance_history WHERE kind = 'PAYMENT'",
    )
    .await;
    assert_eq!(paid, 50);
    s.assert_settled().await;
    s.stop().await;
}

#[tokio::test]
async fn a_saga_event_published_twice_has_one_effect() {
    let s = System::start().await;
    let product = s.create_product("cable", "9.99", 10).await;
    s.charge(1, "100.00").await;
    let id = s.place(1, &[(product, 2)], None).await;
    assert_eq!(s.wait_terminal(id).await["status"], "COMPLETED");

    // Replay the saga's first event, as recorded by the monitor, straight to the exchange.
    let (_, timeline) = s.app(system::MONITOR).get(&format!("/sagas/{id}")).await;
    let first = &timeline["events"][0];
    assert_eq!(first["event_type"], OrderProcessingStarted::TYPE);
    let started = Envelope {
        event_id: first["event_id"].as_str().unwrap().parse().unwrap(),
        event_type: OrderProcessingStarted::TYPE.into(),
        schema_version: 1,
        saga_id: Some(id),
        causation_id: None,
        occurred_at: first["occurred_at"].as_str().unwrap().parse().unwrap(),
        traceparent: None,
        payload: first["payload"].clone(),
    };
    publish(&s.amqp, &started, OrderProcessingStarted::ROUTING_KEY).await;
    publish(&s.amqp, &started, OrderProcessingStarted::ROUTING_KEY).await;
    // And a different message asking for the same order's reservation again.
    let again = Envelope::new(
        &OrderProcessingStarted {
            command: OrderCommand {
                order_id: id,
                user_id: 1,
                items: vec![OrderLine {
                    product_id: product,
                    quantity: 2,
                }],
                user_coupon_id: None,
            },
        },
        Some(id),
    )
    .unwrap();
    publish(&s.amqp, &again, OrderProcessingStarted::ROUTING_KEY).await;

    s.assert_settled().await;
    assert_eq!(s.stock(product).await, 8, "reserved once");
    assert_eq!(s.balance(1).await, "80.02", "paid once");
    assert_eq!(s.wait_terminal(id).await["status"], "COMPLETED");
    let reservations = count(
        &s.dbs[PRODUCT],
        "SELECT count(*) AS count FROM stock_movements WHERE kind = 'RESERVE'",
    )
    .await;
    assert_eq!(reservations, 1);
    s.stop().await;
}

#[tokio::test]
async fn an_idempotency_key_replays_the_same_order_and_refuses_another_body() {
    let s = System::start().await;
    let product = s.create_product("cable", "9.99", 10).await;
    s.charge(1, "100.00").await;
    let body = json!({"user_id": 1, "items": [{"product_id": product, "quantity": 1}]});
    let post = |body: serde_json::Value, key: &'static str| {
        let app = s.app(ORDER);
        async move {
            let response = app
                .client
                .post(app.url("/orders"))
                .header("Idempotency-Key", key)
                .json(&body)
                .send()
                .await
                .unwrap();
            (
                response.status().as_u16(),
                response.json::<serde_json::Value>().await.unwrap(),
            )
        }
    };
    let (first, second) = tokio::join!(post(body.clone(), "k-1"), post(body.clone(), "k-1"));
    let mut statuses = [first.0, second.0];
    statuses.sort();
    assert_eq!(
        statuses,
        [200, 202],
        "one creates, the concurrent twin replays"
    );
    assert_eq!(first.1["order_id"], second.1["order_id"]);
    let id = first.1["order_id"].as_i64().unwrap();

    let (status, replay) = post(body.clone(), "k-1").await;
    assert_eq!((status, replay["order_id"].as_i64()), (200, Some(id)));
    let other = json!({"user_id": 1, "items": [{"product_id": product, "quantity": 2}]});
    let (status, conflict) = post(other, "k-1").await;
    assert_eq!(
        (status, conflict["error"]["code"].as_str()),
        (409, Some("idempotency_key_reused"))
    );

    s.wait_terminal(id).await;
    s.assert_settled().await;
    let (_, listed) = s.app(ORDER).get("/orders?user_id=1").await;
    assert_eq!(
        listed["orders"].as_array().unwrap().len(),
        1,
        "one order for one key"
    );
    assert_eq!(s.stock(product).await, 9);
    s.stop().await;
}

#[tokio::test]
async fn the_long_poll_is_woken_by_a_completion_on_another_instance() {
    let mut s = System::start().await;
    let product = s.create_product("cable", "9.99", 10).await;
    s.charge(1, "100.00").await;

    // A second order-service instance on the same database, consuming nothing of this saga
    // (another AMQP prefix): only the database's NOTIFY can wake its waiters.
    let elsewhere = TestAmqp::new().await;
    let second = TestApp::start(
        order_service::build(&service_settings(ORDER, &s.dbs[ORDER], &elsewhere))
            .await
            .unwrap(),
    );
    second.wait_ready().await;

    // The balance service is down: the saga stalls before payment, the order stays PENDING.
    s.apps.remove(BALANCE).unwrap().stop().await;
    let id = s.place(1, &[(product, 1)], None).await;
    let poll = tokio::spawn({
        let url = second.url(&format!("/orders/{id}?wait_ms=30000"));
        let client = second.client.clone();
        async move {
            let started = Instant::now();
            let order: serde_json::Value =
                client.get(url).send().await.unwrap().json().await.unwrap();
            (order, started.elapsed())
        }
    });
    assert_eq!(s.orders().order(id).await["status"], "PENDING");

    // Balance comes back; the first instance completes the order; the waiter on the second wakes.
    let balance = TestApp::start(
        balance_service::build(&service_settings(BALANCE, &s.dbs[BALANCE], &s.amqp))
            .await
            .unwrap(),
    );
    let (order, waited) = poll.await.unwrap();
    assert_eq!(order["status"], "COMPLETED", "{order}");
    assert!(
        waited < Duration::from_secs(25),
        "woken by the completion, not by the 30 s cap"
    );

    // With nothing to wait for, the poll answers at once; an unknown order is a 404.
    let (status, order) = second.get(&format!("/orders/{id}?wait_ms=100")).await;
    assert_eq!((status, order["status"].as_str()), (200, Some("COMPLETED")));
    assert_eq!(second.get("/orders/424242?wait_ms=100").await.0, 404);
    assert_eq!(
        second.get(&format!("/orders/{id}?wait_ms=-1")).await.1["error"]["field"],
        "wait_ms"
    );
    second.stop().await;
    s.apps.insert(BALANCE, balance);
    s.assert_settled().await;
    s.stop().await;
}
