//! Typed event handlers and the per-consumer table of them.
//!
//! A service's subscriptions read like a table:
//!
//! ```ignore
//! let handlers = Handlers::new()
//!     .on::<StockProcessed>(UseCoupon)
//!     .on::<BalanceProcessingFailed>(RestoreCoupon);
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use diesel_async::AsyncPgConnection;

use crate::envelope::{Envelope, SagaEvent};
use crate::error::HandlerError;

/// Handles one event type. `conn` is inside the transaction that also holds the inbox claim:
/// write state and enqueue outbox rows on it, never publish and never open another transaction.
#[async_trait]
pub trait EventHandler<E: SagaEvent>: Send + Sync + 'static {
    /// Applies `event`, which arrived in `envelope`.
    async fn handle(
        &self,
        conn: &mut AsyncPgConnection,
        envelope: &Envelope,
        event: E,
    ) -> Result<(), HandlerError>;
}

/// Handles every event type (an event store, an audit log): gets the envelope undecoded.
#[async_trait]
pub trait AnyEventHandler: Send + Sync + 'static {
    /// Applies the event in `envelope`, whatever its type.
    async fn handle(
        &self,
        conn: &mut AsyncPgConnection,
        envelope: &Envelope,
    ) -> Result<(), HandlerError>;
}

struct Any<H>(H);

#[async_trait]
impl<H: AnyEventHandler> ErasedHandler for Any<H> {
    async fn handle(
        &self,
        conn: &mut AsyncPgConnection,
        envelope: &Envelope,
    ) -> Result<(), HandlerError> {
        self.0.handle(conn, envelope).await
    }
}

/// The type-erased form the runtime dispatches to: decodes the payload, then calls the typed
/// handler. A payload that does not decode is a permanent error (dead-lettered at once).
#[async_trait]
pub(crate) trait ErasedHandler: Send + Sync {
    async fn handle(
        &self,
        conn: &mut AsyncPgConnection,
        envelope: &Envelope,
    ) -> Result<(), HandlerError>;
}

struct Typed<E, H> {
    handler: H,
    _event: std::marker::PhantomData<fn() -> E>,
}

#[async_trait]
impl<E: SagaEvent, H: EventHandler<E>> ErasedHandler for Typed<E, H> {
    async fn handle(
        &self,
        conn: &mut AsyncPgConnection,
        envelope: &Envelope,
    ) -> Result<(), HandlerError> {
        let event = envelope.decode::<E>()?;
        self.handler.handle(conn, envelope, event).await
    }
}

/// Event type → handler, plus the routing keys to bind.
#[derive(Clone, Default)]
pub struct Handlers {
    /// Each type's handler and the one service allowed to emit the type.
    by_type: HashMap<&'static str, (Arc<dyn ErasedHandler>, &'static str)>,
    any: Option<Arc<dyn ErasedHandler>>,
    routing_keys: Vec<String>,
    /// Deliveries applied in one transaction at most (0 and 1: one at a time).
    batch: usize,
    /// What a batch is sorted by: the key of the shared rows its handlers lock.
    batch_key: Option<fn(&Envelope) -> i64>,
    /// The handlers' own write deduplicates, so no inbox claim is made.
    self_deduplicating: bool,
}

impl std::fmt::Debug for Handlers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handlers")
            .field("event_types", &self.by_type.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Handlers {
    /// No handlers yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Routes `E` to `handler` and binds the queue to `E::ROUTING_KEY`.
    ///
    /// # Panics
    /// When `E` already has a handler: that is a wiring bug, caught at startup.
    pub fn on<E: SagaEvent>(mut self, handler: impl EventHandler<E>) -> Self {
        let typed = Typed::<E, _> {
            handler,
            _event: std::marker::PhantomData,
        };
        let previous = self.by_type.insert(E::TYPE, (Arc::new(typed), E::PRODUCER));
        assert!(previous.is_none(), "two handlers for {}", E::TYPE);
        self.routing_keys.push(E::ROUTING_KEY.to_owned());
        self
    }

    /// Routes every event type without a typed handler to `handler` and binds the queue to
    /// all routing keys (`#`). Each type is still accepted only from its producer in
    /// [`events::EMITTED_BY`](crate::events::EMITTED_BY); other types have none and are refused.
    pub fn on_any(mut self, handler: impl AnyEventHandler) -> Self {
        self.any = Some(Arc::new(Any(handler)));
        self.routing_keys.push("#".to_owned());
        self
    }

    /// Lets the runtime apply up to `max` deliveries that are ready at once in ONE transaction,
    /// each with its own inbox claim, sorted by saga so that every batch locks per-saga rows in
    /// the same order. One commit then serves many messages: under load the cost of a
    /// transaction (round trips, the WAL flush) is shared instead of paid per message.
    ///
    /// Only for handlers whose writes to shared rows are keyed by saga (the monitor's event
    /// store, the order service's own orders); see [`batched_by`](Self::batched_by) for one
    /// locked row of another key. Handlers that lock several shared rows per message (the
    /// products of an order) must not batch: two batches would lock them in crossing orders
    /// and deadlock. A batch that fails in any way is rolled back and its messages are applied
    /// one at a time, so a poison message is retried or dead-lettered alone and the others
    /// still apply exactly once.
    pub fn batched(mut self, max: usize) -> Self {
        self.batch = max;
        self
    }

    /// Like [`batched`](Self::batched) for handlers whose only locked shared row per message is
    /// named by `key` (a user's balance, a user coupon): batches are sorted by it, so every
    /// batch takes those locks in ascending order and no two batches can deadlock.
    pub fn batched_by(mut self, max: usize, key: fn(&Envelope) -> i64) -> Self {
        self.batch = max;
        self.batch_key = Some(key);
        self
    }

    /// Declares that every handler's first write is keyed by the event id and does nothing for
    /// an id already written (`INSERT .. ON CONFLICT DO NOTHING` on the event id, as the
    /// monitor's event store does): that write is the claim, and the runtime makes no inbox
    /// claim of its own, one insert and one cleanup delete fewer per message. A redelivered
    /// message then counts as processed in `consumer_messages_total`; the handler's own
    /// figures tell what it applied. Wrong for any handler that changes state before (or
    /// besides) such a write: a redelivery would change it twice.
    pub fn self_deduplicating(mut self) -> Self {
        self.self_deduplicating = true;
        self
    }

    /// Whether the runtime claims each message in the inbox before its handler runs.
    pub(crate) fn claims_in_inbox(&self) -> bool {
        !self.self_deduplicating
    }

    pub(crate) fn batch_size(&self) -> usize {
        self.batch.max(1)
    }

    /// The sort key of `envelope` within a batch: the locked row's key, else its saga.
    pub(crate) fn batch_key(&self, envelope: &Envelope) -> i64 {
        match self.batch_key {
            Some(key) => key(envelope),
            None => envelope.saga_id.unwrap_or(i64::MIN),
        }
    }

    /// The routing keys the queue is bound to.
    pub fn routing_keys(&self) -> &[String] {
        &self.routing_keys
    }

    /// The handler of `event_type` (its typed one, else the catch-all) and the service allowed
    /// to emit it. Looked up once per message, when the delivery is opened.
    pub(crate) fn get(
        &self,
        event_type: &str,
    ) -> Option<(Arc<dyn ErasedHandler>, Option<&'static str>)> {
        match self.by_type.get(event_type) {
            Some((handler, producer)) => Some((handler.clone(), Some(*producer))),
            None => Some((self.any.clone()?, crate::events::producer_of(event_type))),
        }
    }
}
