//! The whole system under test: the four services and the saga monitor, each on its own fresh
//! database, one AMQP prefix for all of them, and the outbox relay in process. The testkit's
//! typed clients (and shorthands for them here) keep the test bodies short.
//! [`System::start_with_identities`] runs each process under its own least-privilege broker
//! identity in a vhost of its own; [`System::start`] runs them all as the local admin.

#![allow(dead_code, clippy::unwrap_used)] // each test binary uses part of the harness

use std::collections::HashMap;
use std::time::Duration;

use outbox_relay::RelaySettings;
use serde_json::Value;
use shared::broker::Role;
use shared::service::Application;
use shared::shutdown::{Shutdown, ShutdownTrigger};
use testkit::broker::TestBroker;
use testkit::clients::{BalanceClient, CouponClient, OrderClient, ProductClient};
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
    /// The identities, when the processes run under them (dropped after `amqp`).
    pub broker: Option<TestBroker>,
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
        Self::start_on(TestAmqp::new().await, None).await
    }

    /// The system on the broker at `url` (e.g. the nodes of a [`testkit::cluster`]), every
    /// process as the broker's local administrator.
    pub async fn start_at(url: &str) -> Self {
        init_tracing();
        let prefix = format!("t{}", testkit::unique_suffix());
        Self::start_on(TestAmqp::at(url, &prefix).await, None).await
    }

    /// The system with each service, the monitor and the relay connecting as its own broker
    /// identity (`sagactl broker setup`'s), in a vhost of this test's own.
    pub async fn start_with_identities() -> Self {
        let (broker, amqp) = TestBroker::new(&SERVICES).await;
        Self::start_on(amqp, Some(broker)).await
    }

    async fn start_on(amqp: TestAmqp, broker: Option<TestBroker>) -> Self {
        let url_of = |role: Role| broker.as_ref().map(|broker| broker.url(&role));
        let mut dbs = HashMap::new();
        let mut apps = HashMap::new();
        for name in SERVICES {
            let db = TestDb::with_migrations(vec![migrations(name)]).await;
            let mut settings = service_settings(name, &db, &amqp);
            if let Some(url) = url_of(Role::Consumer(name.to_owned())) {
                settings.amqp.url = url;
            }
            let app = TestApp::start(build(name, &settings).await);
            dbs.insert(name, db);
            apps.insert(name, app);
        }
        for app in apps.values() {
            app.wait_ready().await;
        }
        let mut system = Self {
            amqp,
            broker,
            dbs,
            apps,
            relay: None,
        };
        system.start_relay();
        system
    }

    /// Starts the outbox relay on the four service databases (it runs from [`Self::start`]).
    pub fn start_relay(&mut self) {
        let urls = [ORDER, PRODUCT, COUPON, BALANCE]
            .iter()
            .map(|name| self.dbs[name].url.clone())
            .collect();
        let mut relay_settings = RelaySettings::new(urls, self.amqp.settings());
        if let Some(broker) = &self.broker {
            relay_settings.amqp.url = broker.url(&Role::Relay);
        }
        relay_settings.max_backoff = Duration::from_millis(500);
        let (trigger, shutdown) = Shutdown::new();
        let relay = tokio::spawn(outbox_relay::run(relay_settings, shutdown));
        self.relay = Some((trigger, relay));
    }

    /// Stops the relay: committed events then stay in the outboxes.
    pub async fn stop_relay(&mut self) {
        if let Some((trigger, task)) = self.relay.take() {
            trigger.trigger();
            task.await.unwrap().unwrap();
        }
    }

    pub fn app(&self, name: &str) -> &TestApp {
        &self.apps[name]
    }

    pub fn products(&self) -> ProductClient {
        ProductClient::new(self.app(PRODUCT))
    }

    pub fn coupons(&self) -> CouponClient {
        CouponClient::new(self.app(COUPON))
    }

    pub fn balances(&self) -> BalanceClient {
        BalanceClient::new(self.app(BALANCE))
    }

    pub fn orders(&self) -> OrderClient {
        OrderClient::new(self.app(ORDER))
    }

    // Shorthands for what most tests do, on the running apps (a restarted one included).

    pub async fn create_product(&self, name: &str, price: &str, stock: i64) -> i64 {
        self.products().create_product(name, price, stock).await
    }

    pub async fn stock(&self, product_id: i64) -> i64 {
        self.products().stock(product_id).await
    }

    pub async fn charge(&self, user_id: i64, amount: &str) {
        self.balances().charge(user_id, amount).await;
    }

    pub async fn balance(&self, user_id: i64) -> String {
        self.balances().balance(user_id).await
    }

    /// Creates a coupon and issues it to `user_id`; returns the user coupon id.
    pub async fn coupon_for(&self, user_id: i64, discount_type: &str, value: &str) -> i64 {
        self.coupons()
            .coupon_for(user_id, discount_type, value)
            .await
    }

    pub async fn user_coupon(&self, id: i64) -> Value {
        self.coupons().user_coupon(id).await
    }

    /// Places an order that must be accepted; returns its id.
    pub async fn place(
        &self,
        user_id: i64,
        items: &[(i64, i64)],
        user_coupon_id: Option<i64>,
    ) -> i64 {
        self.orders().place(user_id, items, user_coupon_id).await
    }

    /// Long-polls until the order reaches a terminal status (or fails the test after 30 s).
    pub async fn wait_terminal(&self, order_id: i64) -> Value {
        self.orders().wait_terminal(order_id).await
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
        self.stop_relay().await;
        for (_, app) in self.apps.drain() {
            app.stop().await;
        }
    }
}
