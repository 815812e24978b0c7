//! A dead letter as read from its queue, and the filter that selects dead letters.

use chrono::{DateTime, Utc};
use lapin::types::{AMQPValue, FieldTable};
use serde::{Deserialize, Serialize};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::class;
use crate::amqp::headers;
use crate::seal::Keyring;

/// One message in a dead-letter queue.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeadLetter {
    /// The dead-letter queue it sits in.
    pub queue: String,
    /// AMQP message id = event id (`-` if the publisher set none).
    pub event_id: String,
    pub event_type: Option<String>,
    /// Saga (order) id, from the header or, failing that, the body.
    pub saga_id: Option<i64>,
    /// The queue it was consumed from when it was dead-lettered: where a replay sends it.
    pub original_queue: Option<String>,
    pub reason: Option<String>,
    pub error: Option<String>,
    /// Handling attempts that failed before it was dead-lettered.
    pub attempts: Option<i64>,
    pub dead_lettered_at: Option<DateTime<Utc>>,
    /// When its producer made the event (the envelope's `occurred_at`, else the AMQP
    /// timestamp): the order a replay keeps within a saga.
    pub occurred_at: Option<DateTime<Utc>>,
    /// How many times it was replayed already.
    pub replays: i64,
    #[schema(value_type = Object)]
    pub headers: serde_json::Map<String, serde_json::Value>,
    /// The body as text when it is UTF-8 (otherwise `body_base64` holds it): for a sealed
    /// event, the ids in the clear and the payload encrypted.
    pub body: Option<String>,
    pub body_base64: Option<String>,
    /// With the keys: the service whose signature verified and its key (`coupon/coupon-2026`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sealed_by: Option<String>,
    /// With the keys: the decrypted payload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<serde_json::Value>,
    /// With the keys: why the body does not open (a forgery, an unknown or retired key).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seal_error: Option<String>,
}

impl DeadLetter {
    /// Verifies and decrypts the body with `keys`, for whoever holds them: fills `sealed_by` and
    /// `payload`, or `seal_error`. The message itself stays as it is (a replay sends its bytes).
    pub fn open_with(&mut self, keys: &Keyring, data: &[u8]) {
        match keys.open(data) {
            Ok(opened) => {
                self.sealed_by = Some(format!("{}/{}", opened.producer, opened.signing_key));
                self.payload = Some(opened.envelope.payload);
            }
            Err(refusal) => self.seal_error = Some(refusal.to_string()),
        }
    }
}

/// Selects dead letters; every set criterion must match.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Filter {
    /// Consumer names (`order`, ...) or full dead-letter queue names.
    pub queues: Vec<String>,
    pub event_type: Option<String>,
    pub order_id: Option<i64>,
    /// Case-insensitive substring of the reason or the error.
    pub reason: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Exact event ids; empty means any.
    pub ids: Vec<String>,
    /// A group id from a summary: the dead letters of one queue, event type and error class.
    pub group: Option<String>,
}

impl Filter {
    pub fn matches(&self, letter: &DeadLetter) -> bool {
        let text = |value: &Option<String>, wanted: &str| {
            value
                .as_deref()
                .is_some_and(|v| v.to_lowercase().contains(&wanted.to_lowercase()))
        };
        (self.ids.is_empty() || self.ids.contains(&letter.event_id))
            && self
                .event_type
                .as_ref()
                .is_none_or(|t| letter.event_type.as_ref() == Some(t))
            && self.order_id.is_none_or(|id| letter.saga_id == Some(id))
            && self
                .reason
                .as_deref()
                .is_none_or(|r| text(&letter.reason, r) || text(&letter.error, r))
            && self
                .since
                .is_none_or(|since| letter.dead_lettered_at.is_some_and(|at| at >= since))
            && self
                .until
                .is_none_or(|until| letter.dead_lettered_at.is_some_and(|at| at <= until))
            && self
                .group
                .as_deref()
                .is_none_or(|group| class::group_of(letter).eq_ignore_ascii_case(group))
    }

    /// True when nothing narrows the selection.
    pub fn is_everything(&self) -> bool {
        self.event_type.is_none()
            && self.order_id.is_none()
            && self.reason.is_none()
            && self.since.is_none()
            && self.until.is_none()
            && self.ids.is_empty()
            && self.group.is_none()
    }
}

