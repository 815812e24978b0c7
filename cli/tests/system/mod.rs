//! The whole system under test: the four services and the saga monitor, each on its own fresh
//! database, one AMQP prefix for all of them, and the outbox relay in process. The testkit's
//! typed clients (and shorthands for them here) keep the test bodies short.
//! [`System::start_with_identities`] runs each process under its own least-privilege broker
//! identity in a vhost of its own; [`System::start`] runs them all as the local admin.

#![allow(dead_code, clippy::unwrap_used)] // each test binary uses part of the harness

pub mod gateway;
pub mod process;

use std::collections::HashMap;
use std::time::Duration;

use outbox_relay::RelaySettings;
use serde_json::Value;
use shared::broker::Role;
use shared::service::Application;
use shared::service::ServiceSettings;
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
    /// More instances of the services, beside `apps` ([`Self::add_instances`]).
    pub replicas: Vec<(&'static str, TestApp)>,
    relays: Vec<(ShutdownTrigger, tokio::task::JoinHandle<anyhow::Result<()>>)>,
    /// Applied to every service instance's settings before it starts.
    adjust: fn(&mut ServiceSettings),
    /// The order service's `SAGA_DEADLINE`.
    deadline: Duration,
}

/// The order service's default deadline: no test's saga comes near it unless it says so.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(300);

pub async fn build(name: &str, settings: &shared::service::ServiceSettings) -> Application {
    build_with_deadline(name, settings, DEFAULT_DEADLINE).await
}

