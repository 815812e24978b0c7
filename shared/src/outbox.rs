//! The producer side of the transactional outbox: enqueue events inside the caller's transaction.
//!
//! A service never publishes to the broker. It inserts outbox rows in the same local transaction
//! as its state change; the outbox relay publishes them after commit. A rolled-back transaction
//! therefore never emits anything, and a committed one always will.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::envelope::{Envelope, SagaEvent};
use crate::schema::outbox;

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

/// Inserts `messages` as outbox rows on `conn`, which should be inside the caller's transaction.
/// The insert fires the NOTIFY trigger that wakes the relay at commit.
pub async fn enqueue(conn: &mut AsyncPgConnection, messages: &[OutboxMessage]) -> QueryResult<()> {
    if messages.is_empty() {
        return Ok(());
    }
    let rows = messages
        .iter()
        .map(|message| {
            let envelope = &message.envelope;
            let body = envelope
                .to_bytes()
                .map_err(|err| diesel::result::Error::SerializationError(Box::new(err)))?;
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
                event_type: &envelope.event_type,
                routing_key: &message.routing_key,
                saga_id: envelope.saga_id,
                body,
                headers: serde_json::Value::Object(headers),
            })
        })
        .collect::<QueryResult<Vec<_>>>()?;
    diesel::insert_into(outbox::table)
        .values(&rows)
        .execute(conn)
        .await?;
    Ok(())
}

/// Convenience for the common case: one typed event.
pub async fn enqueue_event<E: SagaEvent>(
    conn: &mut AsyncPgConnection,
    envelope: Envelope,
) -> QueryResult<()> {
    enqueue(conn, &[OutboxMessage::of::<E>(envelope)]).await
}
