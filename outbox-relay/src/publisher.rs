//! The relay's side of the broker: one connection and one confirm-mode channel per claim loop.

use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection};
use shared::amqp::headers::{self, short};
use shared::amqp::publish::{Outcome, Outgoing, publish_all};
use shared::amqp::{Topology, connect, user_of};
use shared::config::AmqpSettings;

use crate::store::PendingRow;

pub struct Publisher {
    connection: Connection,
    channel: Channel,
    exchange: String,
    /// The relay's broker user, stated in every message's `user_id`.
    user: String,
}

impl Publisher {
    /// Connects, makes sure the events exchange exists (so a fresh broker cannot make every
    /// publish fail; under `sagactl broker setup` it does, and the relay may not declare it)
    /// and enables confirms.
    pub async fn connect(
        amqp: &AmqpSettings,
        topology: &Topology,
        name: &str,
    ) -> anyhow::Result<Self> {
        let user = user_of(&amqp.url)?;
        let connection = connect(amqp, name).await?;
        topology.ensure_events_exchange(&connection).await?;
        let channel = shared::amqp::publish::confirm_channel(&connection).await?;
        Ok(Self {
            connection,
            channel,
            exchange: topology.events_exchange(),
            user,
        })
    }

    /// Publishes `rows` pipelined; one outcome per row, in order. Each row's `publish` span
    /// lasts until its outcome is known and fails unless the broker confirmed the row.
    pub async fn publish(&self, rows: &[PendingRow]) -> Vec<Outcome> {
        let spans: Vec<tracing::Span> = rows.iter().map(|row| self.span(row)).collect();
        let outcomes = self.publish_pipelined(rows).await;
        for (span, outcome) in spans.iter().zip(&outcomes) {
            if !matches!(outcome, Outcome::Confirmed) {
                span.record("otel.status_code", "error");
            }
        }
        outcomes
    }

    /// The span of publishing `row`, linked to the span that created it.
    fn span(&self, row: &PendingRow) -> tracing::Span {
        let event_id = row.event_id.to_string();
        let message = shared::telemetry::messaging::Message {
            id: &event_id,
            saga_id: row.saga_id,
            routing_key: &row.routing_key,
        };
        let traceparent = row
            .headers
            .get(headers::TRACEPARENT)
            .and_then(|v| v.as_str());
        shared::telemetry::messaging::publish_span(&self.exchange, &message, traceparent)
    }

    async fn publish_pipelined(&self, rows: &[PendingRow]) -> Vec<Outcome> {
        let mut outcomes: Vec<Option<Outcome>> = vec![None; rows.len()];
        let mut outgoing = Vec::with_capacity(rows.len());
        let mut positions = Vec::with_capacity(rows.len());
        for (position, row) in rows.iter().enumerate() {
            match properties(row) {
                Ok(properties) => {
                    outgoing.push(Outgoing {
                        exchange: &self.exchange,
                        routing_key: &row.routing_key,
                        body: &row.body,
                        properties,
                        user_id: &self.user,
                    });
                    positions.push(position);
                }
                Err(err) => outcomes[position] = Some(Outcome::Rejected(format!("{err:#}"))),
            }
        }
        for (position, outcome) in positions
            .into_iter()
            .zip(publish_all(&self.channel, &outgoing).await)
        {
            outcomes[position] = Some(outcome);
        }
        outcomes
            .into_iter()
            .map(|outcome| outcome.unwrap_or_else(|| Outcome::Unknown("not published".into())))
            .collect()
    }

    pub async fn close(self) {
        let _ = self.channel.close(200, "relay stopping".into()).await;
        let _ = self.connection.close(200, "relay stopping".into()).await;
    }
}

/// AMQP properties of a row: message id = event id, type = event type, persistent, content type,
/// timestamp, and headers with the saga id plus whatever the writer stored (trace context,
/// causation id).
pub fn properties(row: &PendingRow) -> anyhow::Result<BasicProperties> {
    let mut table = FieldTable::default();
    if let Some(saga_id) = row.saga_id {
        headers::set_i64(&mut table, headers::SAGA_ID, saga_id);
    }
    if let serde_json::Value::Object(extra) = &row.headers {
        for (key, value) in extra {
            short(key)?;
            match value {
                serde_json::Value::String(text) => headers::set_str(&mut table, key, text),
                other => headers::set_str(&mut table, key, &other.to_string()),
            }
        }
    }
    Ok(BasicProperties::default()
        .with_message_id(short(&row.event_id.to_string())?)
        .with_type(short(&row.event_type)?)
        .with_content_type(short(&row.content_type)?)
        .with_delivery_mode(headers::PERSISTENT)
        .with_timestamp(u64::try_from(row.created_at.timestamp()).unwrap_or_default())
        .with_headers(table))
}
