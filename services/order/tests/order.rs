//! The order service's HTTP contract on its own: validation names the field, unknown ids are
//! 404, listing pages, and an accepted order writes exactly its saga's first event.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use serde_json::{Value, json};
use shared::envelope::SagaEvent;
use shared::events::OrderProcessingStarted;
use testkit::service::{TestApp, outbox_events, service_settings};
use testkit::{TestAmqp, TestDb, init_tracing};

async fn start() -> (TestDb, TestAmqp, TestApp) {
    init_tracing();
    let db = TestDb::with_migrations(vec![order_service::MIGRATIONS]).await;
    let amqp = TestAmqp::new().await;
    let app = TestApp::start(
        order_service::build(&service_settings(order_service::NAME, &db, &amqp))
            .await
            .unwrap(),
    );
    app.wait_ready().await;
    (db, amqp, app)
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
    for _ in 0..3 {
        app.post(
            "/orders",
            &json!({"user_id": 4, "items": [line(json!(1), json!(1))]}),
        )
        .await;
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
