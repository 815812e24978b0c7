//! The order service on its own: validation names the field, unknown ids are 404, listing
//! pages, an accepted order writes exactly its saga's first event, and the end of a
//! cancellation emits `OrderCancelled` only for the order it cancelled; the deadline sweep
//! ([`deadline`]).

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

#[path = "order/command_line.rs"]
mod command_line;

use std::time::Duration;

use diesel::sql_types::BigInt;
use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
use serde_json::{Value, json};
use shared::envelope::{Envelope, SagaEvent};
use shared::events::{
    BalanceRestorationRequested, FailureReason, OrderCancelled, OrderCommand, OrderLine,
    OrderProcessingStarted, StockRestored,
};
use testkit::clients::OrderClient;
use testkit::effects::count;
use testkit::service::{Setup, TestApp, outbox_events, publish};
use testkit::{TestAmqp, TestDb, eventually_async};

#[path = "order/deadline.rs"]
mod deadline;

async fn start() -> (TestDb, TestAmqp, TestApp) {
    let Setup { db, amqp, app } = Setup::start(
        order_service::NAME,
        order_service::MIGRATIONS,
        order_service::build,
    )
    .await;
    (db, amqp, app)
}

/// Places an order of user 3 and moves it to `status` with 25.00 paid, as its saga would.
async fn order_in(db: &TestDb, app: &TestApp, status: &str) -> i64 {
    let id = OrderClient::new(app).place(3, &[(1, 2)], None).await;
    let mut conn = db.connect().await;
    diesel::sql_query(format!(
        "UPDATE orders SET status = '{status}', total_amount = 25, discount_amount = 0, \
         paid_amount = 25 WHERE id = $1"
    ))
    .bind::<BigInt, _>(id)
    .execute(&mut conn)
    .await
    .unwrap();
    id
}

fn line(product_id: Value, quantity: Value) -> Value {
    json!({"product_id": product_id, "quantity": quantity})
}

