//! Running a service under test: its own database and AMQP prefix, port 0, real HTTP.

use std::time::Duration;

use diesel::sql_types::{BigInt, Bytea, Text};
use diesel_async::RunQueryDsl;
use shared::config::{ConsumerSettings, DatabaseSettings};
use shared::envelope::Envelope;
use shared::service::{Application, ServiceSettings};
use shared::shutdown::{Shutdown, ShutdownTrigger};
use tokio::task::JoinHandle;

use crate::clients::Api;
use crate::{TestAmqp, TestDb};

/// Settings for service `name` on `db` and `amqp`: port 0, one HTTP worker, fast retries.
/// The consumer's queues are remembered for deletion with `amqp`.
pub fn service_settings(name: &str, db: &TestDb, amqp: &TestAmqp) -> ServiceSettings {
    let retry_delays = vec![Duration::from_millis(50), Duration::from_millis(200)];
    amqp.remember_consumer(name, &retry_delays);
    ServiceSettings {
        name: name.to_owned(),
        host: "127.0.0.1".into(),
        port: 0,
        http_workers: 1,
        database: DatabaseSettings::with_url(db.url.clone()),
        amqp: amqp.settings(),
        consumer: ConsumerSettings {
            prefetch: 32,
            concurrency: 4,
            max_attempts: 3,
            retry_delays,
            partitions: shared::amqp::DEFAULT_PARTITIONS,
        },
        inbox: shared::config::InboxSettings::default(),
        keys: crate::keys::dev(Some(name)),
    }
}

/// One service under test with its own database and AMQP prefix, running and ready.
pub struct Setup {
    pub db: TestDb,
    pub amqp: TestAmqp,
    pub app: TestApp,
}

impl Setup {
    /// Creates a database with `migrations`, a prefix, builds the service named `name` with
    /// `build`, starts it and waits until it is ready.
    pub async fn start(
        name: &str,
        migrations: diesel_migrations::EmbeddedMigrations,
        build: impl AsyncFnOnce(&ServiceSettings) -> anyhow::Result<Application>,
    ) -> Self {
        crate::init_tracing();
        let db = TestDb::with_migrations(vec![migrations]).await;
        let amqp = TestAmqp::new().await;
        let settings = service_settings(name, &db, &amqp);
        let app = TestApp::start(build(&settings).await.expect("build the service"));
        app.wait_ready().await;
        Self { db, amqp, app }
    }
}

/// An HTTP client that lets go of an idle connection before the server's keep-alive (actix: 5 s)
/// closes it: reusing a connection the server is closing at that instant fails the request
/// ("connection closed before message completed"), a race a long loaded test runs into.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_idle_timeout(std::time::Duration::from_secs(2))
        .build()
        .expect("an HTTP client")
}

/// A service running in the background, reachable at `base_url`.
pub struct TestApp {
    pub base_url: String,
    pub client: reqwest::Client,
    trigger: ShutdownTrigger,
    task: JoinHandle<anyhow::Result<()>>,
}

impl TestApp {
    pub fn start(app: Application) -> Self {
        let base_url = format!("http://127.0.0.1:{}", app.port());
        let (trigger, shutdown) = Shutdown::new();
        let task = tokio::spawn(app.run(shutdown));
        Self {
            base_url,
            client: client(),
            trigger,
            task,
        }
    }

    /// The service's HTTP API, for the typed clients of [`crate::clients`].
    pub fn api(&self) -> Api {
        Api::from(self)
    }

    pub fn url(&self, path: &str) -> String {
        self.api().url(path)
    }

