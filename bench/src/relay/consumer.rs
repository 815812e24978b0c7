//! The consuming side of every run: a plain lapin consumer with a high prefetch that acks in
//! bulk, counts distinct messages and, in the latency run, measures commit-to-consume time.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Acker, Channel, Connection};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::workload::{CommitTimes, lock};

const CONSUMER_TAG: &str = "relay-bench";

/// What one consumer saw.
#[derive(Debug, Default)]
pub struct Tally {
    /// Distinct message ids received.
    pub unique: usize,
    /// Deliveries whose message id was already seen (the relay is at-least-once).
    pub duplicates: usize,
    pub first_at: Option<Instant>,
    /// When the last distinct message arrived: the end of a run, whatever duplicates follow.
    pub last_at: Option<Instant>,
    /// Commit-to-consume latencies of messages whose commit time was recorded.
    pub latencies: Vec<Duration>,
    /// Messages without a recorded commit time (warm-up rows in the latency run).
    pub unmatched: usize,
}

pub struct BenchConsumer {
    channel: Channel,
    count: watch::Receiver<usize>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<Tally>>,
}

impl BenchConsumer {
    /// Starts consuming `queue` on a new channel of `connection`; returns once the broker
    /// registered the consumer, so nothing published afterwards can be missed.
    pub async fn start(
        connection: &Connection,
        queue: &str,
        prefetch: u16,
        ack_every: u64,
        commit_times: Option<CommitTimes>,
    ) -> anyhow::Result<Self> {
        let channel = connection
            .create_channel()
            .await
            .context("opening consumer channel")?;
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await
            .context("setting prefetch")?;
        let consumer = channel
            .basic_consume(
                queue.into(),
                CONSUMER_TAG.into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .with_context(|| format!("consuming {queue}"))?;
        let (count_tx, count) = watch::channel(0);
        let (stop, stop_rx) = oneshot::channel();
        let task = tokio::spawn(consume(
            consumer,
            ack_every,
            commit_times,
            count_tx,
            stop_rx,
        ));
        Ok(Self {
            channel,
            count,
            stop,
            task,
        })
    }

    /// Waits until `target` distinct messages arrived, failing after `deadline`.
    pub async fn wait_for(&mut self, target: usize, deadline: Duration) -> anyhow::Result<()> {
        let waited = tokio::time::timeout(deadline, self.count.wait_for(|n| *n >= target))
            .await
            .map(|reached| reached.is_ok());
        match waited {
            Ok(true) => Ok(()),
            // The sender is gone: the consume task failed; `finish` reports why.
            Ok(false) => bail!("the consumer stopped early"),
            Err(_) => bail!(
                "timed out after {deadline:?} with {} of {target} messages",
                *self.count.borrow()
            ),
        }
    }

    /// Acks what is still unacked, cancels the consumer and returns the tally.
    pub async fn finish(self) -> anyhow::Result<Tally> {
        let _ = self.stop.send(());
        let tally = self.task.await.context("consumer task panicked")??;
        // Best effort: closing the channel cancels the consumer anyway.
        let _ = self
            .channel
            .basic_cancel(CONSUMER_TAG.into(), BasicCancelOptions::default())
            .await;
        let _ = self.channel.close(200, "run done".into()).await;
        Ok(tally)
    }
}

async fn consume(
    mut consumer: lapin::Consumer,
    ack_every: u64,
    commit_times: Option<CommitTimes>,
    count: watch::Sender<usize>,
    mut stop: oneshot::Receiver<()>,
) -> anyhow::Result<Tally> {
    let mut tally = Tally::default();
    let mut seen = HashSet::new();
    let mut unacked: u64 = 0;
    let mut last_acker: Option<Acker> = None;
    loop {
        let delivery = tokio::select! {
            biased;
            _ = &mut stop => break,
            next = consumer.next() => match next {
                Some(delivery) => delivery.context("receiving a delivery")?,
                None => bail!("the broker ended the consumer"),
            },
        };
        let received = Instant::now();
        tally.first_at.get_or_insert(received);
        let id = delivery
            .properties
            .message_id()
            .as_ref()
            .and_then(|id| Uuid::parse_str(id.as_str()).ok())
            .context("a delivery without a uuid message id")?;
        if seen.insert(id) {
            tally.unique += 1;
            tally.last_at = Some(received);
            count.send_replace(tally.unique);
        } else {
            tally.duplicates += 1;
        }
        if let Some(times) = &commit_times {
            match lock(times).remove(&id) {
                Some(committed) => tally
                    .latencies
                    .push(received.saturating_duration_since(committed)),
                None => tally.unmatched += 1,
            }
        }
        unacked += 1;
        if unacked >= ack_every {
            ack_up_to(&delivery.acker).await?;
            unacked = 0;
            last_acker = None;
        } else {
            last_acker = Some(delivery.acker);
        }
    }
    if let Some(acker) = last_acker {
        ack_up_to(&acker).await?;
    }
    Ok(tally)
}

/// One ack for every delivery up to this one.
async fn ack_up_to(acker: &Acker) -> anyhow::Result<()> {
    acker
        .ack(BasicAckOptions { multiple: true })
        .await
        .context("acking")?;
    Ok(())
}
