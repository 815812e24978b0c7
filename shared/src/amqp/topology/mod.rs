//! Exchanges and queues, declared idempotently, every name under one configurable prefix.
//!
//! ```text
//! {p}.events (topic) ──routing keys──▶ {p}.{c}.in (x-consistent-hash on x-saga-id)
//!                                        │ one saga always lands in the same partition
//!                                        ▼
//!                                      {p}.{c}.p0 … {p}.{c}.p{N-1}   (quorum, single active consumer)
//!                                        │ transient failure: consumer republishes (confirmed)
//!                                        ▼
//! {p}.{c}.retry (direct) ──▶ {p}.{c}.delay-{ms}ms         (quorum, message TTL = ms)
//!                                        │ TTL expiry dead-letters at-least-once into
//!                                        │ {p}.{c}.in, which hashes it to its partition again
//!                                        ▼
//! {p}.dlx (direct) ──{p}.{c}──▶ {p}.{c}.dlq               (quorum)
//! ```
//!
//! Why partitions: a saga's events must be handled one after the other, in the order they were
//! published, however many instances of a consumer run. The consistent-hash exchange sends every
//! event of one saga (its `x-saga-id` header) to the same partition queue; a partition queue
//! delivers to one consumer at a time (`x-single-active-consumer`), the others waiting to take
//! over; inside the process a saga's deliveries go through one lane (see
//! [`crate::consumer`]). Partitions, not one queue, so that instances can share the work.
//! `{p}.{c}` (without a suffix) names the consumer as a whole: the dead-letter routing key,
//! the `x-original-queue` of a dead letter and the metrics label.
//!
//! Why quorum queues everywhere: they replicate, and since RabbitMQ 3.10 they dead-letter
//! *at-least-once* (`x-dead-letter-strategy: at-least-once`, which requires
//! `x-overflow: reject-publish`), where the default is at-most-once (docs/traps.md, trap 2).
//! Dead letters the consumer decides on (malformed, unknown type, retries exhausted) are not
//! left to the broker at all: the consumer publishes them to `{p}.dlx` with reason headers and
//! a confirm, and acks the original only afterwards. The broker's own dead-lettering from a
//! partition queue only fires past `x-delivery-limit` (a message that keeps crashing its
//! consumer).
//!
//! Why a retry exchange per consumer rather than the default exchange: publishing through the
//! default exchange needs write permission on `amq.default`, which reaches *every* queue of the
//! vhost, and so does declaring a queue that dead-letters to it. Through `{p}.{c}.retry` and
//! `{p}.{c}.in` a consumer's identity reaches only its own queues (docs/messaging.md, "Broker
//! identities").
//!
//! A delay queue's name carries its delay, so changing the configured delays declares new
//! queues instead of failing on an argument mismatch. Queues of an earlier layout (one queue
//! `{p}.{c}`, retry queues `.retry-{ms}ms`) are left alone: docs/production.md, "Upgrading to
//! partitions", says how to drain them.
//!
//! The shared exchanges (`{p}.events`, `{p}.dlx`) are *ensured*: looked up passively, declared
//! only when missing. An identity without configure permission on them (every one under
//! `sagactl broker setup`) then works as long as the setup declared them.

mod declare;

use std::time::Duration;

use anyhow::Context;
use lapin::options::QueueDeleteOptions;
use lapin::types::AMQPValue;
use lapin::{Channel, Connection, ExchangeKind};

use self::declare::{
    at_least_once_dead_lettering, bind, bind_exchange, declare_exchange, declare_exchange_with,
    declare_quorum, delete_exchange, ensure_exchange, long_string, quorum_args,
};
use super::headers;

/// Partition queues per consumer unless configured otherwise.
pub const DEFAULT_PARTITIONS: u16 = 4;

/// The exchange type that spreads a consumer's events over its partitions (RabbitMQ's
/// `rabbitmq_consistent_hash_exchange` plugin).
pub const CONSISTENT_HASH: &str = "x-consistent-hash";

/// The names under one prefix.
#[derive(Debug, Clone)]
pub struct Topology {
    prefix: String,
}

/// One consumer's queues: the routing keys it binds, its partitions and its retry ladder.
#[derive(Debug, Clone)]
pub struct QueueSpec {
    /// The consumer's name, e.g. `product`; its queues are `{prefix}.{consumer}.p{i}`.
    pub consumer: String,
    pub routing_keys: Vec<String>,
    pub retry_delays: Vec<Duration>,
    /// Deliveries after which the broker itself dead-letters a message that never got acked or
    /// rejected (e.g. it crashes the consumer process every time).
    pub delivery_limit: u32,
    /// Partition queues; at least 1. Every instance of the consumer must use the same number.
    pub partitions: u16,
}

