//! A test event, a handler that records its effects, and helpers to run a consumer: what the
//! messaging tests observe to prove "one effect" claims.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use async_trait::async_trait;
use diesel::sql_types::{BigInt, Uuid as SqlUuid};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use serde::{Deserialize, Serialize};
use shared::config::{AmqpSettings, ConsumerSettings};
use shared::consumer::{Consumer, EventHandler, Handlers};
use shared::envelope::{Envelope, SagaEvent};
use shared::error::HandlerError;
use shared::outbox::{self, OutboxMessage};
use shared::shutdown::{Shutdown, ShutdownTrigger};
use tokio::task::JoinHandle;

use crate::TestDb;

/// The event the messaging tests send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ping {
    pub n: i64,
}

impl SagaEvent for Ping {
    const TYPE: &'static str = "TestPing";
    const ROUTING_KEY: &'static str = "test.ping";
    const PRODUCER: &'static str = shared::events::ORDER;
}

/// Creates `effects`: one row per handler effect, deliberately without a unique key, so that a
/// second effect of one event shows up as a second row instead of an error.
pub async fn create_effects_table(db: &TestDb) {
    let mut conn = db.connect().await;
    diesel::sql_query("CREATE TABLE effects (id BIGSERIAL PRIMARY KEY, event_id UUID NOT NULL, n BIGINT NOT NULL)")
        .execute(&mut conn)
        .await
        .expect("create effects table");
}

#[derive(diesel::QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    count: i64,
}

/// Runs a `SELECT count(*) AS count ...` query.
pub async fn count(db: &TestDb, sql: &str) -> i64 {
    let mut conn = db.connect().await;
    diesel::sql_query(sql)
        .get_result::<Count>(&mut conn)
        .await
        .unwrap_or_else(|err| panic!("{sql}: {err}"))
        .count
}

/// Effects recorded in total.
pub async fn effect_count(db: &TestDb) -> i64 {
    count(db, "SELECT count(*) AS count FROM effects").await
}

/// Events with more than one effect (must always be zero).
pub async fn double_effects(db: &TestDb) -> i64 {
    count(
        db,
        "SELECT count(*) AS count FROM (SELECT event_id FROM effects GROUP BY event_id HAVING count(*) > 1) d",
    )
    .await
}

/// Outbox rows not yet published.
pub async fn unpublished(db: &TestDb) -> i64 {
    let mut conn = db.connect().await;
    outbox::unpublished(&mut conn, std::time::Duration::ZERO)
        .await
        .unwrap_or_else(|err| panic!("counting unpublished outbox rows: {err}"))
}

/// How the recording handler behaves.
#[derive(Debug, Clone, Copy, Default)]
pub enum Behaviour {
    #[default]
    Succeed,
    /// Fails transiently on the first `n` calls, then succeeds.
    FailFirst(u32),
    /// Always fails transiently.
    AlwaysFail,
    /// Panics on the first `n` calls (after writing its effect), then succeeds.
    PanicFirst(u32),
}

/// Inserts one `effects` row per handled ping; counts its calls.
#[derive(Clone, Default)]
pub struct Recorder {
    pub calls: Arc<AtomicU32>,
    pub behaviour: Behaviour,
}

impl Recorder {
    pub fn new(behaviour: Behaviour) -> Self {
        Self {
            calls: Arc::default(),
            behaviour,
        }
    }

    pub fn calls(&self) -> u32 {
        AtomicU32::load(&self.calls, Ordering::SeqCst)
    }
}

#[async_trait]
impl EventHandler<Ping> for Recorder {
    async fn handle(
        &self,
        conn: &mut AsyncPgConnection,
        envelope: &Envelope,
        event: Ping,
    ) -> Result<(), HandlerError> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        // The effect is written before the failure so that a failure proves the rollback too.
        diesel::sql_query("INSERT INTO effects (event_id, n) VALUES ($1, $2)")
            .bind::<SqlUuid, _>(envelope.event_id)
            .bind::<BigInt, _>(event.n)
            .execute(conn)
            .await?;
        match self.behaviour {
            Behaviour::FailFirst(n) if call <= n => Err(HandlerError::transient(anyhow::anyhow!(
                "induced failure {call}"
            ))),
            Behaviour::AlwaysFail => Err(HandlerError::transient(anyhow::anyhow!(
                "induced failure {call}"
            ))),
            Behaviour::PanicFirst(n) if call <= n => panic!("induced panic {call}"),
            _ => Ok(()),
        }
    }
}

