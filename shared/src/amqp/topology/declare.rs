//! The declaring primitives of [`super::Topology`]: one place for durable declarations, quorum
//! arguments and bindings.

use anyhow::Context;
use lapin::options::{
    ExchangeBindOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, Connection, ExchangeKind};

use crate::amqp::headers::short;

/// Looks `name` up passively (no permission needed) and declares it only when it is missing.
/// A failed passive declaration closes its channel, so each attempt gets a channel of its own.
pub(super) async fn ensure_exchange(
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
        .exchange_declare(short(name)?, kind.clone(), passive, FieldTable::default())
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

pub(super) async fn declare_exchange(
    channel: &Channel,
    name: &str,
    kind: ExchangeKind,
) -> anyhow::Result<()> {
    declare_exchange_with(channel, name, kind, FieldTable::default()).await
}

/// Declares a durable exchange with `args` (a consistent-hash exchange's `hash-header`).
pub(super) async fn declare_exchange_with(
    channel: &Channel,
    name: &str,
    kind: ExchangeKind,
    args: FieldTable,
) -> anyhow::Result<()> {
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    channel
        .exchange_declare(short(name)?, kind, durable, args)
        .await
        .with_context(|| format!("declaring exchange {name}"))
}

pub(super) async fn delete_exchange(channel: &Channel, name: &str) -> anyhow::Result<()> {
    channel
        .exchange_delete(short(name)?, ExchangeDeleteOptions::default())
        .await
        .with_context(|| format!("deleting exchange {name}"))
}

pub(super) fn quorum_args() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), long_string("quorum"));
    args
}

/// Quorum-queue arguments that make the broker's dead-lettering at-least-once.
pub(super) fn at_least_once_dead_lettering(exchange: &str, routing_key: &str) -> FieldTable {
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

pub(super) fn long_string(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value.as_bytes().to_vec()))
}

pub(super) async fn declare_quorum(
    channel: &Channel,
    name: &str,
    args: FieldTable,
) -> anyhow::Result<()> {
    channel
        .queue_declare(
            short(name)?,
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

pub(super) async fn bind(
    channel: &Channel,
    queue: &str,
    exchange: &str,
    key: &str,
) -> anyhow::Result<()> {
    channel
        .queue_bind(
            short(queue)?,
            short(exchange)?,
            short(key)?,
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .with_context(|| format!("binding {queue} to {exchange} with {key}"))
}

/// Binds `destination` to receive what `source` routes with `key` (exchange to exchange).
pub(super) async fn bind_exchange(
    channel: &Channel,
    destination: &str,
    source: &str,
    key: &str,
) -> anyhow::Result<()> {
    channel
        .exchange_bind(
            short(destination)?,
            short(source)?,
            short(key)?,
            ExchangeBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .with_context(|| format!("binding exchange {destination} to {source} with {key}"))
}
