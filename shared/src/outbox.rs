//! The producer side of the transactional outbox: enqueue events inside the caller's transaction.
//!
//! A service never publishes to the broker. It inserts outbox rows in the same local transaction
//! as its state change; the outbox relay publishes them after commit. A rolled-back transaction
//! therefore never emits anything, and a committed one always will.

use std::borrow::Cow;
use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::dsl::IntervalDsl;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use uuid::Uuid;

use crate::envelope::{Envelope, SagaEvent};
use crate::schema::outbox;
use crate::seal::Keyring;

/// One event ready to be written to the outbox.
#[derive(Debug, Clone)]
pub struct OutboxMessage {
    pub envelope: Envelope,
    pub routing_key: String,
}

impl OutboxMessage {
    /// The event `E` in `envelope`, routed by `E::ROUTING_KEY`.
    pub fn of<E: SagaEvent>(envelope: Envelope) -> Self {
        Self {
            envelope,
            routing_key: E::ROUTING_KEY.to_owned(),
        }
    }

    /// A message with an explicit routing key (tools and tests).
    pub fn with_routing_key(envelope: Envelope, routing_key: impl Into<String>) -> Self {
        Self {
            envelope,
            routing_key: routing_key.into(),
        }
    }
}

#[derive(Insertable)]
#[diesel(table_name = outbox)]
struct NewOutboxRow<'a> {
    event_id: Uuid,
    event_type: &'a str,
    routing_key: &'a str,
    saga_id: Option<i64>,
    body: Vec<u8>,
    headers: serde_json::Value,
}

/// Inserts `messages` as outbox rows on `conn`, which should be inside the caller's transaction,
/// each body sealed with `keys` (signed by this service, payload encrypted): the table and the
/// broker never hold a readable payload. The insert fires the NOTIFY trigger that wakes the
/// relay at commit. Each event is created in a span of its own
/// ([`create_span`](crate::telemetry::messaging::create_span)), whose context it carries as its
/// `traceparent` when spans are exported.
pub async fn enqueue(
    conn: &mut AsyncPgConnection,
    keys: &Keyring,
    messages: &[OutboxMessage],
) -> QueryResult<()> {
    if messages.is_empty() {
        return Ok(());
    }
    let rows = messages
        .iter()
        .map(|message| {
            let created =
                crate::telemetry::messaging::create_span(&message.routing_key, &message.envelope);
            // The event carries the context of its own `create` span (without export, the one
            // its producer set): a consumer's span becomes that span's child.
            let envelope = match crate::telemetry::traceparent_of(&created) {
                Some(traceparent) => {
                    Cow::Owned(message.envelope.clone().with_traceparent(Some(traceparent)))
                }
                None => Cow::Borrowed(&message.envelope),
            };
            let body = keys
                .seal(&envelope)
                .map_err(|err| diesel::result::Error::SerializationError(err.into()))?;
            let mut headers = serde_json::Map::new();
            if let Some(traceparent) = &envelope.traceparent {
                headers.insert(
                    crate::amqp::headers::TRACEPARENT.to_owned(),
                    traceparent.clone().into(),
                );
            }
            if let Some(causation_id) = envelope.causation_id {
                headers.insert(
                    crate::amqp::headers::CAUSATION_ID.to_owned(),
                    causation_id.to_string().into(),
                );
            }
            Ok(NewOutboxRow {
                event_id: envelope.event_id,
                event_type: &message.envelope.event_type,
                routing_key: &message.routing_key,
                saga_id: envelope.saga_id,
                body,
                headers: serde_json::Value::Object(headers),
            })
        })
        .collect::<QueryResult<Vec<_>>>()?;
    // One row is the usual case (one event per step): kept prepared on the connection. diesel
    // caches no insert with an optional column (its text depends on which are set: here two
    // forms, with and without a saga), nor a multi-row one (its text depends on the row count),
    // so PostgreSQL would parse and plan it for every event.
    match rows.as_slice() {
        [row] => {
            crate::db::cached(diesel::insert_into(outbox::table).values(row))
                .execute(conn)
                .await?
        }
        rows => {
            diesel::insert_into(outbox::table)
                .values(rows)
                .execute(conn)
                .await?
        }
    };
    Ok(())
}

/// Convenience for the common case: one typed event.
pub async fn enqueue_event<E: SagaEvent>(
    conn: &mut AsyncPgConnection,
    keys: &Keyring,
    envelope: Envelope,
) -> QueryResult<()> {
    enqueue(conn, keys, &[OutboxMessage::of::<E>(envelope)]).await
}

/// An outbox row the relay has not published yet, as an operator reads it.
#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = outbox, check_for_backend(Pg))]
pub struct UnpublishedRow {
    pub id: i64,
    pub event_id: Uuid,
    pub event_type: String,
    pub saga_id: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub attempts: i32,
    pub last_error: Option<String>,
}

/// The one definition of "unpublished": `published_at` unset and, unless `older_than` is zero,
/// created more than `older_than` ago by the database's clock. Zero means every unpublished row.
fn unpublished_query(older_than: Duration) -> outbox::BoxedQuery<'static, Pg> {
    let query = outbox::table
        .filter(outbox::published_at.is_null())
        .into_boxed();
    if older_than.is_zero() {
        return query;
    }
    let micros = i64::try_from(older_than.as_micros()).unwrap_or(i64::MAX);
    query.filter((outbox::created_at + micros.microseconds()).lt(diesel::dsl::now))
}

/// How many outbox rows are unpublished and older than `older_than` (zero: all of them).
pub async fn unpublished(conn: &mut AsyncPgConnection, older_than: Duration) -> QueryResult<i64> {
    unpublished_query(older_than).count().get_result(conn).await
}

/// Those rows themselves, oldest first, at most `limit`.
pub async fn unpublished_rows(
    conn: &mut AsyncPgConnection,
    older_than: Duration,
    limit: i64,
) -> QueryResult<Vec<UnpublishedRow>> {
    unpublished_query(older_than)
        .order(outbox::id)
        .limit(limit)
        .select(UnpublishedRow::as_select())
        .load(conn)
        .await
}
