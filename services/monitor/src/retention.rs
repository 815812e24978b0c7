//! Retention of the event store: with `MONITOR_RETENTION` set, ended sagas whose last event is
//! older than that are deleted with their events, so the store stops growing by five rows an
//! order. Off by default: the store is the system's history and nothing is forgotten unasked.
//!
//! A saga still in flight or cancelling is kept however old: it is a stuck saga, which is what
//! the monitor is for. A completed saga cancelled after its deletion comes back with the
//! cancellation's events only.

use std::time::Duration;

use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use shared::db::PgPool;
use shared::metrics::SERVICE;
use shared::shutdown::Shutdown;

use crate::NAME;

/// Sagas deleted per statement (with their five or so events each).
pub const BATCH: i64 = 1_000;

/// The retention option of the monitor.
#[derive(Debug, Clone, clap::Args)]
pub struct RetentionArgs {
    /// Delete ended sagas (and their events) whose last event is older than this; unset: keep
    /// everything. Runs every CLEANUP_INTERVAL.
    #[arg(
        long = "monitor-retention",
        env = "MONITOR_RETENTION",
        value_name = "DURATION",
        value_parser = shared::config::parse_duration
    )]
    pub retention: Option<Duration>,
}

/// What one pass deleted.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, QueryableByName)]
pub struct Deleted {
    #[diesel(sql_type = BigInt)]
    pub sagas: i64,
    #[diesel(sql_type = BigInt)]
    pub events: i64,
}

/// Deletes one batch: up to `limit` ended sagas idle since before `cutoff` with their events,
/// and up to `limit` events without a saga recorded before it.
pub async fn delete_batch(
    conn: &mut AsyncPgConnection,
    cutoff: chrono::DateTime<chrono::Utc>,
    limit: i64,
) -> diesel::QueryResult<Deleted> {
    // Locking the saga rows (skipping those a recording transaction holds) makes an event
    // committed concurrently either wait and find its saga gone (and start it again) or keep
    // it out of this batch.
    diesel::sql_query(
        "WITH doomed AS ( \
           SELECT saga_id FROM sagas \
           WHERE state IN ('completed', 'failed', 'cancelled') AND last_event_at < $1 \
           ORDER BY last_event_at LIMIT $2 FOR UPDATE SKIP LOCKED), \
         events AS (DELETE FROM saga_events WHERE saga_id IN (SELECT saga_id FROM doomed) RETURNING 1), \
         loose AS (DELETE FROM saga_events WHERE event_id IN ( \
           SELECT event_id FROM saga_events WHERE saga_id IS NULL AND recorded_at < $1 \
           ORDER BY recorded_at LIMIT $2) RETURNING 1), \
         gone AS (DELETE FROM sagas WHERE saga_id IN (SELECT saga_id FROM doomed) RETURNING 1) \
         SELECT (SELECT count(*) FROM gone) AS sagas, \
                (SELECT count(*) FROM events) + (SELECT count(*) FROM loose) AS events",
    )
    .bind::<Timestamptz, _>(cutoff)
    .bind::<BigInt, _>(limit)
    .get_result(conn)
    .await
}

/// Deletes everything past `retention`, batch after batch until one comes back short or
/// `shutdown` is triggered; returns the totals.
pub async fn expire(
    pool: &PgPool,
    retention: Duration,
    shutdown: &Shutdown,
) -> anyhow::Result<Deleted> {
    let cutoff = chrono::Utc::now() - chrono::Duration::from_std(retention)?;
    let mut total = Deleted::default();
    loop {
        let mut conn = pool.get().await?;
        let deleted = delete_batch(&mut conn, cutoff, BATCH).await?;
        total.sagas += deleted.sagas;
        total.events += deleted.events;
        if deleted.sagas.max(deleted.events) < BATCH || shutdown.is_triggered() {
            return Ok(total);
        }
    }
}

/// Applies `retention` every `every` until `shutdown`, counted in
/// `saga_monitor_retention_deleted_total`.
pub async fn run(pool: PgPool, retention: Duration, every: Duration, shutdown: Shutdown) {
    ::metrics::describe_counter!(
        "saga_monitor_retention_deleted_total",
        "Rows deleted from the event store past MONITOR_RETENTION, by table (sagas, saga_events)"
    );
    let sagas = ::metrics::counter!("saga_monitor_retention_deleted_total", SERVICE => NAME, "table" => "sagas");
    let events = ::metrics::counter!("saga_monitor_retention_deleted_total", SERVICE => NAME, "table" => "saga_events");
    shared::housekeeping::every(every, "event store retention", shutdown, move |shutdown| {
        let (pool, sagas, events) = (pool.clone(), sagas.clone(), events.clone());
        async move {
            let deleted = expire(&pool, retention, &shutdown).await?;
            sagas.increment(deleted.sagas.unsigned_abs());
            events.increment(deleted.events.unsigned_abs());
            if deleted != Deleted::default() {
                tracing::info!(
                    sagas = deleted.sagas,
                    events = deleted.events,
                    ?retention,
                    "event store: sagas past the retention deleted"
                );
            }
            Ok(())
        }
    })
    .await
}
