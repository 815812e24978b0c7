//! The event store: one row per saga event.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use shared::consumer::AnyEventHandler;
use shared::envelope::Envelope;
use shared::error::HandlerError;
use uuid::Uuid;

diesel::table! {
    saga_events (event_id) {
        event_id -> Uuid,
        saga_id -> Nullable<BigInt>,
        event_type -> Text,
        causation_id -> Nullable<Uuid>,
        occurred_at -> Timestamptz,
        recorded_at -> Timestamptz,
        traceparent -> Nullable<Text>,
        payload -> Jsonb,
    }
}

/// Appends every event it is given, once: the insert keyed by event id is also the monitor's
/// deduplication (its consumer makes no inbox claim), so the saga moves only on the first copy.
pub struct Record;

#[async_trait]
impl AnyEventHandler for Record {
    async fn handle(
        &self,
        conn: &mut AsyncPgConnection,
        envelope: &Envelope,
    ) -> Result<(), HandlerError> {
        let inserted = diesel::insert_into(saga_events::table)
            .values((
                saga_events::event_id.eq(envelope.event_id),
                saga_events::saga_id.eq(envelope.saga_id),
                saga_events::event_type.eq(&envelope.event_type),
                saga_events::causation_id.eq(envelope.causation_id),
                saga_events::occurred_at.eq(envelope.occurred_at),
                saga_events::traceparent.eq(&envelope.traceparent),
                saga_events::payload.eq(&envelope.payload),
            ))
            .on_conflict_do_nothing()
            .execute(conn)
            .await?;
        if inserted == 1 {
            crate::sagas::advance(conn, envelope).await?;
        }
        Ok(())
    }
}

/// A saga event as the monitor recorded it.
#[derive(Debug, Clone, Queryable, Selectable, serde::Serialize, utoipa::ToSchema)]
#[diesel(table_name = saga_events)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct StoredEvent {
    pub event_id: Uuid,
    pub saga_id: Option<i64>,
    pub event_type: String,
    pub causation_id: Option<Uuid>,
    pub occurred_at: DateTime<Utc>,
    pub recorded_at: DateTime<Utc>,
    pub traceparent: Option<String>,
    pub payload: serde_json::Value,
}

/// The events of one saga in the order they occurred.
pub async fn timeline(conn: &mut AsyncPgConnection, saga_id: i64) -> QueryResult<Vec<StoredEvent>> {
    saga_events::table
        .filter(saga_events::saga_id.eq(saga_id))
        .order((saga_events::occurred_at, saga_events::recorded_at))
        .select(StoredEvent::as_select())
        .load(conn)
        .await
}