#[tokio::test]
async fn every_rule_is_answered_with_its_status_and_field() {
    let (db, _amqp, app) = start().await;
    let many: Vec<Value> = (1..=51).map(|p| line(json!(p), json!(1))).collect();
    let cases = [
        (
            json!({"user_id": 0, "items": [line(json!(1), json!(1))]}),
            422,
            "user_id",
        ),
        (json!({"user_id": 1, "items": []}), 422, "items"),
        (json!({"user_id": 1, "items": many}), 422, "items"),
        (
            json!({"user_id": 1, "items": [line(json!(1), json!(0))]}),
            422,
            "items[0].quantity",
        ),
        (
            json!({"user_id": 1, "items": [line(json!(1), json!(1001))]}),
            422,
            "items[0].quantity",
        ),
        (
            json!({"user_id": 1, "items": [line(json!(1), json!(1)), line(json!(1), json!(2))]}),
            422,
            "items[1].product_id",
        ),
        (
            json!({"user_id": 1, "items": [line(json!(-1), json!(1))]}),
            422,
            "items[0].product_id",
        ),
        (
            json!({"user_id": 1, "items": [line(json!(1), json!(1))], "user_coupon_id": -3}),
            422,
            "user_coupon_id",
        ),
        (
            json!({"user_id": "one", "items": [line(json!(1), json!(1))]}),
            400,
            "user_id",
        ),
        (json!({"items": [line(json!(1), json!(1))]}), 400, "user_id"),
        (
            json!({"user_id": 1, "items": [line(json!(1), json!("2"))]}),
            400,
            "items[0].quantity",
        ),
        (
            json!({"user_id": 1, "items": [line(json!(1), json!(1))], "surprise": true}),
            400,
            "surprise",
        ),
    ];
    for (body, status, field) in cases {
        let (got, error) = app.post("/orders", &body).await;
        assert_eq!(got, status, "{body} → {error}");
        let named = error["error"]["field"].as_str().unwrap_or_default();
        let message = error["error"]["message"].as_str().unwrap_or_default();
        assert!(
            named == field || message.contains(field),
            "{body} → {error}"
        );
    }
    let response = app
        .client
        .post(app.url("/orders"))
        .body("{not json")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(
        outbox_events(&db).await.is_empty(),
        "no refused request started a saga"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_accepted_order_is_pending_and_starts_its_saga() {
    let (db, _amqp, app) = start().await;
    let (status, accepted) = app
        .post("/orders", &json!({"user_id": 9, "items": [line(json!(3), json!(2)), line(json!(4), json!(1))], "user_coupon_id": 5}))
        .await;
    assert_eq!(
        (status, accepted["status"].as_str()),
        (202, Some("PENDING"))
    );
    let id = accepted["order_id"].as_i64().unwrap();
    let (status, order) = app.get(&format!("/orders/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(order["items"].as_array().unwrap().len(), 2);
    assert_eq!(
        order["total_amount"],
        Value::Null,
        "amounts are null until known"
    );
    let events = outbox_events(&db).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event_type, OrderProcessingStarted::TYPE);
    assert_eq!(events[0].saga_id, Some(id));
    let started: OrderProcessingStarted = events[0].decode().unwrap();
    assert_eq!(
        (started.command.user_id, started.command.user_coupon_id),
        (9, Some(5))
    );
    app.stop().await;
}

#[tokio::test]
async fn orders_are_listed_newest_first_in_pages_and_unknown_ids_are_404() {
    let (_db, _amqp, app) = start().await;
    let orders = OrderClient::new(&app);
    for _ in 0..3 {
        orders.place(4, &[(1, 1)], None).await;
    }
    let (status, first) = app.get("/orders?user_id=4&page_size=2").await;
    assert_eq!(status, 200);
    let ids: Vec<i64> = first["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["order_id"].as_i64().unwrap())
        .collect();
    assert!(ids[0] > ids[1] && first["has_more"] == true, "{first}");
    let (_, second) = app.get("/orders?user_id=4&page_size=2&page=2").await;
    assert_eq!(
        (
            second["orders"].as_array().unwrap().len(),
            second["has_more"].as_bool()
        ),
        (1, Some(false))
    );
    assert_eq!(app.get("/orders?user_id=5").await.1["orders"], json!([]));
    assert_eq!(app.get("/orders").await.1["error"]["field"], "user_id");
    assert_eq!(
        app.get("/orders?user_id=4&page_size=500").await.1["error"]["field"],
        "page_size"
    );
    assert_eq!(app.get("/orders/987654").await.0, 404);
    assert_eq!(app.get("/orders/abc").await.0, 400);
    let (status, error) = app.post("/orders/987654/cancel", &json!({})).await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let (_, pending) = app.get("/orders?user_id=4&page_size=1").await;
    let pending_id = pending["orders"][0]["order_id"].as_i64().unwrap();
    let (status, error) = app
        .post(&format!("/orders/{pending_id}/cancel"), &json!({}))
        .await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (409, Some("not_cancellable"))
    );
    app.stop().await;
}

#[tokio::test]
async fn a_nul_in_the_body_is_a_422_naming_it_and_unknown_paths_answer_json() {
    let (_db, _amqp, app) = start().await;
    let body =
        json!({"user_id": 1, "items": [{"product_id": 1, "quantity": 1, "gift_note": "\u{0}"}]});
    app.assert_refused("/orders", &body, "items[0].gift_note")
        .await;
    app.assert_routing_errors_are_json(&[
        ("GET", "/nope"),
        ("GET", "/orders/"),
        ("POST", "/orders//cancel"),
        ("DELETE", "/orders/1"),
    ])
    .await;
    app.stop().await;
}

#[tokio::test]
async fn a_cancellation_carries_the_request_trace_context() {
    let (db, _amqp, app) = start().await;
    let id = order_in(&db, &app, "COMPLETED").await;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let response = app
        .client
        .post(app.url(&format!("/orders/{id}/cancel")))
        .header("traceparent", traceparent)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let events = outbox_events(&db).await;
    let refund = events
        .iter()
        .find(|e| e.event_type == BalanceRestorationRequested::TYPE)
        .expect("the refund request");
    assert_eq!(refund.traceparent.as_deref(), Some(traceparent));
    let (_, row) = app.get(&format!("/orders/{id}")).await;
    assert_eq!(row["status"], "CANCELLING");
    app.stop().await;
}

#[tokio::test]
async fn the_end_of_a_compensation_emits_order_cancelled_only_when_it_cancelled_the_order() {
    let (db, amqp, app) = start().await;
    let id = order_in(&db, &app, "CANCELLING").await;
    // Another transaction holds the order while the event arrives, and settles it first.
    let mut holder = db.connect().await;
    holder
        .batch_execute(&format!(
            "BEGIN; SELECT 1 FROM orders WHERE id = {id} FOR UPDATE"
        ))
        .await
        .unwrap();
    let restored = StockRestored {
        command: OrderCommand {
            order_id: id,
            user_id: 3,
            items: vec![OrderLine {
                product_id: 1,
                quantity: 2,
            }],
            user_coupon_id: None,
        },
        reason: FailureReason::new("cancelled", "cancelled at the user's request"),
    };
    let envelope = Envelope::new(&restored, Some(id)).unwrap();
    publish(&amqp, &envelope, StockRestored::ROUTING_KEY).await;
    let waiting = "SELECT count(*) AS count FROM pg_stat_activity \
                   WHERE datname = current_database() AND wait_event_type = 'Lock'";
    eventually_async(
        Duration::from_secs(20),
        "the handler to wait for the order",
        || async { (count(&db, waiting).await > 0).then_some(()) },
    )
    .await;
    holder
        .batch_execute(&format!(
            "UPDATE orders SET status = 'CANCELLED' WHERE id = {id}; COMMIT"
        ))
        .await
        .unwrap();
    let claimed = format!(
        "SELECT count(*) AS count FROM inbox WHERE message_id = '{}'",
        envelope.event_id
    );
    eventually_async(
        Duration::from_secs(20),
        "the event to be applied",
        || async { (count(&db, &claimed).await == 1).then_some(()) },
    )
    .await;
    let cancelled = outbox_events(&db)
        .await
        .into_iter()
        .filter(|e| e.event_type == OrderCancelled::TYPE)
        .count();
    assert_eq!(
        cancelled, 0,
        "OrderCancelled for an order this event did not cancel"
    );
    app.stop().await;
}
