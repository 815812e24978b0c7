//! Typed HTTP clients for the four services, as tests use them: each method sends one request,
//! asserts the status a success answers (so a setup step that goes wrong fails there, with the
//! body) and returns what the test needs next. [`Api`] is the layer beneath, status and JSON
//! body as they come, for the tests of refusals.

use std::time::Duration;

use serde_json::{Value, json};

use crate::eventually_async;
use crate::service::TestApp;

/// How long [`OrderClient::wait_terminal`] waits for an order to end.
const TERMINAL_DEADLINE: Duration = Duration::from_secs(30);
/// The `wait_ms` of each of its long polls.
const LONG_POLL_MS: u64 = 5_000;
/// The order statuses a saga ends in.
const TERMINAL: [&str; 3] = ["COMPLETED", "FAILED", "CANCELLED"];

/// One service's HTTP API at `base_url`: JSON in, the status and the JSON body out.
#[derive(Clone)]
pub struct Api {
    pub base_url: String,
    pub client: reqwest::Client,
}

impl From<&TestApp> for Api {
    fn from(app: &TestApp) -> Self {
        Self::new(app.base_url.clone(), app.client.clone())
    }
}

impl Api {
    pub fn new(base_url: impl Into<String>, client: reqwest::Client) -> Self {
        Self {
            base_url: base_url.into(),
            client,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// `GET path`: the status and the JSON body (`Null` if the body is not JSON).
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self.client.get(self.url(path)).send().await;
        answer(response.unwrap_or_else(|err| panic!("GET {path}: {err:?}"))).await
    }

    /// `POST path` with a JSON body: the status and the JSON body (`Null` if not JSON).
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = self.client.post(self.url(path)).json(body).send().await;
        answer(response.unwrap_or_else(|err| panic!("POST {path}: {err:?}"))).await
    }

