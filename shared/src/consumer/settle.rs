//! Settling a delivery on the broker once its fate is decided: ack it, or first park a copy on
//! a retry queue or the dead-letter exchange and ack the original once the broker confirmed it.
//!
//! A copy goes through this consumer's own retry exchange or the dead-letter exchange, never the
//! default exchange (which would need a permission reaching every queue), and carries this
//! consumer's `user_id`. A copy is confirmed before the original is acked, so a crash between the two leaves two
//! copies (the inbox absorbs the second), never none.

use chrono::Utc;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicNackOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel};

use super::Context;
use crate::amqp::headers;
use crate::amqp::publish::{Outcome, Outgoing, publish_one};

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
    /// The `outcome` label of the consumer metrics.
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

/// Where a copy of the delivery goes before the original is acked.
struct Parking {
    exchange: String,
    routing_key: String,
    headers: FieldTable,
}

/// Carries out `disposition` on the broker.
pub(crate) async fn settle(
    ctx: &Context,
    publisher: &Channel,
    delivery: &Delivery,
    disposition: &Disposition,
) -> Result<(), ChannelBroken> {
    if let Some(parking) = parking(ctx, delivery, disposition) {
        let properties: BasicProperties = delivery.properties.clone().with_headers(parking.headers);
        let outgoing = Outgoing {
            exchange: &parking.exchange,
            routing_key: &parking.routing_key,
            body: &delivery.data,
            properties,
            // The copy is this consumer's publish, not the relay's it was delivered with.
            user_id: &ctx.user,
        };
        match publish_one(publisher, &outgoing).await {
            Outcome::Confirmed => {}
            Outcome::Rejected(reason) => {
                // The copy has nowhere to go (a retry or dead-letter queue was deleted): keep the
                // original on its queue. Its delivery count grows, and past the queue's delivery
                // limit the broker dead-letters it itself, at-least-once.
                tracing::error!(%reason, exchange = parking.exchange,
                    routing_key = parking.routing_key, "cannot park message; requeueing");
                return requeue(delivery).await;
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

/// The copy `disposition` asks for: none for an applied message, the retry queue of its
/// attempt, or the dead-letter exchange with the reason in headers.
fn parking(ctx: &Context, delivery: &Delivery, disposition: &Disposition) -> Option<Parking> {
    match disposition {
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
            Some(Parking {
                exchange: ctx.topology.retry_exchange(&ctx.consumer),
                routing_key: ctx.topology.retry_queue(&ctx.consumer, delay),
                headers: table,
            })
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
            let now = Utc::now().to_rfc3339();
            headers::set_str(&mut table, headers::DEAD_LETTERED_AT, &now);
            Some(Parking {
                exchange: ctx.topology.dead_letter_exchange(),
                routing_key: ctx.queue.clone(),
                headers: table,
            })
        }
    }
}

/// Puts `delivery` back on its queue.
async fn requeue(delivery: &Delivery) -> Result<(), ChannelBroken> {
    let requeue = BasicNackOptions {
        requeue: true,
        ..BasicNackOptions::default()
    };
    match delivery.acker.nack(requeue).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(ChannelBroken("nack refused".into())),
        Err(err) => Err(ChannelBroken(format!("nack: {err}"))),
    }
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
