//! The fate of one delivery: decide what it is (decode, inbox claim, handler, commit), then
//! settle it on the broker (ack, or republish for retry or dead letter, then ack).
//!
//! The order is the whole point: the database transaction commits before the ack, and a retry
//! or dead-letter copy is confirmed by the broker before the original is acked. Killed at any
//! instant, the message is therefore either applied (and the inbox absorbs its redelivery) or
//! still on a queue.

use std::time::Instant;

use chrono::Utc;
use diesel_async::AsyncConnection;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel};

use super::Context;
use crate::amqp::headers;
use crate::amqp::publish::{Outcome, Outgoing, publish_one};
use crate::envelope::Envelope;
use crate::error::HandlerError;
use crate::inbox::{self, Claim};

/// Header values are capped so a huge error message cannot bloat every retry.
const MAX_ERROR_LEN: usize = 2_000;

/// What to do with a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Disposition {
    /// Handled and committed.
    Processed,
    /// Already applied earlier (redelivery or republish): no effect, just ack.
    Duplicate,
    /// Failed transiently `failures` times so far: republish to the retry queue.
    Retry { failures: u32, error: String },
    /// Cannot be processed: republish to the dead-letter exchange with `reason`.
    DeadLetter {
        reason: &'static str,
        error: String,
        failures: u32,
    },
}

impl Disposition {
    pub(crate) fn outcome_label(&self) -> &'static str {
        match self {
            Self::Processed => "processed",
            Self::Duplicate => "duplicate",
            Self::Retry { .. } => "retried",
            Self::DeadLetter { .. } => "dead_lettered",
        }
    }
}

/// The settle step failed on the broker side: the channel is unusable and the session must
/// reconnect (the unacked delivery will be redelivered).
#[derive(Debug)]
pub(crate) struct ChannelBroken(pub String);

/// Decodes and handles `delivery` in one database transaction with its inbox claim.
pub(crate) async fn decide(ctx: &Context, delivery: &Delivery) -> (Disposition, Option<Envelope>) {
    let prior_failures = headers::get_i64(delivery.properties.headers().as_ref(), headers::ATTEMPT)
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(0);

    let envelope = match Envelope::from_bytes(&delivery.data) {
        Ok(envelope) => envelope,
        Err(err) => {
            return (
                Disposition::DeadLetter {
                    reason: headers::REASON_MALFORMED,
                    error: format!("body is not an event envelope: {err}"),
                    failures: prior_failures,
                },
                None,
            );
        }
    };
    let Some(handler) = ctx.handlers.get(&envelope.event_type) else {
        let error = format!("no handler for event type {:?}", envelope.event_type);
        return (
            Disposition::DeadLetter {
                reason: headers::REASON_UNKNOWN_TYPE,
                error,
                failures: prior_failures,
            },
            Some(envelope),
        );
    };

    let (result, deferred) = super::after_commit::collect(async {
        let mut conn = ctx.pool.get().await?;
        let consumer = ctx.consumer.as_str();
        let envelope = &envelope;
        let handler = &handler;
        conn.transaction(async |tx| {
            match inbox::claim(tx, consumer, envelope.event_id, &envelope.event_type).await? {
                Claim::Duplicate => Ok(Disposition::Duplicate),
                Claim::First => {
                    handler.handle(tx, envelope).await?;
                    Ok(Disposition::Processed)
                }
            }
        })
        .await
    })
    .await;
    let result: Result<Disposition, HandlerError> = result;
    if matches!(result, Ok(Disposition::Processed)) {
        for action in deferred {
            action();
        }
    }

    let disposition = match result {
        Ok(disposition) => disposition,
        Err(HandlerError::Permanent(err)) => Disposition::DeadLetter {
            reason: headers::REASON_REJECTED,
            error: format!("{err:#}"),
            failures: prior_failures,
        },
        Err(HandlerError::Transient(err)) => {
            let failures = prior_failures.saturating_add(1);
            let error = format!("{err:#}");
            if failures >= ctx.settings.max_attempts {
                Disposition::DeadLetter {
                    reason: headers::REASON_RETRIES_EXHAUSTED,
                    error,
                    failures,
                }
            } else {
                Disposition::Retry { failures, error }
            }
        }
    };
    (disposition, Some(envelope))
}

