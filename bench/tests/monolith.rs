//! The saga benchmark's single-database reference must stay a faithful copy of the saga: an
//! order that passes every step completes with the same amounts, and a refused one changes
//! nothing. Runs the real `saga-monolith` binary against its own database.

#![allow(clippy::unwrap_used)]

#[path = "monolith/command_line.rs"]
mod command_line;

use std::time::Duration;

use serde_json::{Value, json};
use testkit::{TestDb, eventually_async};

struct Monolith {
    url: String,
    client: reqwest::Client,
    _child: tokio::process::Child,
}

impl Monolith {
    async fn start(db: &TestDb) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_saga-monolith"))
            .env("MONOLITH_DATABASE_URL", &db.url)
            .env("MONOLITH_PORT", port.to_string())
            .env("RUST_LOG", "warn")
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let monolith = Self {
            url: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
            _child: child,
        };
        eventually_async(
            Duration::from_secs(60),
            "the monolith to be ready",
            || async {
                let answer = monolith
                    .client
                    .get(monolith.at("/ready"))
                    .send()
                    .await
                    .ok()?;
                answer.status().is_success().then_some(())
            },
        )
        .await;
        monolith
    }

    fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let answer = self
            .client
            .post(self.at(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        (answer.status().as_u16(), answer.json().await.unwrap())
    }

    async fn get(&self, path: &str) -> Value {
        let answer = self.client.get(self.at(path)).send().await.unwrap();
        assert!(answer.status().is_success(), "GET {path}");
        answer.json().await.unwrap()
    }
}

#[tokio::test]
async fn the_monolith_completes_an_order_in_one_transaction_and_a_refused_one_changes_nothing() {
    let db = TestDb::new().await;
    let app = Monolith::start(&db).await;

    let (_, product) = app
        .post(
            "/products",
            json!({"name": "lamp", "price": "10.00", "stock": 5}),
        )
        .await;
    let product = product["product_id"].as_i64().unwrap();
    app.post("/balances/1/charge", json!({"amount": "100.00"}))
        .await;
    app.post("/balances/2/charge", json!({"amount": "1.00"}))
        .await;
    let (_, coupon) = app
        .post(
            "/coupons",
            json!({"name": "ten", "discount_type": "PERCENT", "discount_value": "10", "total_quantity": 5}),
        )
        .await;
    let coupon = coupon["coupon_id"].as_i64().unwrap();
    let (_, issued) = app
        .post(&format!("/coupons/{coupon}/issue"), json!({"user_id": 1}))
        .await;
    let user_coupon = issued["user_coupon_id"].as_i64().unwrap();

    let (status, placed) = app
        .post(
            "/orders",
            json!({"user_id": 1, "items": [{"product_id": product, "quantity": 2}], "user_coupon_id": user_coupon}),
        )
        .await;
    assert_eq!(status, 201, "{placed}");
    assert_eq!(placed["status"], "COMPLETED");
    let order = app
        .get(&format!("/orders/{}?wait_ms=1000", placed["order_id"]))
        .await;
    assert_eq!(order["status"], "COMPLETED");
    assert_eq!(order["total_amount"], "20.00");
    assert_eq!(order["discount_amount"], "2.00");
    assert_eq!(order["paid_amount"], "18.00");
    assert_eq!(app.get(&format!("/products/{product}")).await["stock"], 3);
    assert_eq!(app.get("/balances/1").await["balance"], "82.00");
    let used = app.get(&format!("/user-coupons/{user_coupon}")).await;
    assert_eq!(used["status"], "USED");
    assert_eq!(used["order_id"], placed["order_id"]);

    // Too much stock asked, then a balance too small, then a used coupon: each FAILED with the
    // saga's reason code, and nothing of the refused transaction stays behind.
    for (user, quantity, user_coupon, code) in [
        (1, 4, None, "insufficient_stock"),
        (2, 1, None, "insufficient_balance"),
        (1, 1, Some(user_coupon), "coupon_already_used"),
    ] {
        let (status, placed) = app
            .post(
                "/orders",
                json!({"user_id": user, "items": [{"product_id": product, "quantity": quantity}], "user_coupon_id": user_coupon}),
            )
            .await;
        assert_eq!(status, 201, "{placed}");
        assert_eq!(placed["status"], "FAILED");
        let order = app.get(&format!("/orders/{}", placed["order_id"])).await;
        assert_eq!(order["failure_code"], code);
    }
    assert_eq!(app.get(&format!("/products/{product}")).await["stock"], 3);
    assert_eq!(app.get("/balances/1").await["balance"], "82.00");
    assert_eq!(app.get("/balances/2").await["balance"], "1.00");
    let history = app.get("/balances/1/history").await;
    let entries = history["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "one charge and one payment: {history}");

    // Bad input is a 4xx naming the field, never a 500.
    let (status, body) = app
        .post("/orders", json!({"user_id": 1, "items": []}))
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["field"], "items");
}
