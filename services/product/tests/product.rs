//! The product service, black-box: real HTTP on port 0, its own database, its own AMQP prefix.
//! Saga steps are driven by publishing events to the exchange and observed in the outbox.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use std::str::FromStr;
use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::{Value, json};
use shared::envelope::{Envelope, SagaEvent};
use shared::events::{
    CouponFailed, CouponRestored, FailureReason, OrderCommand, OrderLine, OrderProcessingStarted,
    PricedItem, StockFailed, StockProcessed, StockRestored,
};
use testkit::effects::count;
use testkit::service::{Setup, TestApp, outbox_events, publish};
use testkit::{TestDb, eventually_async};

async fn start() -> Setup {
    Setup::start(
        product_service::NAME,
        product_service::MIGRATIONS,
        product_service::build,
    )
    .await
}

fn money(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap()
}

/// Order `order_id` of user 9, without a coupon, for `(product_id, quantity)` lines.
fn command(order_id: i64, lines: &[(i64, i32)]) -> OrderCommand {
    OrderCommand {
        order_id,
        user_id: 9,
        items: lines
            .iter()
            .map(|&(product_id, quantity)| OrderLine {
                product_id,
                quantity,
            })
            .collect(),
        user_coupon_id: None,
    }
}

fn started(order_id: i64, lines: &[(i64, i32)]) -> Envelope {
    let event = OrderProcessingStarted {
        command: command(order_id, lines),
    };
    Envelope::new(&event, Some(order_id)).unwrap()
}