    /// `GET path`, which must answer 200: the body.
    pub async fn get_ok(&self, path: &str) -> Value {
        let (status, body) = self.get(path).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// `POST path` with `body`, which must answer `expected`: the answer's body.
    pub async fn post_expecting(&self, path: &str, body: &Value, expected: u16) -> Value {
        let (status, answer) = self.post(path, body).await;
        assert_eq!(status, expected, "POST {path} {body}: {answer}");
        answer
    }
}

async fn answer(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// The id named `field` in `body`, which must hold one.
fn id(body: &Value, field: &str) -> i64 {
    body[field]
        .as_i64()
        .unwrap_or_else(|| panic!("no {field} in {body}"))
}

/// The product service: products and their stock.
#[derive(Clone)]
pub struct ProductClient {
    pub api: Api,
}

impl ProductClient {
    pub fn new(api: impl Into<Api>) -> Self {
        Self { api: api.into() }
    }

    /// `POST /products` (201); returns the product id.
    pub async fn create_product(&self, name: &str, price: &str, stock: i64) -> i64 {
        let body = json!({"name": name, "price": price, "stock": stock});
        id(
            &self.api.post_expecting("/products", &body, 201).await,
            "product_id",
        )
    }

    /// `GET /products/{id}` (200).
    pub async fn product(&self, product_id: i64) -> Value {
        self.api.get_ok(&format!("/products/{product_id}")).await
    }

    /// `POST /products/{id}/stock` moving the stock by `delta` (200); returns the new stock.
    pub async fn adjust_stock(&self, product_id: i64, delta: i64) -> i64 {
        let path = format!("/products/{product_id}/stock");
        let product = self
            .api
            .post_expecting(&path, &json!({ "delta": delta }), 200)
            .await;
        product["stock"]
            .as_i64()
            .unwrap_or_else(|| panic!("no stock in {product}"))
    }

    /// The product's stock now.
    pub async fn stock(&self, product_id: i64) -> i64 {
        let product = self.product(product_id).await;
        product["stock"]
            .as_i64()
            .unwrap_or_else(|| panic!("no stock in {product}"))
    }
}

/// The coupon service: coupons, their issue, the coupons users hold.
#[derive(Clone)]
pub struct CouponClient {
    pub api: Api,
}

impl CouponClient {
    pub fn new(api: impl Into<Api>) -> Self {
        Self { api: api.into() }
    }

    /// `POST /coupons` with `body` (201); returns the coupon id.
    pub async fn create_coupon(&self, body: &Value) -> i64 {
        id(
            &self.api.post_expecting("/coupons", body, 201).await,
            "coupon_id",
        )
    }

    /// `POST /coupons/{id}/issue` to `user_id` (201); returns the user coupon id.
    pub async fn issue(&self, coupon_id: i64, user_id: i64) -> i64 {
        let path = format!("/coupons/{coupon_id}/issue");
        let body = json!({ "user_id": user_id });
        id(
            &self.api.post_expecting(&path, &body, 201).await,
            "user_coupon_id",
        )
    }

    /// Creates a coupon of `discount_type` and `value` (100 of them) and issues one to
    /// `user_id`; returns the user coupon id.
    pub async fn coupon_for(&self, user_id: i64, discount_type: &str, value: &str) -> i64 {
        let body = json!({
            "name": "test",
            "discount_type": discount_type,
            "discount_value": value,
            "total_quantity": 100,
        });
        let coupon = self.create_coupon(&body).await;
        self.issue(coupon, user_id).await
    }

    /// `GET /user-coupons/{id}` (200).
    pub async fn user_coupon(&self, user_coupon_id: i64) -> Value {
        self.api
            .get_ok(&format!("/user-coupons/{user_coupon_id}"))
            .await
    }
}

/// The balance service: charges and balances.
#[derive(Clone)]
pub struct BalanceClient {
    pub api: Api,
}

impl BalanceClient {
    pub fn new(api: impl Into<Api>) -> Self {
        Self { api: api.into() }
    }

    /// `POST /balances/{user}/charge` with `amount` (200).
    pub async fn charge(&self, user_id: i64, amount: &str) {
        let path = format!("/balances/{user_id}/charge");
        self.api
            .post_expecting(&path, &json!({ "amount": amount }), 200)
            .await;
    }

    /// The user's balance now, as the API spells it (`"12.50"`).
    pub async fn balance(&self, user_id: i64) -> String {
        let balance = self.api.get_ok(&format!("/balances/{user_id}")).await;
        balance["balance"]
            .as_str()
            .unwrap_or_else(|| panic!("no balance in {balance}"))
            .to_owned()
    }
}

/// The order service: placing, reading, cancelling and waiting for orders.
#[derive(Clone)]
pub struct OrderClient {
    pub api: Api,
}

impl OrderClient {
    pub fn new(api: impl Into<Api>) -> Self {
        Self { api: api.into() }
    }

    /// `POST /orders` of `user_id` for `(product id, quantity)` lines with an optional user
    /// coupon, which must be accepted (202); returns the order id.
    pub async fn place(
        &self,
        user_id: i64,
        items: &[(i64, i64)],
        user_coupon_id: Option<i64>,
    ) -> i64 {
        let lines: Vec<Value> = items
            .iter()
            .map(|(product_id, quantity)| json!({"product_id": product_id, "quantity": quantity}))
            .collect();
        let body = json!({"user_id": user_id, "items": lines, "user_coupon_id": user_coupon_id});
        id(
            &self.api.post_expecting("/orders", &body, 202).await,
            "order_id",
        )
    }

    /// `GET /orders/{id}` (200).
    pub async fn order(&self, order_id: i64) -> Value {
        self.api.get_ok(&format!("/orders/{order_id}")).await
    }

    /// `POST /orders/{id}/cancel`, which must be accepted (202): the answer.
    pub async fn cancel(&self, order_id: i64) -> Value {
        let path = format!("/orders/{order_id}/cancel");
        self.api.post_expecting(&path, &json!({}), 202).await
    }

    /// Long-polls (`wait_ms`) until the order reaches a terminal status, failing the test if it
    /// has not after 30 s; returns the order.
    pub async fn wait_terminal(&self, order_id: i64) -> Value {
        let path = format!("/orders/{order_id}?wait_ms={LONG_POLL_MS}");
        eventually_async(
            TERMINAL_DEADLINE,
            &format!("order {order_id} to end"),
            || async {
                let order = self.api.get_ok(&path).await;
                let status = order["status"].as_str().unwrap_or_default();
                TERMINAL.contains(&status).then_some(order)
            },
        )
        .await
    }
}
