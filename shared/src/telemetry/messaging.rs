//! The spans of an event's way, by the OpenTelemetry messaging conventions (`messaging.system`
//! `rabbitmq`, `messaging.operation.type`, `messaging.message.id` = the event id,
//! `messaging.message.conversation_id` = the saga id):
//!
//! - `create {routing key}`, kind `PRODUCER`: an event written to the outbox, in the producing
//!   transaction. Its context is the event's `traceparent` (envelope and AMQP header), so every
//!   event has a context of its own. The exchange is the relay's setting, unknown here: the
//!   routing key is what the producer chose.
//! - `publish {exchange}`, kind `PRODUCER` (operation type `send`): the relay publishing one
//!   row, long after and in another process. A root of its own, linked to the row's `create`
//!   span, since a relay batch mixes rows of many sagas.
//! - `process {exchange}`, kind `CONSUMER`: a consumer applying one delivery, a child of the
//!   `create` span of the event it carries ([`super::continue_trace`]); what it emits is created
//!   inside it, so its own events are its children.

use opentelemetry::KeyValue;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::envelope::Envelope;

/// The span in which `envelope`, routed by `routing_key`, is written to the outbox: a child of
/// the span its `traceparent` names (the span that produced it), else of the current span.
pub fn create_span(routing_key: &str, envelope: &Envelope) -> Span {
    let span = tracing::info_span!(
        "create",
        otel.name = %format!("create {routing_key}"),
        otel.kind = "producer",
        event_id = %envelope.event_id,
        event_type = %envelope.event_type,
    );
    let message = Message {
        id: &envelope.event_id.to_string(),
        saga_id: envelope.saga_id,
        routing_key,
    };
    message.describe(&span, "create", "create", None);
    super::continue_trace(&span, envelope.traceparent.as_deref());
    span
}

/// The relay's span of publishing one outbox row to `exchange`: a root, linked to the row's
/// `create` span (`traceparent`, from the row's headers). Never entered: it lasts from its
/// creation until dropped, i.e. until the broker confirmed the row.
pub fn publish_span(exchange: &str, message: &Message<'_>, traceparent: Option<&str>) -> Span {
    let span = tracing::info_span!(
        parent: None,
        "publish",
        otel.name = %format!("publish {exchange}"),
        otel.kind = "producer",
        otel.status_code = tracing::field::Empty,
        event_id = %message.id,
    );
    message.describe(&span, "send", "publish", Some(exchange));
    super::link(&span, traceparent);
    span
}

/// The consumer's span of one delivery from `exchange` on `queue`: a child of the span the
/// delivery's `traceparent` names. Its fields (queue, saga, trace, event) are in every log line
/// of the delivery's handling.
pub fn process_span(
    exchange: &str,
    queue: &str,
    message: &Message<'_>,
    event_type: &str,
    traceparent: Option<&str>,
) -> Span {
    let span = tracing::info_span!(
        "process",
        otel.name = %format!("process {exchange}"),
        otel.kind = "consumer",
        queue = %queue,
        saga_id = message.saga_id.unwrap_or_default(),
        trace_id = traceparent.and_then(super::trace_id).unwrap_or(""),
        event_id = %message.id,
        event_type = %event_type,
    );
    message.describe(&span, "process", "process", Some(exchange));
    span.set_attribute("messaging.consumer.group.name", queue.to_owned());
    super::continue_trace(&span, traceparent);
    span
}

/// What the spans of one message say about it.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    /// The event id (AMQP message id).
    pub id: &'a str,
    pub saga_id: Option<i64>,
    pub routing_key: &'a str,
}

impl Message<'_> {
    /// Sets the convention's attributes on `span`: OpenTelemetry attributes only, not tracing
    /// fields, so log lines do not repeat them.
    fn describe(&self, span: &Span, kind: &'static str, name: &'static str, to: Option<&str>) {
        let mut attributes = vec![
            KeyValue::new("messaging.system", "rabbitmq"),
            KeyValue::new("messaging.operation.type", kind),
            KeyValue::new("messaging.operation.name", name),
            KeyValue::new("messaging.message.id", self.id.to_owned()),
            KeyValue::new(
                "messaging.rabbitmq.destination.routing_key",
                self.routing_key.to_owned(),
            ),
        ];
        if let Some(exchange) = to {
            attributes.push(KeyValue::new(
                "messaging.destination.name",
                exchange.to_owned(),
            ));
        }
        if let Some(saga_id) = self.saga_id {
            attributes.push(KeyValue::new(
                "messaging.message.conversation_id",
                saga_id.to_string(),
            ));
        }
        for attribute in attributes {
            span.set_attribute(attribute.key, attribute.value);
        }
    }
}