/// Reads what the consumer runtime and the broker put on a dead letter.
pub fn parse(queue: &str, properties: &lapin::BasicProperties, data: &[u8]) -> DeadLetter {
    let table = properties.headers().as_ref();
    let body_text = std::str::from_utf8(data).ok();
    let body_json: Option<serde_json::Value> =
        body_text.and_then(|text| serde_json::from_str(text).ok());
    let saga_id = headers::get_i64(table, headers::SAGA_ID).or_else(|| {
        body_json
            .as_ref()
            .and_then(|json| json.get("saga_id")?.as_i64())
    });
    let event_type = properties
        .kind()
        .as_ref()
        .map(|kind| kind.as_str().to_owned())
        .or_else(|| {
            body_json
                .as_ref()
                .and_then(|json| Some(json.get("event_type")?.as_str()?.to_owned()))
        });
    let occurred_at = body_json
        .as_ref()
        .and_then(|json| {
            json.get("occurred_at")?
                .as_str()?
                .parse::<DateTime<Utc>>()
                .ok()
        })
        .or_else(|| {
            let seconds = i64::try_from((*properties.timestamp())?).ok()?;
            DateTime::from_timestamp(seconds, 0)
        });
    // The broker's own dead-lettering (delivery limit) leaves x-death instead of our headers.
    let reason =
        headers::get_str(table, headers::DEAD_LETTER_REASON).or_else(|| x_death(table, "reason"));
    // x-death names the partition the broker dead-lettered from; a replay goes to its consumer.
    let original_queue = headers::get_str(table, headers::ORIGINAL_QUEUE).or_else(|| {
        x_death(table, "queue").map(|queue| crate::amqp::Topology::consumer_of(&queue).to_owned())
    });
    DeadLetter {
        queue: queue.to_owned(),
        event_id: properties
            .message_id()
            .as_ref()
            .map_or_else(|| "-".to_owned(), |id| id.as_str().to_owned()),
        event_type,
        saga_id,
        original_queue,
        reason,
        error: headers::get_str(table, headers::DEAD_LETTER_ERROR),
        attempts: headers::get_i64(table, headers::ATTEMPT),
        dead_lettered_at: headers::get_str(table, headers::DEAD_LETTERED_AT)
            .and_then(|at| DateTime::parse_from_rfc3339(&at).ok())
            .map(|at| at.with_timezone(&Utc)),
        occurred_at,
        replays: headers::get_i64(table, headers::REPLAY_COUNT).unwrap_or(0),
        headers: table.map(to_json).unwrap_or_default(),
        body: body_text.map(str::to_owned),
        body_base64: body_text.is_none().then(|| BASE64.encode(data)),
        sealed_by: None,
        payload: None,
        seal_error: None,
    }
}

fn x_death(table: Option<&FieldTable>, field: &str) -> Option<String> {
    let deaths = table?.inner().get("x-death")?.as_array()?;
    let first = deaths.as_slice().first()?.as_field_table()?;
    headers::get_str(Some(first), field)
}

fn to_json(table: &FieldTable) -> serde_json::Map<String, serde_json::Value> {
    table
        .inner()
        .iter()
        .map(|(key, value)| (key.as_str().to_owned(), value_to_json(value)))
        .collect()
}

fn value_to_json(value: &AMQPValue) -> serde_json::Value {
    use serde_json::Value;
    match value {
        AMQPValue::Boolean(b) => Value::Bool(*b),
        AMQPValue::LongString(s) => {
            Value::String(String::from_utf8_lossy(s.as_bytes()).into_owned())
        }
        AMQPValue::ShortString(s) => Value::String(s.as_str().to_owned()),
        AMQPValue::FieldTable(t) => Value::Object(to_json(t)),
        AMQPValue::FieldArray(a) => Value::Array(a.as_slice().iter().map(value_to_json).collect()),
        AMQPValue::Timestamp(t) => Value::from(*t),
        AMQPValue::Void => Value::Null,
        other => headers::get_i64(Some(&single(other)), "v")
            .map(Value::from)
            .unwrap_or_else(|| Value::String(format!("{other:?}"))),
    }
}

fn single(value: &AMQPValue) -> FieldTable {
    let mut table = FieldTable::default();
    table.insert("v".into(), value.clone());
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broker_made_dead_letter_names_the_consumer_of_its_partition() {
        use lapin::types::{FieldArray, LongString};
        let mut death = FieldTable::default();
        death.insert(
            "queue".into(),
            AMQPValue::LongString(LongString::from("p.order.p2")),
        );
        death.insert(
            "reason".into(),
            AMQPValue::LongString(LongString::from("delivery_limit")),
        );
        let mut table = FieldTable::default();
        table.insert(
            "x-death".into(),
            AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::FieldTable(death)])),
        );
        let properties = lapin::BasicProperties::default().with_headers(table);
        let letter = parse("p.order.dlq", &properties, b"{}");
        assert_eq!(letter.original_queue.as_deref(), Some("p.order"));
        assert_eq!(letter.reason.as_deref(), Some("delivery_limit"));
    }

    #[test]
    fn filters_combine() {
        let letter = DeadLetter {
            queue: "p.order.dlq".into(),
            event_id: "e1".into(),
            event_type: Some("StockFailed".into()),
            saga_id: Some(7),
            original_queue: Some("p.order".into()),
            reason: Some("retries_exhausted".into()),
            error: Some("Database error: deadlock".into()),
            attempts: Some(3),
            dead_lettered_at: Some(Utc::now()),
            occurred_at: None,
            replays: 0,
            headers: Default::default(),
            body: None,
            body_base64: None,
            sealed_by: None,
            payload: None,
            seal_error: None,
        };
        assert!(Filter::default().matches(&letter));
        assert!(
            Filter {
                order_id: Some(7),
                reason: Some("DEADLOCK".into()),
                ..Default::default()
            }
            .matches(&letter)
        );
        assert!(
            !Filter {
                order_id: Some(8),
                ..Default::default()
            }
            .matches(&letter)
        );
        assert!(
            !Filter {
                event_type: Some("StockProcessed".into()),
                ..Default::default()
            }
            .matches(&letter)
        );
        assert!(
            !Filter {
                ids: vec!["e2".into()],
                ..Default::default()
            }
            .matches(&letter)
        );
        assert!(
            !Filter {
                since: Some(Utc::now() + chrono::Duration::hours(1)),
                ..Default::default()
            }
            .matches(&letter)
        );
        let group = class::group_of(&letter);
        assert!(
            Filter {
                group: Some(group.to_uppercase()),
                ..Default::default()
            }
            .matches(&letter)
        );
        assert!(
            !Filter {
                group: Some("0000000000".into()),
                ..Default::default()
            }
            .matches(&letter)
        );
    }
}