impl QueueSpec {
    pub fn new(
        consumer: impl Into<String>,
        routing_keys: Vec<String>,
        retry_delays: Vec<Duration>,
    ) -> Self {
        Self {
            consumer: consumer.into(),
            routing_keys,
            retry_delays,
            delivery_limit: 20,
            partitions: DEFAULT_PARTITIONS,
        }
    }

    /// The same spec with `partitions` partition queues (at least one).
    pub fn with_partitions(mut self, partitions: u16) -> Self {
        self.partitions = partitions.max(1);
        self
    }
}

impl Topology {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The topic exchange all saga events are published to.
    pub fn events_exchange(&self) -> String {
        format!("{}.events", self.prefix)
    }

    /// The direct exchange dead letters go to, routed by the consumer they came from.
    pub fn dead_letter_exchange(&self) -> String {
        format!("{}.dlx", self.prefix)
    }

    /// The consumer as a whole (`{p}.{consumer}`): the routing key of its dead letters, their
    /// `x-original-queue`, and the `queue` label of its metrics. No queue has this name.
    pub fn queue(&self, consumer: &str) -> String {
        format!("{}.{consumer}", self.prefix)
    }

    /// The consistent-hash exchange in front of `consumer`'s partitions: events, expired
    /// retries and replayed dead letters all enter through it.
    pub fn inbound_exchange(&self, consumer: &str) -> String {
        format!("{}.{consumer}.in", self.prefix)
    }

    /// The consistent-hash exchange `queue` (a name from [`Self::queue`], or one of its
    /// partitions) is fed through.
    pub fn inbound_exchange_of(queue: &str) -> String {
        format!("{}.in", Self::consumer_of(queue))
    }

