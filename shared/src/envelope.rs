//! The wire format of one event.
//!
//! The AMQP body is the JSON [`Envelope`]: self-describing, so a dead-lettered copy can be
//! inspected and replayed without anything else. The AMQP properties and headers mirror its ids
//! (see [`crate::amqp::headers`]) so that tools can filter without parsing bodies.

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One typed event: a payload struct with a unique type name and the routing key it is
/// published under.
pub trait SagaEvent: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// Unique name of the event type (AMQP `type` property, envelope `event_type`).
    const TYPE: &'static str;
    /// Routing key on the saga events exchange.
    const ROUTING_KEY: &'static str;
    /// The one service allowed to emit this type: a consumer refuses it sealed by anyone else.
    const PRODUCER: &'static str;
    /// Bumped when the payload changes incompatibly.
    const SCHEMA_VERSION: u32 = 1;
}

/// The JSON body of every message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Unique per event; the AMQP message id and the inbox key.
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: u32,
    /// The saga this event belongs to: the order id.
    pub saga_id: Option<i64>,
    /// The event whose handling produced this one.
    #[serde(default)]
    pub causation_id: Option<Uuid>,
    pub occurred_at: DateTime<Utc>,
    /// W3C trace context of the span that produced this event (its `create` span, see
    /// [`crate::telemetry::messaging`]); the trace is the saga's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    pub payload: serde_json::Value,
}

impl Envelope {
    /// A new envelope for `event` with a fresh, time-ordered id.
    pub fn new<E: SagaEvent>(event: &E, saga_id: Option<i64>) -> Result<Self, serde_json::Error> {
        Ok(Self {
            event_id: Uuid::now_v7(),
            event_type: E::TYPE.to_owned(),
            schema_version: E::SCHEMA_VERSION,
            saga_id,
            causation_id: None,
            occurred_at: Utc::now(),
            traceparent: None,
            payload: serde_json::to_value(event)?,
        })
    }

    /// The envelope of `event`, emitted while handling `self`: same saga and trace, caused by
    /// `self`. Its trace context is the current span's when that span is in `self`'s trace: the
    /// span handling `self` (the consumer runtime runs every handler inside it), so that the
    /// span of `event` becomes its child. Otherwise (no span export, or a span of another trace,
    /// such as a timer's) a copy of `self`'s, which keeps the event in the saga's trace.
    pub fn follow_up<E: SagaEvent>(&self, event: &E) -> Result<Self, serde_json::Error> {
        use crate::telemetry::trace_id;
        let mut next = Self::new(event, self.saga_id)?;
        next.causation_id = Some(self.event_id);
        let own = self.traceparent.as_deref();
        next.traceparent = crate::telemetry::current_traceparent()
            .filter(|current| own.is_none_or(|own| trace_id(own) == trace_id(current)))
            .or_else(|| self.traceparent.clone());
        Ok(next)
    }

    pub fn with_traceparent(mut self, traceparent: Option<String>) -> Self {
        self.traceparent = traceparent;
        self
    }

    /// The payload as the typed event `E`.
    pub fn decode<E: SagaEvent>(&self) -> Result<E, serde_json::Error> {
        E::deserialize(&self.payload)
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Ping {
        n: u32,
    }

    impl SagaEvent for Ping {
        const TYPE: &'static str = "Ping";
        const ROUTING_KEY: &'static str = "test.ping";
        const PRODUCER: &'static str = "order";
    }

    #[test]
    fn envelope_round_trips_through_bytes() {
        let envelope = Envelope::new(&Ping { n: 7 }, Some(42))
            .unwrap()
            .with_traceparent(Some(
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into(),
            ));
        let back = Envelope::from_bytes(&envelope.to_bytes().unwrap()).unwrap();
        assert_eq!(back, envelope);
        assert_eq!(back.decode::<Ping>().unwrap(), Ping { n: 7 });
    }

    #[test]
    fn follow_up_keeps_saga_and_trace_and_points_at_its_cause() {
        let first = Envelope::new(&Ping { n: 1 }, Some(9))
            .unwrap()
            .with_traceparent(Some("tp".into()));
        let next = first.follow_up(&Ping { n: 2 }).unwrap();
        assert_eq!(next.saga_id, Some(9));
        assert_eq!(next.causation_id, Some(first.event_id));
        assert_eq!(next.traceparent.as_deref(), Some("tp"));
        assert_ne!(next.event_id, first.event_id);
    }

    #[test]
    fn follow_up_names_the_span_handling_its_cause_but_never_leaves_the_sagas_trace() {
        use opentelemetry::trace::TracerProvider as _;
        use tracing_subscriber::layer::SubscriberExt as _;
        let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder().build();
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("test"));
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            let cause = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
            let first = Envelope::new(&Ping { n: 1 }, Some(9))
                .unwrap()
                .with_traceparent(Some(cause.into()));
            let handling = tracing::info_span!("process");
            crate::telemetry::continue_trace(&handling, Some(cause));
            let next = handling.in_scope(|| first.follow_up(&Ping { n: 2 }).unwrap());
            let next = next.traceparent.unwrap();
            assert_eq!(
                crate::telemetry::trace_id(&next),
                crate::telemetry::trace_id(cause)
            );
            assert_eq!(Some(next), crate::telemetry::traceparent_of(&handling));

            let timer = tracing::info_span!(parent: None, "sweep");
            let next = timer.in_scope(|| first.follow_up(&Ping { n: 3 }).unwrap());
            assert_eq!(
                next.traceparent.as_deref(),
                Some(cause),
                "another trace's span"
            );
        });
    }
}
