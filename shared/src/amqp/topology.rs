//! Exchanges and queues, declared idempotently, every name under one configurable prefix.
//!
//! ```text
//! {p}.events (topic) ──routing keys──▶ {p}.{consumer}            (quorum)
//!                                        │ transient failure: consumer republishes (confirmed)
//!                                        ▼
//! {p}.{consumer}.retry (direct) ──▶ {p}.{consumer}.retry-{ms}ms  (quorum, message TTL = ms)
//!                                        │ TTL expiry dead-letters at-least-once through
//!                                        │ {p}.{consumer}.retry straight back to {p}.{consumer}
//!                                        ▼
//! {p}.dlx (direct) ──{p}.{consumer}──▶ {p}.{consumer}.dlq        (quorum)
//! ```
//!
//! Why quorum queues everywhere: they replicate, and since RabbitMQ 3.10 they dead-letter
//! *at-least-once* (`x-dead-letter-strategy: at-least-once`, which requires
//! `x-overflow: reject-publish`), where the default is at-most-once (docs/traps.md, trap 2).
//! Dead letters the consumer decides on (malformed, unknown type, retries exhausted) are not
//! left to the broker at all: the consumer publishes them to `{p}.dlx` with reason headers and
//! a confirm, and acks the original only afterwards. The broker's own dead-lettering from the
//! main queue only fires past `x-delivery-limit` (a message that keeps crashing its consumer).
//!
//! Why a retry exchange per consumer rather than the default exchange: publishing through the
//! default exchange needs write permission on `amq.default`, which reaches *every* queue of the
//! vhost, and so does declaring a queue that dead-letters to it. Through `{p}.{consumer}.retry`
//! a consumer's identity reaches only its own queues (docs/messaging.md, "Broker identities").
//!
//! A retry queue's name carries its delay and its arguments, so changing the configured delays
//! (or, once, moving from the default exchange to the retry exchange: `.retry.{ms}ms` became
//! `.retry-{ms}ms`) declares new queues instead of failing on an argument mismatch; an old one
//! keeps draining into the main queue.
//!
//! The shared exchanges (`{p}.events`, `{p}.dlx`) are *ensured*: looked up passively, declared
//! only when missing. An identity without configure permission on them (every one under
//! `sagactl broker setup`) then works as long as the setup declared them.

use std::time::Duration;

use anyhow::Context;
use lapin::options::{
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, Connection, ExchangeKind};

/// The names under one prefix.
#[derive(Debug, Clone)]
pub struct Topology {
    prefix: String,
}

/// One consumer's queue: the routing keys it binds and its retry ladder.
#[derive(Debug, Clone)]
pub struct QueueSpec {
    /// The consumer's name, e.g. `product`; the queue is `{prefix}.{consumer}`.
    pub consumer: String,
    pub routing_keys: Vec<String>,
    pub retry_delays: Vec<Duration>,
    /// Deliveries after which the broker itself dead-letters a message that never got acked or
    /// rejected (e.g. it crashes the consumer process every time).
    pub delivery_limit: u32,
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
        }
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

    /// The direct exchange dead letters go to, routed by the queue they came from.
    pub fn dead_letter_exchange(&self) -> String {
        format!("{}.dlx", self.prefix)
    }

    pub fn queue(&self, consumer: &str) -> String {
        format!("{}.{consumer}", self.prefix)
    }

    pub fn dead_letter_queue(&self, consumer: &str) -> String {
        format!("{}.{consumer}.dlq", self.prefix)
    }

    pub fn retry_queue(&self, consumer: &str, delay: Duration) -> String {
        format!("{}.{consumer}.retry-{}ms", self.prefix, delay.as_millis())
    }

    /// The direct exchange `consumer`'s retry copies go through (routing key = the retry queue)
    /// and its expired retries come back through (routing key = its queue).
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

    /// Declares `spec`'s retry exchange, its queue, its dead-letter queue and its retry queues,
    /// with their bindings. The shared exchanges must exist ([`Self::ensure_exchanges`]).
    pub async fn declare_queue(&self, channel: &Channel, spec: &QueueSpec) -> anyhow::Result<()> {
        let queue = self.queue(&spec.consumer);
        let dlq = self.dead_letter_queue(&spec.consumer);
        let retry_exchange = self.retry_exchange(&spec.consumer);
        declare_exchange(channel, &retry_exchange, ExchangeKind::Direct).await?;

        declare_quorum(channel, &dlq, quorum_args()).await?;
        bind(channel, &dlq, &self.dead_letter_exchange(), &queue).await?;

        let mut main_args = at_least_once_dead_lettering(&self.dead_letter_exchange(), &queue);
        main_args.insert(
            "x-delivery-limit".into(),
            AMQPValue::LongInt(i32::try_from(spec.delivery_limit).unwrap_or(i32::MAX)),
        );
        declare_quorum(channel, &queue, main_args).await?;
        for key in &spec.routing_keys {
            bind(channel, &queue, &self.events_exchange(), key).await?;
        }
        // Keyed by the queue's own name: an expired retry goes back to this consumer's queue
        // only, not to every queue bound to its event's routing key.
        bind(channel, &queue, &retry_exchange, &queue).await?;

        for delay in &spec.retry_delays {
            let retry = self.retry_queue(&spec.consumer, *delay);
            let mut args = at_least_once_dead_lettering(&retry_exchange, &queue);
            args.insert(
                "x-message-ttl".into(),
                AMQPValue::LongLongInt(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX)),
            );
            declare_quorum(channel, &retry, args).await?;
            bind(channel, &retry, &retry_exchange, &retry).await?;
        }
        Ok(())
    }

    /// Deletes `spec`'s queues and its retry exchange (tests and tools; production never
    /// deletes).
    pub async fn delete_queue(&self, channel: &Channel, spec: &QueueSpec) -> anyhow::Result<()> {
        let mut names = vec![
            self.queue(&spec.consumer),
            self.dead_letter_queue(&spec.consumer),
        ];
        names.extend(
            spec.retry_delays
                .iter()
                .map(|d| self.retry_queue(&spec.consumer, *d)),
        );
        for name in names {
            channel
                .queue_delete(super::headers::short(&name)?, QueueDeleteOptions::default())
                .await
                .with_context(|| format!("deleting queue {name}"))?;
        }
        delete_exchange(channel, &self.retry_exchange(&spec.consumer)).await
    }

    /// Deletes both exchanges (tests and tools).
    pub async fn delete_exchanges(&self, channel: &Channel) -> anyhow::Result<()> {
        for name in [self.events_exchange(), self.dead_letter_exchange()] {
            delete_exchange(channel, &name).await?;
        }
        Ok(())
    }
}