    /// The consumer as a whole (`{p}.{c}`) that `queue` belongs to: `queue` itself, or the
    /// consumer of a partition `{p}.{c}.p{i}` (the queue the broker names in `x-death` when it
    /// dead-letters a message past the delivery limit).
    pub fn consumer_of(queue: &str) -> &str {
        match queue.rsplit_once(".p") {
            Some((consumer, index))
                if !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit()) =>
            {
                consumer
            }
            _ => queue,
        }
    }

    /// Partition `index` of `consumer`.
    pub fn partition_queue(&self, consumer: &str, index: u16) -> String {
        format!("{}.{consumer}.p{index}", self.prefix)
    }

    /// Every partition queue of `spec`, in index order.
    pub fn partition_queues(&self, spec: &QueueSpec) -> Vec<String> {
        (0..spec.partitions.max(1))
            .map(|index| self.partition_queue(&spec.consumer, index))
            .collect()
    }

    pub fn dead_letter_queue(&self, consumer: &str) -> String {
        format!("{}.{consumer}.dlq", self.prefix)
    }

    pub fn retry_queue(&self, consumer: &str, delay: Duration) -> String {
        format!("{}.{consumer}.delay-{}ms", self.prefix, delay.as_millis())
    }

    /// The direct exchange `consumer`'s retry copies go through (routing key = the delay
    /// queue).
    pub fn retry_exchange(&self, consumer: &str) -> String {
        format!("{}.{consumer}.retry", self.prefix)
    }

    /// Declares the events exchange and the dead-letter exchange (needs configure permission on
    /// both; the runtime [`Self::ensure_exchanges`] instead).
    pub async fn declare_exchanges(&self, channel: &Channel) -> anyhow::Result<()> {
        declare_exchange(channel, &self.events_exchange(), ExchangeKind::Topic).await?;
        declare_exchange(channel, &self.dead_letter_exchange(), ExchangeKind::Direct).await
    }

    /// Makes sure the events and the dead-letter exchange exist (see the module doc).
    pub async fn ensure_exchanges(&self, connection: &Connection) -> anyhow::Result<()> {
        ensure_exchange(connection, &self.events_exchange(), ExchangeKind::Topic).await?;
        ensure_exchange(
            connection,
            &self.dead_letter_exchange(),
            ExchangeKind::Direct,
        )
        .await
    }

    /// Makes sure the events exchange exists: all the outbox relay publishes to.
    pub async fn ensure_events_exchange(&self, connection: &Connection) -> anyhow::Result<()> {
        ensure_exchange(connection, &self.events_exchange(), ExchangeKind::Topic).await
    }

    /// Declares `spec`'s exchanges (inbound, retry), partition queues, dead-letter queue and
    /// delay queues, with their bindings. The shared exchanges must exist
    /// ([`Self::ensure_exchanges`]).
    pub async fn declare_queue(&self, channel: &Channel, spec: &QueueSpec) -> anyhow::Result<()> {
        let whole = self.queue(&spec.consumer);
        let inbound = self.inbound_exchange(&spec.consumer);
        let retry_exchange = self.retry_exchange(&spec.consumer);
        let mut hash_on = lapin::types::FieldTable::default();
        hash_on.insert("hash-header".into(), long_string(headers::SAGA_ID));
        declare_exchange_with(
            channel,
            &inbound,
            ExchangeKind::Custom(CONSISTENT_HASH.into()),
            hash_on,
        )
        .await
        .context("is RabbitMQ's rabbitmq_consistent_hash_exchange plugin enabled?")?;
        declare_exchange(channel, &retry_exchange, ExchangeKind::Direct).await?;

        let dlq = self.dead_letter_queue(&spec.consumer);
        declare_quorum(channel, &dlq, quorum_args()).await?;
        bind(channel, &dlq, &self.dead_letter_exchange(), &whole).await?;

        for partition in self.partition_queues(spec) {
            let mut args = at_least_once_dead_lettering(&self.dead_letter_exchange(), &whole);
            args.insert(
                "x-delivery-limit".into(),
                AMQPValue::LongInt(i32::try_from(spec.delivery_limit).unwrap_or(i32::MAX)),
            );
            args.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
            declare_quorum(channel, &partition, args).await?;
            // The routing key of a consistent-hash binding is the partition's weight: equal.
            bind(channel, &partition, &inbound, "1").await?;
        }
        for key in &spec.routing_keys {
            bind_exchange(channel, &inbound, &self.events_exchange(), key).await?;
        }

        for delay in &spec.retry_delays {
            let retry = self.retry_queue(&spec.consumer, *delay);
            // Back through the inbound exchange: the saga id hashes to the same partition.
            let mut args = at_least_once_dead_lettering(&inbound, &whole);
            args.insert(
                "x-message-ttl".into(),
                AMQPValue::LongLongInt(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX)),
            );
            declare_quorum(channel, &retry, args).await?;
            bind(channel, &retry, &retry_exchange, &retry).await?;
        }
        Ok(())
    }

    /// Deletes `spec`'s queues and exchanges (tests and tools; production never deletes).
    pub async fn delete_queue(&self, channel: &Channel, spec: &QueueSpec) -> anyhow::Result<()> {
        let mut names = self.partition_queues(spec);
        names.push(self.dead_letter_queue(&spec.consumer));
        names.extend(
            spec.retry_delays
                .iter()
                .map(|d| self.retry_queue(&spec.consumer, *d)),
        );
        for name in names {
            channel
                .queue_delete(headers::short(&name)?, QueueDeleteOptions::default())
                .await
                .with_context(|| format!("deleting queue {name}"))?;
        }
        delete_exchange(channel, &self.retry_exchange(&spec.consumer)).await?;
        delete_exchange(channel, &self.inbound_exchange(&spec.consumer)).await
    }

    /// Deletes both exchanges (tests and tools).
    pub async fn delete_exchanges(&self, channel: &Channel) -> anyhow::Result<()> {
        for name in [self.events_exchange(), self.dead_letter_exchange()] {
            delete_exchange(channel, &name).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partition_belongs_to_its_consumer_and_replays_through_its_hash_exchange() {
        assert_eq!(Topology::consumer_of("saga.order.p2"), "saga.order");
        assert_eq!(Topology::consumer_of("saga.order.p17"), "saga.order");
        assert_eq!(Topology::consumer_of("saga.order"), "saga.order");
        // A consumer whose own name looks like a partition suffix stays whole.
        assert_eq!(Topology::consumer_of("saga.payments"), "saga.payments");
        assert_eq!(Topology::consumer_of("saga.order.p"), "saga.order.p");
        assert_eq!(
            Topology::inbound_exchange_of("saga.order.p2"),
            "saga.order.in"
        );
        assert_eq!(
            Topology::inbound_exchange_of("saga.coupon"),
            "saga.coupon.in"
        );
    }
}
