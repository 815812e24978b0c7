//! Replay: each matching dead letter goes back to the queue it was dead-lettered from, as a
//! confirmed copy with a fresh attempt count, and is acked only after the confirm.
//!
//! The copy goes through the consumer's inbound exchange (`{p}.{consumer}.in`), which hashes
//! its saga id to the partition its saga's other events use: the operator identity holds write
//! on the inbound exchanges for exactly this, and no other identity but the consumer itself
//! does. The copy states the operator as its `user_id`.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use lapin::Channel;
use lapin::message::Delivery;
use lapin::options::BasicAckOptions;
use lapin::types::FieldTable;
use tokio::time::Interval;

use super::message::{DeadLetter, Filter, parse};
use super::operation::{Moved, OperationReport};
use super::operator::Operator;
use super::snapshot::Snapshot;
use crate::amqp::publish::{Outcome, Outgoing, publish_one};
use crate::amqp::{Topology, headers};

/// Replay settings.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReplayOptions {
    /// Report what would move, move nothing.
    pub dry_run: bool,
    /// Messages per second; `None` = as fast as the confirms come.
    pub rate: Option<f64>,
}

/// One replay in progress: the confirming channel, the pacing and what moved so far.
struct Replayer<'a> {
    publisher: Channel,
    /// The operator's broker user, stated in every replayed copy.
    user: &'a str,
    pacing: Option<Interval>,
    dry_run: bool,
    after_confirm: &'a (dyn Fn(usize) + Sync),
    report: OperationReport,
}

impl Operator {
    /// Sends every matching dead letter back to the queue it was dead-lettered from, with a
    /// fresh attempt count and a replay header; `after_confirm(n)` runs between the n-th copy's
    /// confirm and the dead letter's ack (a fault-injection point for tests).
    pub(super) async fn replay(
        &self,
        filter: &Filter,
        options: ReplayOptions,
        after_confirm: &(dyn Fn(usize) + Sync),
    ) -> anyhow::Result<OperationReport> {
        let publisher = crate::amqp::publish::confirm_channel(&self.connection).await?;
        let mut replayer = Replayer {
            publisher,
            user: &self.user,
            pacing: pacing(options.rate),
            dry_run: options.dry_run,
            after_confirm,
            report: OperationReport {
                dry_run: options.dry_run,
                ..OperationReport::default()
            },
        };
        for queue in self.queues(filter) {
            let snapshot = Snapshot::take(&self.connection, &queue).await?;
            replayer.report.scanned += snapshot.deliveries.len();
            let moved_before = replayer.report.moved.len();
            for delivery in &snapshot.deliveries {
                let letter = parse(&queue, &delivery.properties, &delivery.data);
                if filter.matches(&letter) {
                    replayer.report.matched += 1;
                    replayer.one(&queue, delivery, letter).await?;
                }
            }
            // A dry run reports what would move but moves nothing: every message comes back,
            // and the release must wait for all of them, or a read right after finds them gone.
            let moved = if replayer.dry_run {
                0
            } else {
                replayer.report.moved.len() - moved_before
            };
            let kept = snapshot.deliveries.len() - moved;
            snapshot.release(&self.connection, kept).await;
        }
        let _ = replayer.publisher.close(200, "replay done".into()).await;
        Ok(replayer.report)
    }
}

impl Replayer<'_> {
    /// Replays (or, in a dry run, only reports) one matching dead letter from `queue`.
    async fn one(
        &mut self,
        queue: &str,
        delivery: &Delivery,
        letter: DeadLetter,
    ) -> anyhow::Result<()> {
        let destination = letter
            .original_queue
            .clone()
            .unwrap_or_else(|| queue.trim_end_matches(".dlq").to_owned());
        let moved = Moved {
            event_id: letter.event_id,
            from: queue.to_owned(),
            to: destination,
        };
        if self.dry_run {
            self.report.moved.push(moved);
            return Ok(());
        }
        if let Some(interval) = self.pacing.as_mut() {
            interval.tick().await;
        }
        let inbound = Topology::inbound_exchange_of(&moved.to);
        let outgoing = Outgoing {
            exchange: &inbound,
            routing_key: &moved.to,
            body: &delivery.data,
            properties: delivery
                .properties
                .clone()
                .with_headers(replay_headers(delivery, letter.replays)),
            user_id: self.user,
        };
        match publish_one(&self.publisher, &outgoing).await {
            Outcome::Confirmed => {
                (self.after_confirm)(self.report.moved.len() + 1);
                delivery
                    .acker
                    .ack(BasicAckOptions::default())
                    .await
                    .context("acking a replayed dead letter")?;
                self.report.moved.push(moved);
            }
            Outcome::Rejected(why) | Outcome::Unknown(why) => {
                self.report.failed.push((moved.event_id, why));
            }
        }
        Ok(())
    }
}

/// One tick per message at `rate` messages per second; none without a (positive) rate.
fn pacing(rate: Option<f64>) -> Option<Interval> {
    rate.filter(|rate| *rate > 0.0).map(|rate| {
        let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval
    })
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
