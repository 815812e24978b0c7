//! Reading a dead-letter queue without taking: a snapshot of its depth, consumed on one channel
//! and never acked, given back in order when the channel closes.

use std::time::Duration;

use anyhow::Context;
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicCancelOptions, BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};

use crate::amqp::headers::short;

/// A snapshot reads at most this many messages per queue per run (the prefetch limit).
pub const MAX_PER_RUN: u32 = 60_000;
/// How long to wait for the next message of a snapshot before assuming someone else took it.
const NEXT_MESSAGE: Duration = Duration::from_secs(5);
/// How long a command waits for the messages it looked at to be ready on their queue again.
const RETURN_WAIT: Duration = Duration::from_secs(3);

/// Messages read but not acked: they go back, in order, when `channel` closes.
pub(super) struct Snapshot {
    pub(super) queue: String,
    pub(super) depth: u32,
    channel: Channel,
    tag: String,
    pub(super) deliveries: Vec<Delivery>,
}

impl Snapshot {
    /// Reads up to `queue`'s current depth without acking.
    pub(super) async fn take(connection: &Connection, queue: &str) -> anyhow::Result<Self> {
        let channel = connection
            .create_channel()
            .await
            .context("opening channel")?;
        let depth = passive_depth(&channel, queue).await?;
        let tag = format!("sagactl-{}", uuid::Uuid::new_v4().simple());
        let mut snapshot = Self {
            queue: queue.to_owned(),
            depth,
            channel,
            tag,
            deliveries: Vec::new(),
        };
        let wanted = depth.min(MAX_PER_RUN);
        if wanted == 0 {
            return Ok(snapshot);
        }
        snapshot
            .channel
            .basic_qos(
                u16::try_from(wanted).unwrap_or(u16::MAX),
                BasicQosOptions::default(),
            )
            .await?;
        let mut consumer = snapshot
            .channel
            .basic_consume(
                short(queue)?,
                short(&snapshot.tag)?,
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        while snapshot.deliveries.len() < wanted as usize {
            match tokio::time::timeout(NEXT_MESSAGE, consumer.next()).await {
                Ok(Some(Ok(delivery))) => snapshot.deliveries.push(delivery),
                Ok(Some(Err(err))) => {
                    return Err(
                        anyhow::Error::new(err).context(format!("reading {}", snapshot.queue))
                    );
                }
                Ok(None) | Err(_) => break,
            }
        }
        Ok(snapshot)
    }

    /// Ends the snapshot and waits (at most [`RETURN_WAIT`]) until the `kept` messages it did
    /// not ack are ready on their queue again. A quorum queue takes them back through its log
    /// after the channel closed; without the wait, a command run right after this one (a `show`
    /// after a `list`) could find the queue empty.
    pub(super) async fn release(self, connection: &Connection, kept: usize) {
        let queue = self.queue.clone();
        self.close().await;
        let kept = u32::try_from(kept).unwrap_or(u32::MAX);
        if kept == 0 {
            return;
        }
        let deadline = tokio::time::Instant::now() + RETURN_WAIT;
        while tokio::time::Instant::now() < deadline {
            match depth(connection, &queue).await {
                Ok(depth) if depth < kept => tokio::time::sleep(Duration::from_millis(20)).await,
                _ => return,
            }
        }
    }

    async fn close(self) {
        if let Ok(tag) = short(&self.tag) {
            let _ = self
                .channel
                .basic_cancel(tag, BasicCancelOptions::default())
                .await;
        }
        let _ = self
            .channel
            .close(200, "dead-letter operation done".into())
            .await;
    }
}

/// How many messages wait in `queue` (passively declared: a missing queue is an error).
pub(super) async fn depth(connection: &Connection, queue: &str) -> anyhow::Result<u32> {
    let channel = connection
        .create_channel()
        .await
        .context("opening channel")?;
    let depth = passive_depth(&channel, queue).await?;
    let _ = channel.close(200, "depth read".into()).await;
    Ok(depth)
}

/// The depth of `queue` on `channel`, declaring passively: a missing queue is an error, never a
/// new empty queue.
async fn passive_depth(channel: &Channel, queue: &str) -> anyhow::Result<u32> {
    let declared = channel
        .queue_declare(
            short(queue)?,
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .with_context(|| format!("queue {queue} does not exist"))?;
    Ok(declared.message_count())
}
