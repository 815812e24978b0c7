//! The balance service, black-box: real HTTP on port 0, its own database, its own AMQP prefix.
//! Saga steps are driven by publishing events to the exchange and observed in the outbox.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

#[path = "balance/command_line.rs"]
mod command_line;
#[path = "balance/inbox_window.rs"]
mod inbox_window;
#[path = "balance/otlp.rs"]
mod otlp;
#[path = "balance/timeout.rs"]
mod timeout;

use std::str::FromStr;
use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::json;
use shared::envelope::{Envelope, SagaEvent};
use shared::events::{
    BalanceProcessed, BalanceProcessingFailed, BalanceRestorationRequested, CouponProcessed,
    FailureReason, OrderCommand, OrderLine, PaymentRefunded, PricedItem,
};
use testkit::clients::BalanceClient;
use testkit::service::{Setup, TestApp, outbox_events, publish, service_settings};
use testkit::{TestAmqp, TestDb, eventually_async, init_tracing};

async fn start() -> Setup {
    Setup::start(
        balance_service::NAME,
        balance_service::MIGRATIONS,
        balance_service::build,
    )
    .await
}

fn money(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap()
}

fn command(order_id: i64, user_id: i64) -> OrderCommand {
    OrderCommand {
        order_id,
        user_id,
        items: vec![OrderLine {
            product_id: 1,
            quantity: 2,
        }],
        user_coupon_id: None,
    }
}

fn items() -> Vec<PricedItem> {
    vec![PricedItem {
        product_id: 1,
        quantity: 2,
        unit_price: money("60.00"),
    }]
}