/// Looks `name` up passively (no permission needed) and declares it only when it is missing.
/// A failed passive declaration closes its channel, so each attempt gets a channel of its own.
async fn ensure_exchange(
    connection: &Connection,
    name: &str,
    kind: ExchangeKind,
) -> anyhow::Result<()> {
    let passive = ExchangeDeclareOptions {
        passive: true,
        ..ExchangeDeclareOptions::default()
    };
    let channel = connection
        .create_channel()
        .await
        .context("opening channel")?;
    let found = channel
        .exchange_declare(
            super::headers::short(name)?,
            kind.clone(),
            passive,
            FieldTable::default(),
        )
        .await;
    if found.is_ok() {
        let _ = channel.close(200, "exchange found".into()).await;
        return Ok(());
    }
    let channel = connection
        .create_channel()
        .await
        .context("opening channel")?;
    declare_exchange(&channel, name, kind).await.context(
        "the exchange is missing and this identity may not declare it: run `sagactl broker setup`",
    )?;
    let _ = channel.close(200, "exchange declared".into()).await;
    Ok(())
}

async fn declare_exchange(channel: &Channel, name: &str, kind: ExchangeKind) -> anyhow::Result<()> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    channel
        .exchange_declare(
            super::headers::short(name)?,
            kind,
            durable,
            FieldTable::default(),
        )
        .await
        .with_context(|| format!("declaring exchange {name}"))
}

async fn delete_exchange(channel: &Channel, name: &str) -> anyhow::Result<()> {
    channel
        .exchange_delete(
            super::headers::short(name)?,
            ExchangeDeleteOptions::default(),
        )
        .await
        .with_context(|| format!("deleting exchange {name}"))
}

fn quorum_args() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), long_string("quorum"));
    args
}

/// Quorum-queue arguments that make the broker's dead-lettering at-least-once.
fn at_least_once_dead_lettering(exchange: &str, routing_key: &str) -> FieldTable {
    let mut args = quorum_args();
    args.insert("x-dead-letter-exchange".into(), long_string(exchange));
    args.insert("x-dead-letter-routing-key".into(), long_string(routing_key));
    args.insert(
        "x-dead-letter-strategy".into(),
        long_string("at-least-once"),
    );
    args.insert("x-overflow".into(), long_string("reject-publish"));
    args
}

fn long_string(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value.as_bytes().to_vec()))
}

async fn declare_quorum(channel: &Channel, name: &str, args: FieldTable) -> anyhow::Result<()> {
    channel
        .queue_declare(
            super::headers::short(name)?,
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            args,
        )
        .await
        .with_context(|| format!("declaring queue {name}"))?;
    Ok(())
}

async fn bind(channel: &Channel, queue: &str, exchange: &str, key: &str) -> anyhow::Result<()> {
    channel
        .queue_bind(
            super::headers::short(queue)?,
            super::headers::short(exchange)?,
            super::headers::short(key)?,
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .with_context(|| format!("binding {queue} to {exchange} with {key}"))
}
