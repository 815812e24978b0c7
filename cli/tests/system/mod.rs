//! The whole system under test: the four services and the saga monitor, each on its own fresh
//! database, one AMQP prefix for all of them, and the outbox relay in process. Typed helpers
//! keep the test bodies short.

#![allow(dead_code, clippy::unwrap_used)] // each test binary uses part of the harness

use std::collections::HashMap;
use std::time::Duration;

use outbox_relay::RelaySettings;
use serde_json::{Value, json};
use shared::service::Application;
use shared::shutdown::{Shutdown, ShutdownTrigger};
use testkit::effects::unpublished;
use testkit::service::{TestApp, service_settings};
use testkit::{TestAmqp, TestDb, eventually_async, init_tracing};

pub const ORDER: &str = order_service::NAME;
pub const PRODUCT: &str = product_service::NAME;
pub const COUPON: &str = coupon_service::NAME;
pub const BALANCE: &str = balance_service::NAME;
pub const MONITOR: &str = monitor_service::NAME;
pub const SERVICES: [&str; 5] = [ORDER, PRODUCT, COUPON, BALANCE, MONITOR];

pub struct System {
    pub amqp: TestAmqp,
    pub dbs: HashMap<&'static str, TestDb>,
    pub apps: HashMap<&'static str, TestApp>,
    relay: Option<(ShutdownTrigger, tokio::task::JoinHandle<anyhow::Result<()>>)>,
}

pub async fn build(name: &str, settings: &shared::service::ServiceSettings) -> Application {
    match name {
        ORDER => order_service::build(settings).await,
        PRODUCT => product_service::build(settings).await,
        COUPON => coupon_service::build(settings).await,
        BALANCE => balance_service::build(settings).await,
        _ => monitor_service::build(settings).await,
    }
    .expect("build service")
}

fn migrations(name: &str) -> diesel_migrations::EmbeddedMigrations {
    match name {
        ORDER => order_service::MIGRATIONS,
        PRODUCT => product_service::MIGRATIONS,
        COUPON => coupon_service::MIGRATIONS,
        BALANCE => balance_service::MIGRATIONS,
        _ => monitor_service::MIGRATIONS,
    }
}

impl System {
    pub async fn start() -> Self {
        init_tracing();
        let amqp = TestAmqp::new().await;
        let mut dbs = HashMap::new();
        let mut apps = HashMap::new();
        for name in SERVICES {
            let db = TestDb::with_migrations(vec![migrations(name)]).await;
            let settings = service_settings(name, &db, &amqp);
            let app = TestApp::start(build(name, &settings).await);
            dbs.insert(name, db);
            apps.insert(name, app);
        }
        for app in apps.values() {
            app.wait_ready().await;
        }
        let urls = [ORDER, PRODUCT, COUPON, BALANCE]
            .iter()
            .map(|name| dbs[name].url.clone())
            .collect();
        let mut relay_settings = RelaySettings::new(urls, amqp.settings());
        relay_settings.max_backoff = Duration::from_millis(500);
        let (trigger, shutdown) = Shutdown::new();
        let relay = tokio::spawn(outbox_relay::run(relay_settings, shutdown));
        Self {
            amqp,
            dbs,
            apps,
            relay: Some((trigger, relay)),
        }
    }

    pub fn app(&self, name: &str) -> &TestApp {
        &self.apps[name]
    }

    pub async fn create_product(&self, name: &str, price: &str, stock: i64) -> i64 {
        let (status, body) = self
            .app(PRODUCT)
            .post(
                "/products",
                &json!({"name": name, "price": price, "stock": stock}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        body["product_id"].as_i64().unwrap()
    }

    pub async fn stock(&self, product_id: i64) -> i64 {
        self.app(PRODUCT)
            .get(&format!("/products/{product_id}"))
            .await
            .1["stock"]
            .as_i64()
            .unwrap()
    }

    pub async fn charge(&self, user_id: i64, amount: &str) {
        let (status, body) = self
            .app(BALANCE)
            .post(
                &format!("/balances/{user_id}/charge"),
                &json!({"amount": amount}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }

    pub async fn balance(&self, user_id: i64) -> String {
        self.app(BALANCE)
            .get(&format!("/balances/{user_id}"))
            .await
            .1["balance"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Creates a coupon and issues it to `user_id`; returns the user coupon id.
    pub async fn coupon_for(&self, user_id: i64, discount_type: &str, value: &str) -> i64 {
        let (status, coupon) = self
            .app(COUPON)
            .post("/coupons", &json!({"name": "test", "discount_type": discount_type, "discount_value": value, "total_quantity": 100}))
            .await;
        assert_eq!(status, 201, "{coupon}");
        let (status, issued) = self
            .app(COUPON)
            .post(
                &format!("/coupons/{}/issue", coupon["coupon_id"]),
                &json!({"user_id": user_id}),
            )
            .await;
        assert_eq!(status, 201, "{issued}");
        issued["user_coupon_id"].as_i64().unwrap()
    }

    pub async fn user_coupon(&self, id: i64) -> Value {
        self.app(COUPON).get(&format!("/user-coupons/{id}")).await.1
    }

    /// `POST /orders`; returns the status and body.
    pub async fn order(&self, body: Value) -> (u16, Value) {
        self.app(ORDER).post("/orders", &body).await
    }

    /// Places an order that must be accepted; returns its id.
    pub async fn place(
        &self,
        user_id: i64,
        items: &[(i64, i64)],
        user_coupon_id: Option<i64>,
    ) -> i64 {
        let lines: Vec<Value> = items
            .iter()
            .map(|(p, q)| json!({"product_id": p, "quantity": q}))
            .collect();
        let (status, body) = self
            .order(json!({"user_id": user_id, "items": lines, "user_coupon_id": user_coupon_id}))
            .await;
        assert_eq!(status, 202, "{body}");
        body["order_id"].as_i64().unwrap()
    }

    /// Long-polls until the order reaches a terminal status (or fails the test after 30 s).
    pub async fn wait_terminal(&self, order_id: i64) -> Value {
        eventually_async(
            Duration::from_secs(30),
            &format!("order {order_id} to end"),
            || async {
                let (status, body) = self
                    .app(ORDER)
                    .get(&format!("/orders/{order_id}?wait_ms=5000"))
                    .await;
                assert_eq!(status, 200, "{body}");
                matches!(
                    body["status"].as_str(),
                    Some("COMPLETED" | "FAILED" | "CANCELLED")
                )
                .then_some(body)
            },
        )
        .await
    }

    /// Nothing left behind: every outbox row published, every dead-letter queue empty, every
    /// queue drained.
    pub async fn assert_settled(&self) {
        for name in [ORDER, PRODUCT, COUPON, BALANCE] {
            let db = &self.dbs[name];
            eventually_async(
                Duration::from_secs(20),
                &format!("{name} outbox empty"),
                || async { (unpublished(db).await == 0).then_some(()) },
            )
            .await;
        }
        for name in SERVICES {
            let queue = self.amqp.topology.queue(name);
            eventually_async(
                Duration::from_secs(20),
                &format!("{queue} drained"),
                || async { (self.amqp.depth(&queue).await == 0).then_some(()) },
            )
            .await;
            assert_eq!(
                self.amqp
                    .depth(&self.amqp.topology.dead_letter_queue(name))
                    .await,
                0,
                "{name} dead letters"
            );
        }
    }

    pub async fn stop(mut self) {
        if let Some((trigger, task)) = self.relay.take() {
            trigger.trigger();
            task.await.unwrap().unwrap();
        }
        for (_, app) in self.apps.drain() {
            app.stop().await;
        }
    }
}
