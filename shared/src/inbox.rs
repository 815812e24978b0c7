//! The consumer side of exactly-once effect: claim a message id inside the handler's transaction.
//!
//! The claim, the handler's state change and its outbox rows commit or roll back together. A
//! redelivered or republished message finds its claim and has no second effect; a message whose
//! handling rolled back (or that was dead-lettered) left no claim, so a retry or a replay applies
//! it exactly once.
//!
//! A claim is kept for the deduplication window (`INBOX_WINDOW`) and then deleted
//! ([`delete_expired`], run by `shared::housekeeping`): a copy of a message arriving later than
//! that would be applied again.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::schema::inbox;

/// Outcome of [`claim`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// First delivery: run the handler.
    First,
    /// Already applied by this consumer: skip the handler, just acknowledge.
    Duplicate,
}

/// Records `message_id` as applied by `consumer`, on `conn` (inside the caller's transaction).
/// A concurrent claim of the same id waits for this transaction and then sees `Duplicate`.
pub async fn claim(
    conn: &mut AsyncPgConnection,
    consumer: &str,
    message_id: Uuid,
    event_type: &str,
) -> QueryResult<Claim> {
    let inserted = diesel::insert_into(inbox::table)
        .values((
            inbox::consumer.eq(consumer),
            inbox::message_id.eq(message_id),
            inbox::event_type.eq(event_type),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(if inserted == 1 {
        Claim::First
    } else {
        Claim::Duplicate
    })
}

/// Deletes up to `limit` of `consumer`'s claims made before `cutoff`, oldest first; returns how
/// many. One short statement per call, so a large backlog never holds locks for long; claims
/// another replica's cleanup is deleting are skipped rather than waited for.
pub async fn delete_expired(
    conn: &mut AsyncPgConnection,
    consumer: &str,
    cutoff: DateTime<Utc>,
    limit: i64,
) -> QueryResult<usize> {
    diesel::sql_query(
        "DELETE FROM inbox WHERE consumer = $1 AND message_id IN ( \
           SELECT message_id FROM inbox WHERE consumer = $1 AND processed_at < $2 \
           ORDER BY processed_at LIMIT $3 FOR UPDATE SKIP LOCKED)",
    )
    .bind::<Text, _>(consumer)
    .bind::<Timestamptz, _>(cutoff)
    .bind::<BigInt, _>(limit)
    .execute(conn)
    .await
}
