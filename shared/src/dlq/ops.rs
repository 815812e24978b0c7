//! The dead-letter operations (see the module documentation for why nothing is lost).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use serde::Serialize;

use super::message::{DeadLetter, Filter, parse};
use crate::amqp::headers::{self, short};
use crate::amqp::publish::{Outcome, Outgoing, publish_one};
use crate::amqp::{Topology, connect};

/// A snapshot reads at most this many messages per queue per run (the prefetch limit).
pub const MAX_PER_RUN: u32 = 60_000;
/// How long to wait for the next message of a snapshot before assuming someone else took it.
const NEXT_MESSAGE: Duration = Duration::from_secs(5);
/// How long a command waits for the messages it looked at to be ready on their queue again.
const RETURN_WAIT: Duration = Duration::from_secs(3);

/// One dead-letter queue: its depth and the messages that matched.
#[derive(Debug, Clone, Serialize)]
pub struct Listing {
    pub queue: String,
    pub depth: u32,
    pub messages: Vec<DeadLetter>,
}

/// A message an operation moved (replayed or purged).
#[derive(Debug, Clone, Serialize)]
pub struct Moved {
    pub event_id: String,
    pub from: String,
    /// The queue a replay sent it to, or the file a purge wrote it to.
    pub to: String,
}

/// What a replay or purge did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OperationReport {
    pub scanned: usize,
    pub matched: usize,
    pub dry_run: bool,
    pub moved: Vec<Moved>,
    /// Messages that matched but stayed put, with why.
    pub failed: Vec<(String, String)>,
}

/// Replay settings.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReplayOptions {
    pub dry_run: bool,
    /// Messages per second; `None` = as fast as the confirms come.
    pub rate: Option<f64>,
}

/// An operator's session on the broker.
pub struct Operator {
    connection: Connection,
    topology: Topology,
    consumers: Vec<String>,
}

impl std::fmt::Debug for Operator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Operator")
            .field("prefix", &self.topology.prefix())
            .finish()
    }
}

/// Messages read but not acked: they go back, in order, when `channel` closes.
struct Snapshot {
    queue: String,
    depth: u32,
    channel: Channel,
    tag: String,
    deliveries: Vec<Delivery>,
}

