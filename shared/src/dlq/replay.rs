//! Replay: each matching dead letter goes back to the queue it was dead-lettered from, as a
//! confirmed copy with a fresh attempt count, and is acked only after the confirm.
//!
//! Within a queue, the dead letters of one saga are replayed in the order their producers made
//! them ([`in_saga_order`]): a retry or a redelivery may have dead-lettered a saga's later step
//! before its earlier one, and the copies all enter the saga's one partition, which its
//! consumer reads in order. Different sagas keep their places relative to each other.
//!
//! The copy goes through the consumer's inbound exchange (`{p}.{consumer}.in`), which hashes
//! its saga id to the partition its saga's other events use: the operator identity holds write
//! on the inbound exchanges for exactly this, and no other identity but the consumer itself
//! does. The copy states the operator as its `user_id`.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
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
            let chosen: Vec<(&Delivery, DeadLetter)> = snapshot
                .deliveries
                .iter()
                .map(|d| (d, parse(&queue, &d.properties, &d.data)))
                .filter(|(_, letter)| filter.matches(letter))
                .collect();
            replayer.report.matched += chosen.len();
            for (delivery, letter) in in_saga_order(chosen, |(_, l)| (l.saga_id, l.occurred_at)) {
                replayer.one(&queue, delivery, letter).await?;
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

/// `items` (in queue order) with each saga's items in the order they were produced: the places
/// a saga's items held are refilled with them sorted by occurrence time (an item without one
/// after those with, ties in queue order). Items without a saga keep their places.
fn in_saga_order<T>(
    items: Vec<T>,
    key: impl Fn(&T) -> (Option<i64>, Option<DateTime<Utc>>),
) -> Vec<T> {
    let mut places: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    for (place, item) in items.iter().enumerate() {
        if let (Some(saga), _) = key(item) {
            places.entry(saga).or_default().push(place);
        }
    }
    let mut slots: Vec<Option<T>> = items.into_iter().map(Some).collect();
    for places in places.values() {
        let mut saga: Vec<T> = places.iter().filter_map(|&p| slots[p].take()).collect();
        // Stable: equal times keep queue order.
        saga.sort_by_key(|item| {
            let at = key(item).1;
            (at.is_none(), at)
        });
        for (&place, item) in places.iter().zip(saga) {
            slots[place] = Some(item);
        }
    }
    slots.into_iter().flatten().collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_sagas_items_take_its_places_in_the_order_they_were_produced() {
        let at = |minute: u32| DateTime::from_timestamp(i64::from(minute) * 60, 0);
        // (name, saga, minute produced), in queue (dead-lettering) order.
        let queue = vec![
            ("7c", Some(7), Some(3)),
            ("8b", Some(8), Some(2)),
            ("7a", Some(7), Some(1)),
            ("x", None, Some(0)),
            ("7-", Some(7), None),
            ("8a", Some(8), Some(1)),
            ("7b", Some(7), Some(2)),
        ];
        let ordered = in_saga_order(queue, |(_, saga, minute)| (*saga, minute.and_then(at)));
        let names: Vec<&str> = ordered.iter().map(|(name, ..)| *name).collect();
        assert_eq!(names, ["7a", "8a", "7b", "x", "7c", "8b", "7-"]);
    }
}
