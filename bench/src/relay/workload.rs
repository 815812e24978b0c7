//! What the benchmark writes: realistic envelopes, the bulk pre-fill of the throughput run and
//! the paced one-row-per-transaction producer of the latency run.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use bench::db::Database;
use diesel_async::AsyncConnection;
use outbox_relay::store::PendingRow;
use serde::{Deserialize, Serialize};
use shared::envelope::{Envelope, SagaEvent};
use shared::outbox::{OutboxMessage, enqueue};
use shared::seal::{KeySettings, Keyring};
use uuid::Uuid;

/// Rows per pre-fill transaction: large enough that commits do not dominate, small enough to
/// stay far below PostgreSQL's bind-parameter limit.
const PREFILL_CHUNK: usize = 1_000;

/// The benchmark's event: shaped like an order saga event. With the envelope's ids, timestamp
/// and trace context around it, the body is about 330 bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchEvent {
    pub order_id: i64,
    pub product_id: i64,
    pub quantity: u32,
    pub total: String,
}

impl SagaEvent for BenchEvent {
    const TYPE: &'static str = "BenchOrderPlaced";
    const ROUTING_KEY: &'static str = "bench.order.placed";
    const PRODUCER: &'static str = shared::events::ORDER;
}

/// The keys the benchmark seals with, as the order service would: the development key set, so
/// that the relay forwards bodies of the size and shape production ones have.
pub fn keys() -> anyhow::Result<Keyring> {
    KeySettings::dev().load(Some(BenchEvent::PRODUCER))
}

/// Event ids mapped to the instant just before their transaction's COMMIT, shared with the
/// consumer, which removes each entry as its message arrives.
pub type CommitTimes = Arc<Mutex<HashMap<Uuid, Instant>>>;

/// The `n`th event's outbox message, with a trace context as every traced request carries (it
/// is in the body and, copied by the relay, in a header).
pub fn message(n: u64) -> anyhow::Result<OutboxMessage> {
    let order_id = i64::try_from(n).context("row number")? + 1;
    let event = BenchEvent {
        order_id,
        product_id: 1 + order_id % 50,
        quantity: 2,
        total: "39.98".into(),
    };
    let trace = Uuid::new_v4().as_u128();
    let traceparent = format!("00-{trace:032x}-{:016x}-01", trace as u64);
    let envelope = Envelope::new(&event, Some(order_id))
        .context("encoding the event")?
        .with_traceparent(Some(traceparent));
    Ok(OutboxMessage::of::<BenchEvent>(envelope))
}

pub fn messages(count: usize) -> anyhow::Result<Vec<OutboxMessage>> {
    (0..count as u64).map(message).collect()
}

/// Inserts `messages` through the production enqueue path, one transaction per chunk.
pub async fn prefill(db: &Database, messages: &[OutboxMessage]) -> anyhow::Result<()> {
    let keys = keys()?;
    let mut conn = db.connect().await?;
    for chunk in messages.chunks(PREFILL_CHUNK) {
        conn.transaction(async |tx| -> anyhow::Result<()> {
            enqueue(tx, &keys, chunk)
                .await
                .context("enqueueing a chunk")
        })
        .await?;
    }
    Ok(())
}

/// The row the relay would load for `message`, so the ceiling publisher sends the same bytes
/// with the same properties (mirrors what `enqueue` stores).
pub fn pending_row(id: i64, message: &OutboxMessage, keys: &Keyring) -> anyhow::Result<PendingRow> {
    let envelope = &message.envelope;
    let mut headers = serde_json::Map::new();
    if let Some(traceparent) = &envelope.traceparent {
        headers.insert(
            shared::amqp::headers::TRACEPARENT.to_owned(),
            traceparent.clone().into(),
        );
    }
    Ok(PendingRow {
        id,
        event_id: envelope.event_id,
        event_type: envelope.event_type.clone(),
        routing_key: message.routing_key.clone(),
        saga_id: envelope.saga_id,
        body: keys.seal(envelope).context("sealing the envelope")?,
        content_type: shared::amqp::headers::CONTENT_TYPE_JSON.to_owned(),
        headers: serde_json::Value::Object(headers),
        created_at: envelope.occurred_at,
        attempts: 0,
    })
}

/// What the paced producer achieved.
#[derive(Debug)]
pub struct Paced {
    pub committed: usize,
    /// From the first scheduled insert to the last commit.
    pub elapsed: Duration,
    /// How late each transaction started against its schedule, sorted.
    pub lags: Vec<Duration>,
}

/// Commits `rows` rows, one per transaction, at `rate` per second over `producers` connections.
/// Row `i` is due at `start + i / rate`: a late producer catches up instead of shifting the
/// rest of the schedule, so the offered rate is the configured one for as long as the
/// producers keep up. With `commit_times`, records each row's pre-COMMIT instant.
pub async fn produce_paced(
    db: &Database,
    producers: usize,
    rate: u32,
    rows: usize,
    first_row: u64,
    commit_times: Option<CommitTimes>,
) -> anyhow::Result<Paced> {
    let keys = keys()?;
    let mut connections = Vec::with_capacity(producers);
    for _ in 0..producers {
        connections.push(db.connect().await?);
    }
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (worker, mut conn) in connections.into_iter().enumerate() {
        let (commit_times, keys) = (commit_times.clone(), keys.clone());
        tasks.spawn(async move {
            let mut lags = Vec::new();
            let mut last_commit = start;
            for index in (worker..rows).step_by(producers) {
                let offset_ns = index as u128 * 1_000_000_000 / u128::from(rate);
                let due = start + Duration::from_nanos(u64::try_from(offset_ns)?);
                tokio::time::sleep_until(due.into()).await;
                lags.push(due.elapsed());
                let message = message(first_row + index as u64)?;
                let event_id = message.envelope.event_id;
                conn.transaction(async |tx| -> anyhow::Result<()> {
                    enqueue(tx, &keys, std::slice::from_ref(&message))
                        .await
                        .context("enqueueing one row")?;
                    // Last thing before the COMMIT: the latency includes the commit itself, as a
                    // service's would.
                    if let Some(times) = &commit_times {
                        lock(times).insert(event_id, Instant::now());
                    }
                    Ok(())
                })
                .await?;
                last_commit = Instant::now();
            }
            anyhow::Ok((lags, last_commit))
        });
    }
    let mut lags = Vec::with_capacity(rows);
    let mut last_commit = start;
    while let Some(finished) = tasks.join_next().await {
        let (worker_lags, worker_last) = finished.context("producer task panicked")??;
        lags.extend(worker_lags);
        last_commit = last_commit.max(worker_last);
    }
    lags.sort_unstable();
    Ok(Paced {
        committed: rows,
        elapsed: last_commit.duration_since(start),
        lags,
    })
}

/// The map's lock; a panic elsewhere cannot leave it inconsistent (plain inserts and removes).
pub fn lock(times: &CommitTimes) -> std::sync::MutexGuard<'_, HashMap<Uuid, Instant>> {
    times
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