fn coupon_processed(order_id: i64, user_id: i64, to_pay: &str) -> Envelope {
    let event = CouponProcessed {
        command: command(order_id, user_id),
        items: items(),
        total_amount: money("120.00"),
        discount_amount: money("120.00") - money(to_pay),
        amount_to_pay: money(to_pay),
    };
    Envelope::new(&event, Some(order_id)).unwrap()
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

#[tokio::test]
async fn charging_adds_up_and_the_history_explains_it() {
    let s = start().await;
    assert_eq!(
        s.app.get("/balances/7").await,
        (200, json!({"user_id": 7, "balance": "0.00"}))
    );
    assert_eq!(
        s.app
            .post("/balances/7/charge", &json!({"amount": "100.50"}))
            .await,
        (200, json!({"user_id": 7, "balance": "100.50"}))
    );
    assert_eq!(
        s.app
            .post("/balances/7/charge", &json!({"amount": 20}))
            .await,
        (200, json!({"user_id": 7, "balance": "120.50"}))
    );
    let (status, history) = s.app.get("/balances/7/history").await;
    assert_eq!(status, 200);
    let entries = history["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["kind"], "CHARGE");
    assert_eq!(entries[0]["amount"], "20.00");
    assert_eq!(entries[0]["balance_after"], "120.50");
    assert_eq!(history["has_more"], false);
    s.app.stop().await;
}

#[tokio::test]
async fn bad_charges_are_refused_naming_the_field() {
    let s = start().await;
    for (body, status, field) in [
        (json!({"amount": "-5"}), 422, "amount"),
        (json!({"amount": 0}), 422, "amount"),
        (json!({"amount": "1.001"}), 422, "amount"),
        (json!({"amount": "ten"}), 400, "amount"),
        (json!({}), 400, "amount"),
        (json!({"amount": "5", "extra": 1}), 400, "extra"),
    ] {
        let (got, error) = s.app.post("/balances/7/charge", &body).await;
        assert_eq!(got, status, "{body}: {error}");
        let named = error["error"]["field"].as_str().unwrap_or_default();
        assert!(
            named.contains(field)
                || error["error"]["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains(field),
            "{body}: {error}"
        );
    }
    let (status, error) = s
        .app
        .post("/balances/0/charge", &json!({"amount": "5"}))
        .await;
    assert_eq!(
        (status, error["error"]["field"].as_str()),
        (422, Some("user_id"))
    );
    let (status, error) = s.app.get("/balances/abc").await;
    assert_eq!(status, 400, "{error}");
    let (status, error) = s.app.get("/balances/7/history?page=0").await;
    assert_eq!(
        (status, error["error"]["field"].as_str()),
        (422, Some("page"))
    );
    assert_eq!(
        BalanceClient::new(&s.app).balance(7).await,
        "0.00",
        "nothing was charged"
    );
    s.app.stop().await;
}

/// Found by the contract fuzzer: a charge that took the balance past what the column holds was
/// the database's overflow error, a 500.
#[tokio::test]
async fn a_charge_past_the_largest_balance_is_refused_and_changes_nothing() {
    let s = start().await;
    let balances = BalanceClient::new(&s.app);
    balances.charge(9, "999999999998.99").await;
    let (status, error) = s
        .app
        .post("/balances/9/charge", &json!({"amount": "1.01"}))
        .await;
    assert_eq!(
        (status, error["error"]["field"].as_str()),
        (422, Some("amount")),
        "{error}"
    );
    assert_eq!(balances.balance(9).await, "999999999998.99");
    let (_, history) = s.app.get("/balances/9/history").await;
    assert_eq!(history["entries"].as_array().unwrap().len(), 1, "{history}");
    // Up to the largest balance exactly is still a charge.
    balances.charge(9, "1.00").await;
    assert_eq!(balances.balance(9).await, "999999999999.99");
    s.app.stop().await;
}

#[tokio::test]
async fn a_covered_payment_is_deducted_once_and_reported() {
    let s = start().await;
    let balances = BalanceClient::new(&s.app);
    balances.charge(3, "150.00").await;
    let event = coupon_processed(41, 3, "100.00");
    publish(&s.amqp, &event, CouponProcessed::ROUTING_KEY).await;
    publish(&s.amqp, &event, CouponProcessed::ROUTING_KEY).await; // redelivered
    let events = wait_for_events(&s.db, 1).await;
    assert_eq!(events[0].event_type, BalanceProcessed::TYPE);
    assert_eq!(events[0].causation_id, Some(event.event_id));
    let paid: BalanceProcessed = events[0].decode().unwrap();
    assert_eq!(paid.paid_amount, money("100.00"));

    // A different message for the same order's payment step pays nothing more.
    publish(
        &s.amqp,
        &coupon_processed(41, 3, "100.00"),
        CouponProcessed::ROUTING_KEY,
    )
    .await;
    eventually_async(
        Duration::from_secs(20),
        "the duplicates handled",
        || async {
            (testkit::effects::count(&s.db, "SELECT count(*) AS count FROM inbox").await == 2)
                .then_some(())
        },
    )
    .await;
    assert_eq!(outbox_events(&s.db).await.len(), 1);
    assert_eq!(balances.balance(3).await, "50.00");
    s.app.stop().await;
}

#[tokio::test]
async fn an_uncovered_payment_fails_the_step_and_changes_nothing() {
    let s = start().await;
    let balances = BalanceClient::new(&s.app);
    balances.charge(4, "10.00").await;
    publish(
        &s.amqp,
        &coupon_processed(42, 4, "100.00"),
        CouponProcessed::ROUTING_KEY,
    )
    .await;
    let events = wait_for_events(&s.db, 1).await;
    assert_eq!(events[0].event_type, BalanceProcessingFailed::TYPE);
    let failed: BalanceProcessingFailed = events[0].decode().unwrap();
    assert_eq!(failed.reason.code, "insufficient_balance");
    assert_eq!(balances.balance(4).await, "10.00");
    s.app.stop().await;
}

#[tokio::test]
async fn a_cancelled_order_is_refunded_exactly_what_it_paid_once() {
    let s = start().await;
    let balances = BalanceClient::new(&s.app);
    balances.charge(5, "100.00").await;
    publish(
        &s.amqp,
        &coupon_processed(43, 5, "70.00"),
        CouponProcessed::ROUTING_KEY,
    )
    .await;
    wait_for_events(&s.db, 1).await;
    assert_eq!(balances.balance(5).await, "30.00");

    let request = BalanceRestorationRequested {
        command: command(43, 5),
        items: items(),
        // The refund follows the ledger, not this figure.
        paid_amount: money("999.00"),
        reason: FailureReason::new("cancelled", "cancelled by the user"),
    };
    publish(
        &s.amqp,
        &Envelope::new(&request, Some(43)).unwrap(),
        BalanceRestorationRequested::ROUTING_KEY,
    )
    .await;
    publish(
        &s.amqp,
        &Envelope::new(&request, Some(43)).unwrap(),
        BalanceRestorationRequested::ROUTING_KEY,
    )
    .await;
    let events = wait_for_events(&s.db, 2).await;
    assert_eq!(events[1].event_type, PaymentRefunded::TYPE);
    let refunded: PaymentRefunded = events[1].decode().unwrap();
    assert_eq!(refunded.refunded_amount, money("70.00"));
    eventually_async(
        Duration::from_secs(20),
        "both refund requests handled",
        || async {
            (testkit::effects::count(&s.db, "SELECT count(*) AS count FROM inbox").await == 3)
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        outbox_events(&s.db).await.len(),
        2,
        "the second request refunds nothing"
    );
    assert_eq!(balances.balance(5).await, "100.00");
    let (_, history) = s.app.get("/balances/5/history").await;
    let kinds: Vec<&str> = history["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["REFUND", "PAYMENT", "CHARGE"]);
    assert_eq!(history["entries"][0]["order_id"], 43);
    s.app.stop().await;
}

#[tokio::test]
async fn ready_answers_503_until_the_broker_session_is_up() {
    init_tracing();
    let db = TestDb::with_migrations(vec![balance_service::MIGRATIONS]).await;
    let amqp = TestAmqp::new().await;
    let broker = testkit::amqp_url();
    let target = broker
        .rsplit_once('@')
        .map_or("127.0.0.1:5672", |(_, rest)| {
            rest.split('/').next().unwrap_or("127.0.0.1:5672")
        });
    let proxy = testkit::TcpProxy::start(target.parse().unwrap()).await;
    proxy.refuse();
    let mut settings = service_settings(balance_service::NAME, &db, &amqp);
    settings.amqp.url = amqp.url_through(proxy.addr());
    let app = TestApp::start(balance_service::build(&settings).await.expect("build"));

    assert_eq!(app.get("/health").await.0, 200, "the process is up");
    let (status, body) = app.get("/ready").await;
    assert_eq!(
        (status, body["database"].as_bool(), body["broker"].as_bool()),
        (503, Some(true), Some(false)),
        "{body}"
    );

    proxy.accept();
    app.wait_ready().await;
    proxy.refuse();
    proxy.cut().await;
    eventually_async(
        Duration::from_secs(20),
        "not ready after losing the broker",
        || async { (app.get("/ready").await.0 == 503).then_some(()) },
    )
    .await;
    proxy.accept();
    app.wait_ready().await;
    app.stop().await;
}

#[tokio::test]
async fn a_nul_in_a_text_field_is_a_422_naming_it_and_unknown_paths_answer_json() {
    let s = start().await;
    s.app
        .assert_refused(
            "/balances/7/charge",
            &json!({"amount": "1\u{0}0"}),
            "amount",
        )
        .await;
    s.app
        .assert_routing_errors_are_json(&[
            ("GET", "/nope"),
            ("GET", "/balances/"),
            ("GET", "/balances//history"),
            ("PUT", "/balances/7"),
        ])
        .await;
    s.app.stop().await;
}