/// Runs `sql` on `db` (a statement a test plants data with), which must succeed.
pub async fn execute(db: &TestDb, sql: &str) {
    let mut conn = db.connect().await;
    diesel_async::RunQueryDsl::execute(diesel::sql_query(sql), &mut conn)
        .await
        .unwrap_or_else(|err| panic!("{sql}: {err}"));
}

/// Commits `count` pings (numbered from `first`) to the outbox in one transaction; returns their
/// envelopes.
pub async fn enqueue_pings(db: &TestDb, first: i64, count: i64) -> Vec<Envelope> {
    let envelopes: Vec<Envelope> = (first..first + count)
        .map(|n| Envelope::new(&Ping { n }, Some(n)).expect("envelope"))
        .collect();
    enqueue(db, &envelopes).await;
    envelopes
}

/// Commits `per_saga` pings for each of the sagas `sagas` in one transaction, interleaved (the
/// first of every saga, then the second of every saga, ...): within a saga the outbox ids rise in
/// the order of the returned list, which is the commit order.
pub async fn enqueue_saga_pings(
    db: &TestDb,
    sagas: std::ops::Range<i64>,
    per_saga: i64,
) -> Vec<Envelope> {
    let envelopes: Vec<Envelope> = (0..per_saga)
        .flat_map(|n| sagas.clone().map(move |saga| (n, saga)))
        .map(|(n, saga)| Envelope::new(&Ping { n }, Some(saga)).expect("envelope"))
        .collect();
    enqueue(db, &envelopes).await;
    envelopes
}

async fn enqueue(db: &TestDb, envelopes: &[Envelope]) {
    let messages: Vec<OutboxMessage> = envelopes
        .iter()
        .cloned()
        .map(OutboxMessage::of::<Ping>)
        .collect();
    let keys = crate::keys::dev(Some(Ping::PRODUCER));
    let mut conn = db.connect().await;
    conn.transaction(async |tx| {
        for chunk in messages.chunks(1_000) {
            outbox::enqueue(tx, &keys, chunk).await?;
        }
        Ok::<_, diesel::result::Error>(())
    })
    .await
    .expect("enqueue pings");
}

/// A consumer running in the background, stopped (and drained) by [`RunningConsumer::stop`].
pub struct RunningConsumer {
    trigger: ShutdownTrigger,
    task: JoinHandle<anyhow::Result<()>>,
}

impl RunningConsumer {
    pub fn start(
        name: &str,
        amqp: &AmqpSettings,
        db: &TestDb,
        settings: ConsumerSettings,
        handlers: Handlers,
    ) -> Self {
        Self::start_with_keys(name, amqp, db, settings, handlers, crate::keys::reader())
    }

    /// As [`Self::start`], opening deliveries with `keys` instead of the development set.
    pub fn start_with_keys(
        name: &str,
        amqp: &AmqpSettings,
        db: &TestDb,
        settings: ConsumerSettings,
        handlers: Handlers,
        keys: shared::seal::Keyring,
    ) -> Self {
        let consumer = Consumer::new(name, amqp, db.pool.clone(), settings, handlers, keys);
        let (trigger, shutdown) = Shutdown::new();
        let task = tokio::spawn(consumer.run(shutdown));
        Self { trigger, task }
    }

    /// Requests shutdown and waits until in-flight messages are drained.
    pub async fn stop(self) {
        self.trigger.trigger();
        self.task
            .await
            .expect("consumer task")
            .expect("consumer run");
    }
}

/// Fast retries for tests: 3 attempts, 50 ms then 100 ms.
pub fn fast_consumer_settings() -> ConsumerSettings {
    ConsumerSettings {
        prefetch: 32,
        concurrency: 4,
        max_attempts: 3,
        retry_delays: vec![
            std::time::Duration::from_millis(50),
            std::time::Duration::from_millis(100),
        ],
        partitions: shared::amqp::DEFAULT_PARTITIONS,
    }
}