impl Snapshot {
    async fn release(self) {
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

impl Operator {
    /// Connects to the broker at `url`; `consumers` are the consumer names whose dead-letter
    /// queues exist under `prefix`.
    pub async fn connect(url: &str, prefix: &str, consumers: Vec<String>) -> anyhow::Result<Self> {
        Ok(Self {
            connection: connect(url, "sagactl dlq").await?,
            topology: Topology::new(prefix),
            consumers,
        })
    }

    /// The dead-letter queues `filter` names (consumer names or full queue names), else all.
    pub fn queues(&self, filter: &Filter) -> Vec<String> {
        let names = if filter.queues.is_empty() {
            &self.consumers
        } else {
            &filter.queues
        };
        names
            .iter()
            .map(|name| {
                if name.ends_with(".dlq") {
                    name.clone()
                } else {
                    self.topology.dead_letter_queue(
                        name.strip_prefix(&format!("{}.", self.topology.prefix()))
                            .unwrap_or(name),
                    )
                }
            })
            .collect()
    }

    /// Closes the broker connection.
    pub async fn close(self) {
        let _ = self.connection.close(200, "operator done".into()).await;
    }

    /// Ends `snapshot` and waits (at most [`RETURN_WAIT`]) until the `kept` messages it did not
    /// ack are ready on their queue again. A quorum queue takes them back through its log after
    /// the channel closed; without the wait, a command run right after this one (a `show` after
    /// a `list`) could find the queue empty.
    async fn release(&self, snapshot: Snapshot, kept: usize) {
        let queue = snapshot.queue.clone();
        snapshot.release().await;
        let kept = u32::try_from(kept).unwrap_or(u32::MAX);
        if kept == 0 {
            return;
        }
        let deadline = tokio::time::Instant::now() + RETURN_WAIT;
        while tokio::time::Instant::now() < deadline {
            match self.depth(&queue).await {
                Ok(depth) if depth < kept => tokio::time::sleep(Duration::from_millis(20)).await,
                _ => return,
            }
        }
    }

    /// How many messages wait in `queue` (passively declared: a missing queue is an error).
    pub async fn depth(&self, queue: &str) -> anyhow::Result<u32> {
        let channel = self
            .connection
            .create_channel()
            .await
            .context("opening channel")?;
        let depth = passive_depth(&channel, queue).await?;
        let _ = channel.close(200, "depth read".into()).await;
        Ok(depth)
    }

    /// Every selected queue with its depth and its messages matching `filter`; moves nothing.
    pub async fn list(&self, filter: &Filter) -> anyhow::Result<Vec<Listing>> {
        let mut listings = Vec::new();
        for queue in self.queues(filter) {
            let snapshot = self.snapshot(&queue).await?;
            let messages = snapshot
                .deliveries
                .iter()
                .map(|d| parse(&queue, &d.properties, &d.data))
                .filter(|letter| filter.matches(letter))
                .collect();
            listings.push(Listing {
                queue: queue.clone(),
                depth: snapshot.depth,
                messages,
            });
            let kept = snapshot.deliveries.len();
            self.release(snapshot, kept).await;
        }
        Ok(listings)
    }

    /// The dead letter with `event_id`, wherever it is.
    pub async fn show(&self, event_id: &str) -> anyhow::Result<Option<DeadLetter>> {
        let filter = Filter {
            ids: vec![event_id.to_owned()],
            ..Filter::default()
        };
        Ok(self
            .list(&filter)
            .await?
            .into_iter()
            .flat_map(|l| l.messages)
            .next())
    }

    /// Sends every matching dead letter back to the queue it was dead-lettered from, with a
    /// fresh attempt count and a replay header; `after_confirm(n)` runs between the n-th copy's
    /// confirm and the dead letter's ack (a fault-injection point for tests).
    pub async fn replay(
        &self,
        filter: &Filter,
        options: ReplayOptions,
        after_confirm: &(dyn Fn(usize) + Sync),
    ) -> anyhow::Result<OperationReport> {
        let publisher = self
            .connection
            .create_channel()
            .await
            .context("opening channel")?;
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .context("enabling confirms")?;
        let mut pacing = options.rate.filter(|rate| *rate > 0.0).map(|rate| {
            let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            interval
        });
        let mut report = OperationReport {
            dry_run: options.dry_run,
            ..OperationReport::default()
        };
        for queue in self.queues(filter) {
            let snapshot = self.snapshot(&queue).await?;
            report.scanned += snapshot.deliveries.len();
            let moved_before = report.moved.len();
            for delivery in &snapshot.deliveries {
                let letter = parse(&queue, &delivery.properties, &delivery.data);
                if !filter.matches(&letter) {
                    continue;
                }
                report.matched += 1;
                let destination = letter
                    .original_queue
                    .clone()
                    .unwrap_or_else(|| queue.trim_end_matches(".dlq").to_owned());
                if options.dry_run {
                    report.moved.push(Moved {
                        event_id: letter.event_id,
                        from: queue.clone(),
                        to: destination,
                    });
                    continue;
                }
                if let Some(interval) = pacing.as_mut() {
                    interval.tick().await;
                }
                let outgoing = Outgoing {
                    exchange: "",
                    routing_key: &destination,
                    body: &delivery.data,
                    properties: delivery
                        .properties
                        .clone()
                        .with_headers(replay_headers(delivery, letter.replays)),
                };
                match publish_one(&publisher, &outgoing).await {
                    Outcome::Confirmed => {
                        after_confirm(report.moved.len() + 1);
                        delivery
                            .acker
                            .ack(BasicAckOptions::default())
                            .await
                            .context("acking a replayed dead letter")?;
                        report.moved.push(Moved {
                            event_id: letter.event_id,
                            from: queue.clone(),
                            to: destination,
                        });
                    }
                    Outcome::Rejected(why) | Outcome::Unknown(why) => {
                        report.failed.push((letter.event_id, why))
                    }
                }
            }
            let kept = snapshot.deliveries.len() - (report.moved.len() - moved_before);
            self.release(snapshot, kept).await;
        }
        let _ = publisher.close(200, "replay done".into()).await;
        Ok(report)
    }

    /// Removes every matching dead letter, writing each to `dump` (JSON lines, synced to disk)
    /// before it is acked.
    pub async fn purge(&self, filter: &Filter, dump: &Path) -> anyhow::Result<OperationReport> {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dump)
            .with_context(|| format!("opening {}", dump.display()))?;
        let mut report = OperationReport::default();
        for queue in self.queues(filter) {
            let snapshot = self.snapshot(&queue).await?;
            report.scanned += snapshot.deliveries.len();
            let chosen: Vec<(&Delivery, DeadLetter)> = snapshot
                .deliveries
                .iter()
                .map(|d| (d, parse(&queue, &d.properties, &d.data)))
                .filter(|(_, letter)| filter.matches(letter))
                .collect();
            report.matched += chosen.len();
            for (_, letter) in &chosen {
                serde_json::to_writer(&mut file, letter)?;
                file.write_all(b"\n")?;
            }
            file.sync_all()
                .with_context(|| format!("syncing {}", dump.display()))?;
            let kept = snapshot.deliveries.len() - chosen.len();
            for (delivery, letter) in chosen {
                delivery
                    .acker
                    .ack(BasicAckOptions::default())
                    .await
                    .context("acking a purged dead letter")?;
                report.moved.push(Moved {
                    event_id: letter.event_id,
                    from: queue.clone(),
                    to: dump.display().to_string(),
                });
            }
            self.release(snapshot, kept).await;
        }
        Ok(report)
    }

    /// Reads up to the queue's current depth without acking.
    async fn snapshot(&self, queue: &str) -> anyhow::Result<Snapshot> {
        let channel = self
            .connection
            .create_channel()
            .await
            .context("opening channel")?;
        let depth = passive_depth(&channel, queue).await?;
        let tag = format!("sagactl-{}", uuid::Uuid::new_v4().simple());
        let mut snapshot = Snapshot {
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

/// The dead letter's headers for its replayed copy: dead-letter and retry headers dropped, a
/// fresh attempt count, and the replay recorded.
fn replay_headers(delivery: &Delivery, previous_replays: i64) -> FieldTable {
    const DROP: [&str; 6] = [
        headers::DEAD_LETTER_REASON,
        headers::DEAD_LETTER_ERROR,
        headers::DEAD_LETTERED_AT,
        headers::LAST_ERROR,
        headers::ORIGINAL_QUEUE,
        "x-death",
    ];
    let kept: BTreeMap<_, _> = delivery
        .properties
        .headers()
        .as_ref()
        .map(|table| {
            table
                .inner()
                .iter()
                .filter(|(key, _)| {
                    !DROP.contains(&key.as_str())
                        && !key.as_str().starts_with("x-first-death")
                        && !key.as_str().starts_with("x-last-death")
                })
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect()
        })
        .unwrap_or_default();
    let mut table = FieldTable::from(kept);
    headers::set_i64(&mut table, headers::ATTEMPT, 0);
    headers::set_i64(&mut table, headers::REPLAY_COUNT, previous_replays + 1);
    headers::set_str(&mut table, headers::REPLAYED_AT, &Utc::now().to_rfc3339());
    table
}