/// Carries out `disposition` on the broker.
pub(crate) async fn settle(
    ctx: &Context,
    publisher: &Channel,
    delivery: &Delivery,
    disposition: &Disposition,
) -> Result<(), ChannelBroken> {
    let copy = match disposition {
        Disposition::Processed | Disposition::Duplicate => None,
        Disposition::Retry { failures, error } => {
            let delays = &ctx.settings.retry_delays;
            let index = (*failures as usize)
                .saturating_sub(1)
                .min(delays.len().saturating_sub(1));
            let delay = delays.get(index).copied().unwrap_or_default();
            let mut table = headers_of(delivery);
            headers::set_i64(&mut table, headers::ATTEMPT, i64::from(*failures));
            headers::set_str(&mut table, headers::LAST_ERROR, truncate(error));
            Some((
                String::new(),
                ctx.topology.retry_queue(&ctx.consumer, delay),
                table,
            ))
        }
        Disposition::DeadLetter {
            reason,
            error,
            failures,
        } => {
            let mut table = headers_of(delivery);
            headers::set_i64(&mut table, headers::ATTEMPT, i64::from(*failures));
            headers::set_str(&mut table, headers::DEAD_LETTER_REASON, reason);
            headers::set_str(&mut table, headers::DEAD_LETTER_ERROR, truncate(error));
            headers::set_str(&mut table, headers::ORIGINAL_QUEUE, &ctx.queue);
            headers::set_str(
                &mut table,
                headers::DEAD_LETTERED_AT,
                &Utc::now().to_rfc3339(),
            );
            Some((
                ctx.topology.dead_letter_exchange(),
                ctx.queue.clone(),
                table,
            ))
        }
    };

    if let Some((exchange, routing_key, table)) = copy {
        let properties: BasicProperties = delivery.properties.clone().with_headers(table);
        let outgoing = Outgoing {
            exchange: &exchange,
            routing_key: &routing_key,
            body: &delivery.data,
            properties,
        };
        match publish_one(publisher, &outgoing).await {
            Outcome::Confirmed => {}
            Outcome::Rejected(reason) => {
                // The copy has nowhere to go (a retry or dead-letter queue was deleted): keep the
                // original on its queue. Its delivery count grows, and past the queue's delivery
                // limit the broker dead-letters it itself, at-least-once.
                tracing::error!(%reason, exchange, routing_key, "cannot park message; requeueing");
                let requeue = BasicNackOptions {
                    requeue: true,
                    ..BasicNackOptions::default()
                };
                return match delivery.acker.nack(requeue).await {
                    Ok(true) => Ok(()),
                    Ok(false) => Err(ChannelBroken("nack refused".into())),
                    Err(err) => Err(ChannelBroken(format!("nack: {err}"))),
                };
            }
            Outcome::Unknown(reason) => return Err(ChannelBroken(reason)),
        }
    }

    match delivery.acker.ack(BasicAckOptions::default()).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(ChannelBroken(
            "ack refused: the delivery's channel is gone".into(),
        )),
        Err(err) => Err(ChannelBroken(format!("ack: {err}"))),
    }
}

/// Decide, settle, and record the outcome.
pub(crate) async fn process(
    ctx: &Context,
    publisher: &Channel,
    delivery: Delivery,
) -> Result<(), ChannelBroken> {
    let started = Instant::now();
    let (disposition, envelope) = decide(ctx, &delivery).await;
    let event_type = match (&envelope, &disposition) {
        (Some(envelope), _) if ctx.handlers.get(&envelope.event_type).is_some() => {
            envelope.event_type.clone()
        }
        _ => "unknown".to_owned(),
    };
    match &disposition {
        Disposition::Processed | Disposition::Duplicate => {
            tracing::debug!(outcome = disposition.outcome_label(), "message handled")
        }
        Disposition::Retry { failures, error } => {
            tracing::warn!(failures, error, "transient failure, scheduling a retry")
        }
        Disposition::DeadLetter { reason, error, .. } => {
            tracing::error!(reason, error, "dead-lettering message")
        }
    }
    let settled = settle(ctx, publisher, &delivery, &disposition).await;
    record(ctx, event_type, &disposition, started);
    settled
}