    /// `GET path`, returning the status and the JSON body (`Null` if the body is not JSON).
    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        self.api().get(path).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
        self.api().post(path, body).await
    }

    /// Asserts that `POST path` with `body` is refused with a 422 naming `field`, and that no
    /// 500 or other status hides behind it (used for text fields holding a NUL character).
    pub async fn assert_refused(&self, path: &str, body: &serde_json::Value, field: &str) {
        let (status, answer) = self.post(path, body).await;
        assert_eq!(status, 422, "POST {path} {body}: {answer}");
        assert_eq!(
            answer["error"]["field"], field,
            "POST {path} {body}: {answer}"
        );
    }

    /// Asserts that each `(method, path)` that matches no route answers 404 (or 405 for a known
    /// path) with the JSON error object, as every other error does.
    pub async fn assert_routing_errors_are_json(&self, requests: &[(&str, &str)]) {
        for (method, path) in requests {
            let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
            let response = self
                .client
                .request(method.clone(), self.url(path))
                .send()
                .await
                .expect("request");
            let status = response.status().as_u16();
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            assert!(
                matches!(status, 404 | 405),
                "{method} {path}: {status} {body}"
            );
            let code = if status == 404 {
                "not_found"
            } else {
                "method_not_allowed"
            };
            assert_eq!(
                body["error"]["code"], code,
                "{method} {path}: {status} {body}"
            );
            assert!(
                body["error"]["message"].is_string(),
                "{method} {path}: {body}"
            );
        }
    }

    /// Waits until `GET /ready` answers 200: database reachable and consumer connected (so its
    /// queue is declared and events published from now on are routed to it).
    pub async fn wait_ready(&self) {
        crate::eventually_async(
            Duration::from_secs(20),
            "the service to be ready",
            || async { (self.get("/ready").await.0 == 200).then_some(()) },
        )
        .await;
    }

    /// Stops the service and waits for it to drain.
    pub async fn stop(self) {
        self.trigger.trigger();
        self.task.await.expect("service task").expect("service run");
    }
}

#[derive(diesel::QueryableByName)]
struct OutboxEvent {
    #[diesel(sql_type = Text)]
    event_type: String,
    #[diesel(sql_type = Bytea)]
    body: Vec<u8>,
    #[diesel(sql_type = BigInt)]
    id: i64,
}

/// The events a service wrote to its outbox, oldest first (none are published in service tests
/// that run without a relay), opened with the development keys.
pub async fn outbox_events(db: &TestDb) -> Vec<Envelope> {
    outbox_rows(db)
        .await
        .into_iter()
        .map(|row| {
            let envelope = crate::keys::open(&row.body);
            assert_eq!(envelope.event_type, row.event_type, "row {}", row.id);
            envelope
        })
        .collect()
}

/// The outbox rows' bodies as stored, oldest first.
pub async fn outbox_bodies(db: &TestDb) -> Vec<Vec<u8>> {
    outbox_rows(db)
        .await
        .into_iter()
        .map(|row| row.body)
        .collect()
}

async fn outbox_rows(db: &TestDb) -> Vec<OutboxEvent> {
    let mut conn = db.connect().await;
    diesel::sql_query("SELECT id, event_type, body FROM outbox ORDER BY id")
        .load(&mut conn)
        .await
        .expect("read outbox")
}

/// Publishes `envelope` to the events exchange under `routing_key`, sealed by the service that
/// emits its type, as the relay would.
pub async fn publish(amqp: &TestAmqp, envelope: &Envelope, routing_key: &str) {
    let id = envelope.event_id.to_string();
    let body = crate::keys::seal(envelope);
    publish_raw(amqp, routing_key, &id, &envelope.event_type, &body).await;
}

/// Publishes `body` to the events exchange with `message_id` and `kind` as its AMQP message id
/// and type, as anyone holding broker credentials could, and waits for the broker's confirm.
pub async fn publish_raw(
    amqp: &TestAmqp,
    routing_key: &str,
    message_id: &str,
    kind: &str,
    body: &[u8],
) {
    use lapin::BasicProperties;
    use lapin::options::BasicPublishOptions;
    use shared::amqp::headers::short;
    let exchange = amqp.topology.events_exchange();
    let confirm = amqp
        .channel
        .basic_publish(
            short(&exchange).expect("exchange name"),
            short(routing_key).expect("routing key"),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            body,
            BasicProperties::default()
                .with_message_id(short(message_id).expect("id"))
                .with_type(short(kind).expect("type"))
                .with_delivery_mode(shared::amqp::headers::PERSISTENT),
        )
        .await
        .expect("publish");
    confirm.await.expect("confirm");
}
