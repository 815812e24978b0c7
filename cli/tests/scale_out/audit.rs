//! The audit consumer: a real consumer runtime, several instances competing for one queue
//! bound to every saga event, that records the order in which it applied each event and
//! notices when two events of one saga are handled at the same time. It fails the first
//! attempt of some events on purpose, so that a retry lets a later event of the saga overtake.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use diesel::sql_types::{BigInt, Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use shared::amqp::QueueSpec;
use shared::config::ConsumerSettings;
use shared::consumer::{AnyEventHandler, Handlers};
use shared::envelope::Envelope;
use shared::error::HandlerError;
use testkit::effects::{RunningConsumer, fast_consumer_settings};
use testkit::{TestAmqp, TestDb};
use uuid::Uuid;

pub const NAME: &str = "audit";

/// The event type whose first attempt fails in the sagas [`forced`] picks.
pub const RETRIED_TYPE: &str = "OrderCompleted";

/// The sagas whose [`RETRIED_TYPE`] event is retried once.
pub fn forced(saga_id: i64) -> bool {
    saga_id % 10 == 3
}

/// What all instances share: which sagas are being handled right now, how often one was
/// already, and which events already failed once.
#[derive(Clone, Default)]
pub struct Audit {
    in_flight: Arc<Mutex<HashSet<i64>>>,
    pub overlaps: Arc<AtomicU32>,
    failed_once: Arc<Mutex<HashSet<Uuid>>>,
}

/// Marks a saga as being handled until dropped.
struct Handling<'a> {
    audit: &'a Audit,
    saga: i64,
}

impl Drop for Handling<'_> {
    fn drop(&mut self) {
        self.audit.in_flight.lock().unwrap().remove(&self.saga);
    }
}

impl Audit {
    fn begin(&self, saga: i64) -> Handling<'_> {
        if !self.in_flight.lock().unwrap().insert(saga) {
            self.overlaps.fetch_add(1, Ordering::SeqCst);
        }
        Handling { audit: self, saga }
    }
}

#[async_trait]
impl AnyEventHandler for Audit {
    async fn handle(
        &self,
        conn: &mut AsyncPgConnection,
        envelope: &Envelope,
    ) -> Result<(), HandlerError> {
        let saga = envelope.saga_id.unwrap_or_default();
        let _handling = self.begin(saga);
        if envelope.event_type == RETRIED_TYPE
            && forced(saga)
            && self.failed_once.lock().unwrap().insert(envelope.event_id)
        {
            return Err(HandlerError::transient(anyhow::anyhow!("forced retry")));
        }
        diesel::sql_query("INSERT INTO audit (saga_id, event_id, event_type) VALUES ($1, $2, $3)")
            .bind::<BigInt, _>(saga)
            .bind::<SqlUuid, _>(envelope.event_id)
            .bind::<Text, _>(&envelope.event_type)
            .execute(conn)
            .await?;
        // Long enough for a concurrent handling of the same saga to be seen, were there one.
        tokio::time::sleep(Duration::from_millis(1)).await;
        Ok(())
    }
}

/// The audit consumer's settings: a retry slow enough for the rest of a saga to overtake it.
pub fn settings() -> ConsumerSettings {
    ConsumerSettings {
        retry_delays: vec![Duration::from_millis(300)],
        // Three instances on the audit database's pool (the test's).
        concurrency: 2,
        ..fast_consumer_settings()
    }
}

/// Creates the audit table and declares the audit queues (so no event is missed before the
/// first instance subscribes).
pub async fn prepare(db: &TestDb, amqp: &TestAmqp) {
    let mut conn = db.connect().await;
    diesel::sql_query(
        "CREATE TABLE audit (seq BIGSERIAL PRIMARY KEY, saga_id BIGINT NOT NULL, \
         event_id UUID NOT NULL, event_type TEXT NOT NULL)",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let settings = settings();
    let spec = QueueSpec::new(NAME, vec!["#".into()], settings.retry_delays.clone())
        .with_partitions(settings.partitions);
    amqp.declare(&spec).await;
}

/// One more instance of the audit consumer.
pub fn start(audit: &Audit, db: &TestDb, amqp: &TestAmqp) -> RunningConsumer {
    let handlers = Handlers::new().on_any(audit.clone());
    RunningConsumer::start(NAME, &amqp.settings(), db, settings(), handlers)
}

/// The audit log: (saga, event id) in the order they were applied.
pub async fn log(db: &TestDb) -> Vec<(i64, Uuid)> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = BigInt)]
        saga_id: i64,
        #[diesel(sql_type = SqlUuid)]
        event_id: Uuid,
    }
    let mut conn = db.connect().await;
    diesel::sql_query("SELECT saga_id, event_id FROM audit ORDER BY seq")
        .load::<Row>(&mut conn)
        .await
        .unwrap()
        .into_iter()
        .map(|row| (row.saga_id, row.event_id))
        .collect()
}