fn record(ctx: &Context, event_type: String, disposition: &Disposition, started: Instant) {
    let labels = [
        (crate::metrics::SERVICE, ctx.consumer.clone()),
        ("queue", ctx.queue.clone()),
        ("event_type", event_type),
        ("outcome", disposition.outcome_label().to_owned()),
    ];
    metrics::counter!("consumer_messages_total", &labels).increment(1);
    metrics::histogram!("consumer_handling_seconds", &labels[..3])
        .record(started.elapsed().as_secs_f64());
}

/// Processes deliveries that arrived together: one alone as [`process`] does; several (only
/// for [`Handlers::batched`](super::Handlers::batched) consumers) in one transaction, each with
/// its inbox claim, acked after the commit. Malformed and unknown messages are set aside and
/// processed alone; if the transaction fails for any reason, it rolls back (claims included)
/// and every message is processed alone, so the batch changes the cost, never the outcome.
pub(crate) async fn process_batch(
    ctx: &Context,
    publisher: &Channel,
    deliveries: Vec<Delivery>,
) -> Result<(), ChannelBroken> {
    if deliveries.len() < 2 {
        for delivery in deliveries {
            process(ctx, publisher, delivery).await?;
        }
        return Ok(());
    }
    let started = Instant::now();
    let mut ready = Vec::with_capacity(deliveries.len());
    for delivery in deliveries {
        let decoded = Envelope::from_bytes(&delivery.data)
            .ok()
            .and_then(|envelope| {
                let handler = ctx.handlers.get(&envelope.event_type)?;
                Some((envelope, handler))
            });
        match decoded {
            Some((envelope, handler)) => ready.push((delivery, envelope, handler)),
            None => process(ctx, publisher, delivery).await?,
        }
    }
    // Locks in key order in every batch; stable, so one saga's events keep their order.
    ready.sort_by_key(|(_, envelope, _)| ctx.handlers.batch_key(envelope));
    let (result, deferred) = super::after_commit::collect(async {
        let mut conn = ctx.pool.get().await?;
        let consumer = ctx.consumer.as_str();
        let ready = &ready;
        conn.transaction(async |tx| {
            let mut dispositions = Vec::with_capacity(ready.len());
            for (_, envelope, handler) in ready {
                match inbox::claim(tx, consumer, envelope.event_id, &envelope.event_type).await? {
                    Claim::Duplicate => dispositions.push(Disposition::Duplicate),
                    Claim::First => {
                        handler.handle(tx, envelope).await?;
                        dispositions.push(Disposition::Processed);
                    }
                }
            }
            Ok::<_, HandlerError>(dispositions)
        })
        .await
    })
    .await;
    match result {
        Ok(dispositions) => {
            for action in deferred {
                action();
            }
            for ((delivery, envelope, _), disposition) in ready.iter().zip(dispositions) {
                tracing::debug!(outcome = disposition.outcome_label(), event_id = %envelope.event_id,
                    "message handled in a batch");
                let settled = settle(ctx, publisher, delivery, &disposition).await;
                record(ctx, envelope.event_type.clone(), &disposition, started);
                settled?;
            }
        }
        Err(err) => {
            tracing::info!(
                error = format!("{err:#}"),
                size = ready.len(),
                "batch rolled back; applying its messages one at a time"
            );
            for (delivery, _, _) in ready {
                process(ctx, publisher, delivery).await?;
            }
        }
    }
    Ok(())
}

fn headers_of(delivery: &Delivery) -> FieldTable {
    delivery.properties.headers().clone().unwrap_or_default()
}

fn truncate(text: &str) -> &str {
    if text.len() <= MAX_ERROR_LEN {
        return text;
    }
    let mut end = MAX_ERROR_LEN;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
