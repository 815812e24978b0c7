//! The one header vocabulary, defined once.
//!
//! AMQP properties carry the envelope's ids: `message_id` = event id, `type` = event type,
//! `timestamp` = occurred-at (seconds), `content_type`, `delivery_mode` = persistent. Headers
//! carry the rest; the consumer runtime adds the retry and dead-letter ones.

use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};

/// The saga (order) id, a 64-bit integer.
pub const SAGA_ID: &str = "x-saga-id";
/// The event whose handling produced this one.
pub const CAUSATION_ID: &str = "x-causation-id";
/// The envelope's schema version.
pub const SCHEMA_VERSION: &str = "x-schema-version";
/// W3C trace context.
pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";

/// How many handling attempts already failed transiently (absent = none).
pub const ATTEMPT: &str = "x-attempt";
/// The error of the last failed attempt.
pub const LAST_ERROR: &str = "x-last-error";
/// Why a message was dead-lettered: one of the `REASON_*` values.
pub const DEAD_LETTER_REASON: &str = "x-dead-letter-reason";
/// The error text behind the reason.
pub const DEAD_LETTER_ERROR: &str = "x-dead-letter-error";
/// The queue the message was consumed from when it was dead-lettered.
pub const ORIGINAL_QUEUE: &str = "x-original-queue";
/// When it was dead-lettered, RFC 3339.
pub const DEAD_LETTERED_AT: &str = "x-dead-lettered-at";

/// How many times an operator replayed this message from a dead-letter queue.
pub const REPLAY_COUNT: &str = "x-replay-count";
/// When it was last replayed, RFC 3339.
pub const REPLAYED_AT: &str = "x-replayed-at";

/// The body is not a valid envelope.
pub const REASON_MALFORMED: &str = "malformed";
/// The message is not sealed by the service allowed to emit its type, or was altered, or
/// re-published under another id, or sealed under an unknown key (docs/security.md).
pub const REASON_UNAUTHENTICATED: &str = "unauthenticated";
/// No handler is registered for the event type.
pub const REASON_UNKNOWN_TYPE: &str = "unknown_event_type";
/// The handler failed transiently on every allowed attempt.
pub const REASON_RETRIES_EXHAUSTED: &str = "retries_exhausted";
/// The handler rejected the message as permanently unprocessable.
pub const REASON_REJECTED: &str = "rejected";

pub const CONTENT_TYPE_JSON: &str = "application/json";
/// AMQP delivery mode 2: written to disk by the broker.
pub const PERSISTENT: u8 = 2;

/// A header value as a string, whether sent as long or short string.
pub fn get_str(headers: Option<&FieldTable>, key: &str) -> Option<String> {
    match headers?.inner().get(key)? {
        AMQPValue::LongString(value) => {
            Some(String::from_utf8_lossy(value.as_bytes()).into_owned())
        }
        AMQPValue::ShortString(value) => Some(value.as_str().to_owned()),
        _ => None,
    }
}

/// A header value as an integer, whatever integer width the sender chose.
pub fn get_i64(headers: Option<&FieldTable>, key: &str) -> Option<i64> {
    match headers?.inner().get(key)? {
        AMQPValue::ShortShortInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortShortUInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortInt(v) => Some(i64::from(*v)),
        AMQPValue::ShortUInt(v) => Some(i64::from(*v)),
        AMQPValue::LongInt(v) => Some(i64::from(*v)),
        AMQPValue::LongUInt(v) => Some(i64::from(*v)),
        AMQPValue::LongLongInt(v) => Some(*v),
        AMQPValue::Timestamp(v) => i64::try_from(*v).ok(),
        AMQPValue::LongString(v) => std::str::from_utf8(v.as_bytes()).ok()?.parse().ok(),
        _ => None,
    }
}

/// Sets `key` to a long string.
pub fn set_str(headers: &mut FieldTable, key: &str, value: &str) {
    headers.insert(
        ShortString::from(key),
        AMQPValue::LongString(LongString::from(value.as_bytes().to_vec())),
    );
}

pub fn set_i64(headers: &mut FieldTable, key: &str, value: i64) {
    headers.insert(ShortString::from(key), AMQPValue::LongLongInt(value));
}

/// A short string property value, or an error instead of lapin's panic past 255 bytes.
pub fn short(value: &str) -> anyhow::Result<ShortString> {
    ShortString::try_new(value).map_err(|err| anyhow::anyhow!("{value:.40}...: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_read_back_whatever_width_was_sent() {
        let mut table = FieldTable::default();
        set_str(&mut table, TRACEPARENT, "00-abc-def-01");
        set_i64(&mut table, SAGA_ID, 42);
        table.insert(ATTEMPT.into(), AMQPValue::ShortShortUInt(3));
        assert_eq!(
            get_str(Some(&table), TRACEPARENT).as_deref(),
            Some("00-abc-def-01")
        );
        assert_eq!(get_i64(Some(&table), SAGA_ID), Some(42));
        assert_eq!(get_i64(Some(&table), ATTEMPT), Some(3));
        assert_eq!(get_i64(Some(&table), "missing"), None);
        assert_eq!(get_i64(None, ATTEMPT), None);
        assert!(short(&"x".repeat(300)).is_err());
    }
}