/// [`build`], with the order service's `SAGA_DEADLINE` at `deadline`.
pub async fn build_with_deadline(
    name: &str,
    settings: &shared::service::ServiceSettings,
    deadline: Duration,
) -> Application {
    let order_args = order_service::OrderArgs {
        deadline: order_service::deadline::DeadlineArgs { deadline },
    };
    match name {
        ORDER => order_service::build_with(settings, &order_args).await,
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
        Self::start_adjusted(|_| {}).await
    }

    /// The system with `adjust` applied to the settings of every service instance it starts
    /// (e.g. smaller pools, for a test that runs many instances).
    pub async fn start_adjusted(adjust: fn(&mut ServiceSettings)) -> Self {
        init_tracing();
        Self::start_on(TestAmqp::new().await, None, adjust, DEFAULT_DEADLINE).await
    }

    /// The system with the order service's `SAGA_DEADLINE` at `deadline`.
    pub async fn start_with_deadline(deadline: Duration) -> Self {
        init_tracing();
        Self::start_on(TestAmqp::new().await, None, |_| {}, deadline).await
    }

    /// The system on the broker at `url` (e.g. the nodes of a [`testkit::cluster`]), every
    /// process as the broker's local administrator.
    pub async fn start_at(url: &str) -> Self {
        init_tracing();
        let prefix = format!("t{}", testkit::unique_suffix());
        Self::start_on(
            TestAmqp::at(url, &prefix).await,
            None,
            |_| {},
            DEFAULT_DEADLINE,
        )
        .await
    }

    /// The system with each service, the monitor and the relay connecting as its own broker
    /// identity (`sagactl broker setup`'s), in a vhost of this test's own.
    pub async fn start_with_identities() -> Self {
        let (broker, amqp) = TestBroker::new(&SERVICES).await;
        Self::start_on(amqp, Some(broker), |_| {}, DEFAULT_DEADLINE).await
    }

    async fn start_on(
        amqp: TestAmqp,
        broker: Option<TestBroker>,
        adjust: fn(&mut ServiceSettings),
        deadline: Duration,
    ) -> Self {
        let url_of = |role: Role| broker.as_ref().map(|broker| broker.url(&role));
        let mut dbs = HashMap::new();
        let mut apps = HashMap::new();
        for name in SERVICES {
            let db = TestDb::with_migrations(vec![migrations(name)]).await;
            let mut settings = service_settings(name, &db, &amqp);
            if let Some(url) = url_of(Role::Consumer(name.to_owned())) {
                settings.amqp.url = url;
            }
            adjust(&mut settings);
            let app = TestApp::start(build_with_deadline(name, &settings, deadline).await);
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
            replicas: Vec::new(),
            relays: Vec::new(),
            adjust,
            deadline,
        };
        system.start_relay();
        system
    }

    /// Starts `count` more instances of every service on the same databases and prefix, and
    /// waits until they are ready.
    pub async fn add_instances(&mut self, count: usize) {
        for _ in 0..count {
            for name in SERVICES {
                let mut settings = service_settings(name, &self.dbs[name], &self.amqp);
                (self.adjust)(&mut settings);
                let app = TestApp::start(build_with_deadline(name, &settings, self.deadline).await);
                app.wait_ready().await;
                self.replicas.push((name, app));
            }
        }
    }

    /// Every running instance of `name`: the first, then the replicas.
    pub fn instances(&self, name: &str) -> Vec<&TestApp> {
        std::iter::once(&self.apps[name])
            .chain(
                self.replicas
                    .iter()
                    .filter(|(of, _)| *of == name)
                    .map(|(_, app)| app),
            )
            .collect()
    }

    /// Starts the outbox relay on the four service databases (it runs from [`Self::start`]).
    pub fn start_relay(&mut self) {
        self.start_relay_with(|_| ());
    }

    /// Starts one more relay on the four service databases, with `adjust`ed settings.
    pub fn start_relay_with(&mut self, adjust: impl FnOnce(&mut RelaySettings)) {
        let urls = [ORDER, PRODUCT, COUPON, BALANCE]
            .iter()
            .map(|name| self.dbs[name].url.clone())
            .collect();
        let mut relay_settings = RelaySettings::new(urls, self.amqp.settings());
        if let Some(broker) = &self.broker {
            relay_settings.amqp.url = broker.url(&Role::Relay);
        }
        relay_settings.max_backoff = Duration::from_millis(500);
        adjust(&mut relay_settings);
        let (trigger, shutdown) = Shutdown::new();
        let relay = tokio::spawn(outbox_relay::run(relay_settings, shutdown));
        self.relays.push((trigger, relay));
    }

    /// Stops the relays: committed events then stay in the outboxes.
    pub async fn stop_relay(&mut self) {
        for (trigger, task) in self.relays.drain(..) {
            trigger.trigger();
            task.await.unwrap().unwrap();
        }
    }

    /// Stops the first instance of `name`; its messages wait in its queue.
    pub async fn stop_service(&mut self, name: &str) {
        self.apps
            .remove(name)
            .expect("a running instance")
            .stop()
            .await;
    }

    /// Starts a new first instance of `name` (after [`Self::stop_service`]) and waits until it
    /// is ready.
    pub async fn restart_service(&mut self, name: &'static str) {
        let mut settings = service_settings(name, &self.dbs[name], &self.amqp);
        if let Some(broker) = &self.broker {
            settings.amqp.url = broker.url(&Role::Consumer(name.to_owned()));
        }
        (self.adjust)(&mut settings);
        let app = TestApp::start(build_with_deadline(name, &settings, self.deadline).await);
        app.wait_ready().await;
        self.apps.insert(name, app);
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
                || async { (self.amqp.consumer_depth(name).await == 0).then_some(()) },
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
        for (_, app) in self.replicas.drain(..) {
            app.stop().await;
        }
        for (_, app) in self.apps.drain() {
            app.stop().await;
        }
    }
}

impl System {
    /// `sagactl verify` with `args` against this system's databases and broker prefix.
    pub async fn sagactl_verify(&self, args: &[&str]) -> std::process::Output {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_sagactl"))
            .arg("verify")
            .args(args)
            .env("ORDER_DATABASE_URL", &self.dbs[ORDER].url)
            .env("PRODUCT_DATABASE_URL", &self.dbs[PRODUCT].url)
            .env("COUPON_DATABASE_URL", &self.dbs[COUPON].url)
            .env("BALANCE_DATABASE_URL", &self.dbs[BALANCE].url)
            .env("AMQP_URL", &self.amqp.url)
            .env("AMQP_PREFIX", &self.amqp.prefix)
            .env("RUST_LOG", "debug")
            .output()
            .await
            .unwrap()
    }

    /// `sagactl verify` passes.
    pub async fn assert_verify_clean(&self) {
        let output = self.sagactl_verify(&[]).await;
        assert!(
            output.status.success(),
            "sagactl verify: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
