//! The relay's SQL. Rows are claimed by state (`published_at IS NULL`), never by a remembered
//! offset: ids are assigned at INSERT but become visible at COMMIT, so an offset skips the rows
//! of a transaction that committed late (docs/traps.md, trap 3).

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use shared::schema::outbox;
use uuid::Uuid;

/// How the relay begins a batch's transaction: its commit returns without waiting for the WAL
/// flush, which PostgreSQL's WAL writer does moments later. What a crash of the database can
/// then take back is the relay's own last commits: rows it marked or deleted as published
/// become unpublished again and are published a second time, which the consumers' inboxes
/// absorb, exactly as when the relay itself is killed between the confirm and its commit; a
/// retry time lost the same way only makes a row due sooner. No service's state depends on
/// these commits, and a claimer no longer waits for an fsync per batch with its sagas' next
/// events held back behind it (outbox-relay/tests/relay/faults.rs, "a database crash").
///
/// One simple query, so no extra round trip; `SET LOCAL` holds for this transaction only, so
/// it needs no session state and holds behind a transaction-pooling PgBouncer too.
pub const NON_DURABLE_BEGIN: &str = "BEGIN; SET LOCAL synchronous_commit TO off";

/// An outbox row as the relay needs it.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = outbox)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct PendingRow {
    pub id: i64,
    pub event_id: Uuid,
    pub event_type: String,
    pub routing_key: String,
    pub saga_id: Option<i64>,
    pub body: Vec<u8>,
    pub content_type: String,
    pub headers: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub attempts: i32,
}

/// Locks up to `limit` unpublished rows that are due, oldest first, skipping rows another relay
/// holds. Must run inside the transaction that will mark them.
///
/// A row whose saga has an earlier unpublished row (claimed by another claimer or relay right
/// now, or waiting for a retry after a refused publish) is not claimed: it goes out only after
/// that row was confirmed, so one saga's events leave in commit order however many claimers
/// run, and unrelated sagas still go out in parallel (docs/messaging.md, "Order"). Within a
/// saga, id order is commit order because its events are written one transaction after the
/// other (the consumers handle a saga's events one at a time; an order's own writes lock it).
///
/// [`Claim::followed`] says whether a claimed row's saga has a later unpublished row: once this
/// batch is published, that row is claimable, and no notification will say so.
pub async fn claim(conn: &mut AsyncPgConnection, limit: i64) -> QueryResult<Claim> {
    let (earlier, later) = diesel::alias!(outbox as earlier, outbox as later);
    let earlier_pending = earlier
        .filter(earlier.field(outbox::saga_id).eq(outbox::saga_id))
        .filter(earlier.field(outbox::published_at).is_null())
        .filter(earlier.field(outbox::id).lt(outbox::id));
    let later_pending = later
        .filter(later.field(outbox::saga_id).eq(outbox::saga_id))
        .filter(later.field(outbox::published_at).is_null())
        .filter(later.field(outbox::id).gt(outbox::id));
    let claimed: Vec<(PendingRow, bool)> = outbox::table
        .filter(outbox::published_at.is_null())
        .filter(
            outbox::next_attempt_at
                .is_null()
                .or(outbox::next_attempt_at.le(diesel::dsl::now)),
        )
        .filter(
            outbox::saga_id
                .is_null()
                .or(diesel::dsl::not(diesel::dsl::exists(earlier_pending))),
        )
        .order(outbox::id)
        .limit(limit)
        .for_update()
        .skip_locked()
        .select((PendingRow::as_select(), diesel::dsl::exists(later_pending)))
        .load(conn)
        .await?;
    let followed = claimed.iter().any(|(_, followed)| *followed);
    let rows = claimed.into_iter().map(|(row, _)| row).collect();
    Ok(Claim { rows, followed })
}

/// What [`claim`] locked.
#[derive(Debug, Default)]
pub struct Claim {
    pub rows: Vec<PendingRow>,
    /// Some row's saga has a later unpublished row, held back until this batch is published.
    pub followed: bool,
}

/// Marks rows the broker confirmed.
pub async fn mark_published(conn: &mut AsyncPgConnection, ids: &[i64]) -> QueryResult<usize> {
    if ids.is_empty() {
        return Ok(0);
    }
    diesel::update(outbox::table.filter(outbox::id.eq_any(ids)))
        .set(outbox::published_at.eq(diesel::dsl::now))
        .execute(conn)
        .await
}

/// Deletes rows the broker confirmed, for a zero retention: cheaper than marking them (no new
/// row version, no index entries) and nothing is left for cleanup.
pub async fn delete_published(conn: &mut AsyncPgConnection, ids: &[i64]) -> QueryResult<usize> {
    if ids.is_empty() {
        return Ok(0);
    }
    diesel::delete(outbox::table.filter(outbox::id.eq_any(ids)))
        .execute(conn)
        .await
}

/// Records a failed attempt and when to try again.
pub async fn mark_failed(
    conn: &mut AsyncPgConnection,
    id: i64,
    error: &str,
    retry_in: Duration,
) -> QueryResult<usize> {
    let next = Utc::now() + chrono::Duration::from_std(retry_in).unwrap_or(chrono::Duration::MAX);
    diesel::update(outbox::table.find(id))
        .set((
            outbox::attempts.eq(outbox::attempts + 1),
            outbox::last_error.eq(error),
            outbox::next_attempt_at.eq(next),
        ))
        .execute(conn)
        .await
}

/// When the earliest row that failed and waits for its retry becomes due, if any.
pub async fn next_retry_at(conn: &mut AsyncPgConnection) -> QueryResult<Option<DateTime<Utc>>> {
    outbox::table
        .filter(outbox::published_at.is_null())
        .filter(outbox::next_attempt_at.gt(diesel::dsl::now))
        .select(diesel::dsl::min(outbox::next_attempt_at))
        .first(conn)
        .await
}

/// Deletes up to `limit` rows published before `cutoff`; returns how many.
pub async fn delete_published_before(
    conn: &mut AsyncPgConnection,
    cutoff: DateTime<Utc>,
    limit: i64,
) -> QueryResult<usize> {
    diesel::sql_query(
        "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox \
         WHERE published_at IS NOT NULL AND published_at < $1 LIMIT $2)",
    )
    .bind::<diesel::sql_types::Timestamptz, _>(cutoff)
    .bind::<BigInt, _>(limit)
    .execute(conn)
    .await
}

/// Unpublished rows and the age of the oldest, for the backlog gauge.
pub async fn backlog(conn: &mut AsyncPgConnection) -> QueryResult<(i64, Option<DateTime<Utc>>)> {
    outbox::table
        .filter(outbox::published_at.is_null())
        .select((
            diesel::dsl::count_star(),
            diesel::dsl::min(outbox::created_at),
        ))
        .first(conn)
        .await
}