/// Creates a product; returns its id.
async fn create(app: &TestApp, name: &str, price: &str, stock: i64) -> i64 {
    let (status, body) = app
        .post(
            "/products",
            &json!({"name": name, "price": price, "stock": stock}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["product_id"].as_i64().unwrap()
}

async fn stock_of(app: &TestApp, id: i64) -> i64 {
    let (status, body) = app.get(&format!("/products/{id}")).await;
    assert_eq!(status, 200, "{body}");
    body["stock"].as_i64().unwrap()
}

async fn wait_for_events(db: &TestDb, count: usize) -> Vec<Envelope> {
    eventually_async(
        Duration::from_secs(20),
        &format!("{count} outbox events"),
        || async {
            let events = outbox_events(db).await;
            (events.len() >= count).then_some(events)
        },
    )
    .await
}

async fn wait_for_inbox(db: &TestDb, messages: i64) {
    eventually_async(
        Duration::from_secs(20),
        &format!("{messages} distinct messages handled"),
        || async {
            (count(db, "SELECT count(*) AS count FROM inbox").await == messages).then_some(())
        },
    )
    .await;
}

async fn movements(db: &TestDb, filter: &str) -> i64 {
    count(
        db,
        &format!("SELECT count(*) AS count FROM stock_movements WHERE {filter}"),
    )
    .await
}

#[tokio::test]
async fn products_are_created_read_and_listed_by_page() {
    let s = start().await;
    let (status, created) = s
        .app
        .post(
            "/products",
            &json!({"name": "Laptop", "price": 1200, "stock": 7}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["product_id"].as_i64().unwrap();
    let expected = json!({"product_id": id, "name": "Laptop", "price": "1200.00", "stock": 7});
    assert_eq!(created, expected);
    assert_eq!(s.app.get(&format!("/products/{id}")).await, (200, expected));
    let second = create(&s.app, "Mouse", "19.9", 0).await;
    let third = create(&s.app, &"é".repeat(200), "0", 1).await;
    assert_eq!(
        s.app.get(&format!("/products/{second}")).await.1["price"],
        "19.90"
    );

    let (status, page) = s.app.get("/products?page=1&page_size=2").await;
    assert_eq!(status, 200, "{page}");
    let ids: Vec<i64> = page["products"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["product_id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, vec![id, second]);
    assert_eq!(
        (&page["page"], &page["page_size"], &page["has_more"]),
        (&json!(1), &json!(2), &json!(true))
    );
    let (_, page) = s.app.get("/products?page=2&page_size=2").await;
    assert_eq!(page["products"].as_array().unwrap().len(), 1);
    assert_eq!(page["products"][0]["product_id"], third);
    assert_eq!(page["has_more"], false);
    let (_, page) = s.app.get("/products").await;
    assert_eq!(page["products"].as_array().unwrap().len(), 3);
    assert_eq!(page["page_size"], 20);
    s.app.stop().await;
}

#[tokio::test]
async fn stock_is_adjusted_but_never_below_zero() {
    let s = start().await;
    let id = create(&s.app, "Chair", "45.00", 5).await;
    let path = format!("/products/{id}/stock");
    let (status, body) = s.app.post(&path, &json!({"delta": 10})).await;
    assert_eq!((status, &body["stock"]), (200, &json!(15)), "{body}");
    assert_eq!(body["price"], "45.00");
    let (status, body) = s.app.post(&path, &json!({"delta": -12})).await;
    assert_eq!((status, &body["stock"]), (200, &json!(3)), "{body}");

    let (status, body) = s.app.post(&path, &json!({"delta": -4})).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "insufficient_stock");
    assert_eq!(
        stock_of(&s.app, id).await,
        3,
        "a refused adjustment changes nothing"
    );
    let (status, body) = s.app.post(&path, &json!({"delta": -3})).await;
    assert_eq!((status, &body["stock"]), (200, &json!(0)), "{body}");

    let full = create(&s.app, "Screw", "0.01", 1_000_000_000).await;
    let (status, body) = s
        .app
        .post(&format!("/products/{full}/stock"), &json!({"delta": 1}))
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (409, &json!("stock_limit"))
    );
    assert_eq!(stock_of(&s.app, full).await, 1_000_000_000);

    let recorded = format!("kind = 'ADJUST' AND order_id IS NULL AND product_id = {id}");
    assert_eq!(
        movements(&s.db, &recorded).await,
        3,
        "one row per adjustment"
    );
    assert_eq!(
        movements(
            &s.db,
            &format!("{recorded} AND delta = -12 AND stock_after = 3")
        )
        .await,
        1
    );
    assert_eq!(
        movements(&s.db, "true").await,
        3,
        "refusals are not recorded"
    );
    s.app.stop().await;
}

fn assert_refused(what: &str, (status, body): (u16, Value), expected: u16, field: &str) {
    assert_eq!(status, expected, "{what}: {body}");
    let error = &body["error"];
    if expected == 422 {
        assert_eq!(error["code"], "validation_failed", "{what}: {body}");
        assert_eq!(error["field"], field, "{what}: {body}");
    } else {
        let named = error["field"].as_str().unwrap_or_default().contains(field)
            || error["message"]
                .as_str()
                .unwrap_or_default()
                .contains(field);
        assert!(named, "{what}: {body}");
    }
}

#[tokio::test]
async fn bad_requests_are_refused_naming_the_field() {
    let s = start().await;
    let id = create(&s.app, "Lamp", "10.00", 2).await;
    let long = "x".repeat(201);
    for (body, status, field) in [
        (json!({"name": "", "price": "1", "stock": 1}), 422, "name"),
        (
            json!({"name": "   ", "price": "1", "stock": 1}),
            422,
            "name",
        ),
        (json!({"name": long, "price": "1", "stock": 1}), 422, "name"),
        (
            json!({"name": "a", "price": "-0.01", "stock": 1}),
            422,
            "price",
        ),
        (
            json!({"name": "a", "price": "1.001", "stock": 1}),
            422,
            "price",
        ),
        (
            json!({"name": "a", "price": "1000000000000", "stock": 1}),
            422,
            "price",
        ),
        (
            json!({"name": "a", "price": "cheap", "stock": 1}),
            400,
            "price",
        ),
        (
            json!({"name": "a", "price": "1", "stock": -1}),
            422,
            "stock",
        ),
        (
            json!({"name": "a", "price": "1", "stock": 1_000_000_001}),
            422,
            "stock",
        ),
        (
            json!({"name": "a", "price": "1", "stock": "5"}),
            400,
            "stock",
        ),
        (json!({"name": "a", "price": "1"}), 400, "stock"),
        (
            json!({"name": "a", "price": "1", "stock": 1, "x": 1}),
            400,
            "x",
        ),
    ] {
        let got = s.app.post("/products", &body).await;
        assert_refused(&body.to_string(), got, status, field);
    }
    let path = format!("/products/{id}/stock");
    for (body, status) in [
        (json!({"delta": 0}), 422),
        (json!({"delta": 1_000_000_001}), 422),
        (json!({"delta": -1_000_000_001}), 422),
        (json!({"delta": 1.5}), 400),
        (json!({}), 400),
    ] {
        let got = s.app.post(&path, &body).await;
        assert_refused(&body.to_string(), got, status, "delta");
    }
    let response = s
        .app
        .client
        .post(s.app.url("/products"))
        .header("content-type", "application/json")
        .body(r#"{"name": "a", "price""#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400, "malformed JSON");

    let (status, body) = s.app.get("/products/999").await;
    assert_eq!((status, &body["error"]["code"]), (404, &json!("not_found")));
    let (status, _) = s
        .app
        .post("/products/999/stock", &json!({"delta": 1}))
        .await;
    assert_eq!(status, 404);
    assert_eq!(s.app.get("/products/abc").await.0, 400);
    assert_eq!(
        s.app
            .post("/products/abc/stock", &json!({"delta": 1}))
            .await
            .0,
        400
    );
    assert_refused("page 0", s.app.get("/products?page=0").await, 422, "page");
    assert_refused(
        "page_size 101",
        s.app.get("/products?page_size=101").await,
        422,
        "page_size",
    );

    let (_, page) = s.app.get("/products").await;
    assert_eq!(
        page["products"].as_array().unwrap().len(),
        1,
        "nothing created"
    );
    assert_eq!(stock_of(&s.app, id).await, 2, "nothing adjusted");
    s.app.stop().await;
}

#[tokio::test]
async fn a_reservation_takes_the_stock_and_prices_the_items() {
    let s = start().await;
    let laptop = create(&s.app, "Laptop", "600.10", 5).await;
    let cable = create(&s.app, "Cable", "0.99", 3).await;
    let event = started(21, &[(laptop, 2), (cable, 1)]);
    publish(&s.amqp, &event, OrderProcessingStarted::ROUTING_KEY).await;
    let events = wait_for_events(&s.db, 1).await;
    assert_eq!(events[0].event_type, StockProcessed::TYPE);
    assert_eq!(events[0].causation_id, Some(event.event_id));
    assert_eq!(events[0].saga_id, Some(21));
    let processed: StockProcessed = events[0].decode().unwrap();
    assert_eq!(processed.command, command(21, &[(laptop, 2), (cable, 1)]));
    assert_eq!(
        processed.items,
        vec![
            PricedItem {
                product_id: laptop,
                quantity: 2,
                unit_price: money("600.10"),
            },
            PricedItem {
                product_id: cable,
                quantity: 1,
                unit_price: money("0.99"),
            },
        ]
    );
    assert_eq!(processed.total_amount.to_string(), "1201.19");

    assert_eq!(stock_of(&s.app, laptop).await, 3);
    assert_eq!(stock_of(&s.app, cable).await, 2);
    let reserve = "kind = 'RESERVE' AND order_id = 21";
    assert_eq!(movements(&s.db, reserve).await, 2);
    let laptop_row =
        format!("{reserve} AND product_id = {laptop} AND delta = -2 AND stock_after = 3");
    assert_eq!(movements(&s.db, &laptop_row).await, 1);
    let cable_row =
        format!("{reserve} AND product_id = {cable} AND delta = -1 AND stock_after = 2");
    assert_eq!(movements(&s.db, &cable_row).await, 1);
    s.app.stop().await;
}

#[tokio::test]
async fn a_short_item_fails_the_whole_order() {
    let s = start().await;
    let plenty = create(&s.app, "Pen", "1.00", 5).await;
    let scarce = create(&s.app, "Ink", "3.00", 1).await;
    publish(
        &s.amqp,
        &started(22, &[(plenty, 2), (scarce, 2)]),
        OrderProcessingStarted::ROUTING_KEY,
    )
    .await;
    let events = wait_for_events(&s.db, 1).await;
    assert_eq!(events[0].event_type, StockFailed::TYPE);
    let failed: StockFailed = events[0].decode().unwrap();
    assert_eq!(failed.reason.code, "insufficient_stock");
    assert!(
        failed.reason.message.contains(&format!("product {scarce}")),
        "{}",
        failed.reason.message
    );
    assert_eq!(failed.command.order_id, 22);
    assert_eq!(stock_of(&s.app, plenty).await, 5, "all or nothing");
    assert_eq!(stock_of(&s.app, scarce).await, 1);
    assert_eq!(movements(&s.db, "true").await, 0);
    s.app.stop().await;
}

#[tokio::test]
async fn an_unknown_product_fails_the_order() {
    let s = start().await;
    let known = create(&s.app, "Cup", "2.50", 4).await;
    publish(
        &s.amqp,
        &started(23, &[(known, 1), (999, 1)]),
        OrderProcessingStarted::ROUTING_KEY,
    )
    .await;
    let events = wait_for_events(&s.db, 1).await;
    assert_eq!(events[0].event_type, StockFailed::TYPE);
    let failed: StockFailed = events[0].decode().unwrap();
    assert_eq!(failed.reason.code, "product_not_found");
    assert!(failed.reason.message.contains("999"), "{:?}", failed.reason);
    assert_eq!(stock_of(&s.app, known).await, 4);
    assert_eq!(movements(&s.db, "true").await, 0);
    s.app.stop().await;
}

#[tokio::test]
async fn an_order_is_reserved_once_whatever_arrives_twice() {
    let s = start().await;
    let id = create(&s.app, "Book", "12.00", 10).await;
    let event = started(24, &[(id, 3)]);
    publish(&s.amqp, &event, OrderProcessingStarted::ROUTING_KEY).await;
    publish(&s.amqp, &event, OrderProcessingStarted::ROUTING_KEY).await; // redelivered
    // A different message for the same order's reservation.
    publish(
        &s.amqp,
        &started(24, &[(id, 3)]),
        OrderProcessingStarted::ROUTING_KEY,
    )
    .await;
    wait_for_inbox(&s.db, 2).await;
    let events = outbox_events(&s.db).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].event_type, StockProcessed::TYPE);
    assert_eq!(stock_of(&s.app, id).await, 7);
    assert_eq!(movements(&s.db, "kind = 'RESERVE'").await, 1);
    s.app.stop().await;
}

fn coupon_failed(order_id: i64, lines: &[(i64, i32)]) -> Envelope {
    let event = CouponFailed {
        command: command(order_id, lines),
        // What the event claims does not matter: the ledger says what was reserved.
        items: vec![PricedItem {
            product_id: lines[0].0,
            quantity: 99,
            unit_price: money("1.00"),
        }],
        total_amount: money("99.00"),
        reason: FailureReason::new("coupon_expired", "coupon 5 expired"),
    };
    Envelope::new(&event, Some(order_id)).unwrap()
}

#[tokio::test]
async fn a_failed_coupon_gives_back_exactly_the_reservation_once() {
    let s = start().await;
    let a = create(&s.app, "Desk", "150.00", 5).await;
    let b = create(&s.app, "Shelf", "40.00", 4).await;
    let lines = [(b, 1), (a, 2)];
    publish(
        &s.amqp,
        &started(31, &lines),
        OrderProcessingStarted::ROUTING_KEY,
    )
    .await;
    wait_for_events(&s.db, 1).await;
    assert_eq!(
        (stock_of(&s.app, a).await, stock_of(&s.app, b).await),
        (3, 3)
    );
    // Stock moved by someone else meanwhile is not the order's to give back.
    s.app
        .post(&format!("/products/{a}/stock"), &json!({"delta": -1}))
        .await;

    let failure = coupon_failed(31, &lines);
    publish(&s.amqp, &failure, CouponFailed::ROUTING_KEY).await;
    let events = wait_for_events(&s.db, 2).await;
    assert_eq!(events[1].event_type, StockRestored::TYPE);
    assert_eq!(events[1].causation_id, Some(failure.event_id));
    let restored: StockRestored = events[1].decode().unwrap();
    assert_eq!(restored.command, command(31, &lines));
    assert_eq!(
        restored.reason,
        FailureReason::new("coupon_expired", "coupon 5 expired")
    );
    assert_eq!(
        (stock_of(&s.app, a).await, stock_of(&s.app, b).await),
        (4, 4)
    );
    let restore = "kind = 'RESTORE' AND order_id = 31";
    assert_eq!(
        movements(
            &s.db,
            &format!("{restore} AND product_id = {a} AND delta = 2 AND stock_after = 4")
        )
        .await,
        1
    );

    // The same restoration again, and another message asking for it: nothing more.
    publish(&s.amqp, &failure, CouponFailed::ROUTING_KEY).await;
    let again = CouponRestored {
        command: command(31, &lines),
        items: vec![],
        reason: FailureReason::new("insufficient_balance", "late"),
    };
    publish(
        &s.amqp,
        &Envelope::new(&again, Some(31)).unwrap(),
        CouponRestored::ROUTING_KEY,
    )
    .await;
    wait_for_inbox(&s.db, 3).await;
    assert_eq!(outbox_events(&s.db).await.len(), 2, "restored once");
    assert_eq!(movements(&s.db, restore).await, 2);
    assert_eq!(
        (stock_of(&s.app, a).await, stock_of(&s.app, b).await),
        (4, 4)
    );
    s.app.stop().await;
}

#[tokio::test]
async fn restoring_an_order_that_reserved_nothing_still_ends_the_saga() {
    let s = start().await;
    let id = create(&s.app, "Rug", "80.00", 2).await;
    publish(
        &s.amqp,
        &coupon_failed(32, &[(id, 1)]),
        CouponFailed::ROUTING_KEY,
    )
    .await;
    let events = wait_for_events(&s.db, 1).await;
    assert_eq!(events[0].event_type, StockRestored::TYPE);
    assert_eq!(stock_of(&s.app, id).await, 2, "nothing to give back");
    assert_eq!(movements(&s.db, "true").await, 0);
    s.app.stop().await;
}

#[tokio::test]
async fn concurrent_orders_never_oversell() {
    let s = start().await;
    let id = create(&s.app, "Console", "499.99", 5).await;
    for order_id in 100..120 {
        publish(
            &s.amqp,
            &started(order_id, &[(id, 1)]),
            OrderProcessingStarted::ROUTING_KEY,
        )
        .await;
    }
    let events = wait_for_events(&s.db, 20).await;
    let of_type = |name: &str| events.iter().filter(|e| e.event_type == name).count();
    assert_eq!(of_type(StockProcessed::TYPE), 5);
    assert_eq!(of_type(StockFailed::TYPE), 15);
    assert_eq!(stock_of(&s.app, id).await, 0);
    assert_eq!(movements(&s.db, "kind = 'RESERVE'").await, 5);
    for failed in events.iter().filter(|e| e.event_type == StockFailed::TYPE) {
        let failed: StockFailed = failed.decode().unwrap();
        assert_eq!(failed.reason.code, "insufficient_stock");
    }
    s.app.stop().await;
}
