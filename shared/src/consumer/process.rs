//! The fate of deliveries that arrived together: each is decoded once and its handler found
//! once, those that can be handled are applied in one database transaction (each with its inbox
//! claim), then each is settled on the broker. A single delivery is a batch of one.
//!
//! The order is the whole point: the transaction commits before any ack, and a retry or
//! dead-letter copy is confirmed by the broker before the original is acked (see
//! [`settle`](super::settle)). Killed at any instant, a message is therefore either applied (and
//! the inbox absorbs its redelivery) or still on a queue.

use std::sync::Arc;
use std::time::Instant;

use diesel_async::AsyncConnection;
use lapin::Channel;
use lapin::message::Delivery;
use tracing::{Instrument, Span};

use super::Context;
use super::handler::ErasedHandler;
use super::settle::{ChannelBroken, Disposition, settle};
use crate::amqp::headers;
use crate::envelope::Envelope;
use crate::error::HandlerError;
use crate::inbox::{self, Claim};
use crate::seal::Refusal;

/// The `event_type` label of a message that is no envelope or whose type has no handler: the
/// label set stays bounded whatever arrives.
const UNKNOWN_TYPE: &str = "unknown";

/// A delivery that can be handled: its envelope and its handler, found once, and the span its
/// handling runs in.
struct Ready {
    delivery: Delivery,
    envelope: Envelope,
    handler: Arc<dyn ErasedHandler>,
    span: Span,
}

/// Processes deliveries that arrived together (several only for
/// [`Handlers::batched`](super::Handlers::batched) consumers). Malformed and unknown messages
/// are dead-lettered first, each alone; the rest are applied as one batch, sorted by
/// [`Handlers::batch_key`](super::Handlers::batch_key), so the batch changes the cost, never
/// the outcome. Each delivery is handled in a span of its own, a batch's too, so that the events
/// its handler emits are children of that delivery's span alone.
pub(crate) async fn process(
    ctx: &Context,
    publisher: &Channel,
    deliveries: Vec<Delivery>,
) -> Result<(), ChannelBroken> {
    let mut batch = Vec::with_capacity(deliveries.len());
    for delivery in deliveries {
        let started = Instant::now();
        let span = super::session::delivery_span(ctx, &delivery);
        match span.in_scope(|| triage(ctx, &delivery)) {
            Ok((envelope, handler)) => batch.push(Ready {
                delivery,
                envelope,
                handler,
                span,
            }),
            Err(disposition) => {
                let refused = async {
                    log(&disposition);
                    let type_ = UNKNOWN_TYPE;
                    conclude(ctx, publisher, &delivery, type_, &disposition, started).await
                };
                refused.instrument(span).await?;
            }
        }
    }
    // Locks in key order in every batch; stable, so one saga's events keep their order.
    batch.sort_by_key(|ready| ctx.handlers.batch_key(&ready.envelope));
    apply(ctx, publisher, batch).await
}

/// Opens `delivery` (see [`crate::seal`]) and finds its handler; a delivery that is no event,
/// fails a seal check, or whose type has no handler gets its dead-letter disposition instead,
/// before any transaction: a refused message has no effect.
fn triage(
    ctx: &Context,
    delivery: &Delivery,
) -> Result<(Envelope, Arc<dyn ErasedHandler>), Disposition> {
    let opened = ctx
        .keys
        .open(&delivery.data)
        .map_err(|refusal| refused(ctx, delivery, refusal))?;
    let event_type = opened.envelope.event_type.as_str();
    let Some((handler, producer)) = ctx.handlers.get(event_type) else {
        let error = format!("no handler for event type {event_type:?}");
        return Err(dead_letter(delivery, headers::REASON_UNKNOWN_TYPE, error));
    };
    let properties = &delivery.properties;
    opened
        .admit(
            properties.message_id().as_ref().map(|id| id.as_str()),
            properties.kind().as_ref().map(|kind| kind.as_str()),
            producer,
        )
        .map_err(|refusal| refused(ctx, delivery, refusal))?;
    Ok((opened.envelope, handler))
}

/// The dead-letter disposition of a refused delivery; an unauthenticated one is also counted
/// by the check it failed.
fn refused(ctx: &Context, delivery: &Delivery, refusal: Refusal) -> Disposition {
    match refusal {
        Refusal::Malformed(error) => dead_letter(delivery, headers::REASON_MALFORMED, error),
        Refusal::Unauthenticated { check, detail } => {
            let labels = [
                (crate::metrics::SERVICE, ctx.consumer.clone()),
                ("queue", ctx.queue.clone()),
                ("check", check.to_owned()),
            ];
            metrics::counter!("consumer_unauthenticated_total", &labels).increment(1);
            let error = format!("{check}: {detail}");
            dead_letter(delivery, headers::REASON_UNAUTHENTICATED, error)
        }
    }
}

/// Applies `batch` in one transaction, then settles each message. When a batch of several rolls
/// back (claims included), each message is applied again as a batch of one: a poison message is
/// then retried or dead-lettered alone and the others still apply exactly once.
async fn apply(ctx: &Context, publisher: &Channel, batch: Vec<Ready>) -> Result<(), ChannelBroken> {
    if batch.is_empty() {
        return Ok(());
    }
    let started = Instant::now();
    let dispositions = match transact(ctx, &batch).await {
        Ok(dispositions) => dispositions,
        Err(err) if batch.len() > 1 => {
            tracing::info!(
                error = format!("{err:#}"),
                size = batch.len(),
                "batch rolled back; applying its messages one at a time"
            );
            for ready in batch {
                // A batch of one never recurses further: its failure is its disposition.
                Box::pin(apply(ctx, publisher, vec![ready])).await?;
            }
            return Ok(());
        }
        Err(err) => batch
            .iter()
            .map(|ready| failed(ctx, &ready.delivery, &err))
            .collect(),
    };
    let alone = batch.len() == 1;
    for (ready, disposition) in batch.iter().zip(&dispositions) {
        let settled = async {
            if alone {
                log(disposition);
            } else {
                tracing::debug!(
                    outcome = disposition.outcome_label(),
                    "message handled in a batch"
                );
            }
            let event_type = ready.envelope.event_type.as_str();
            conclude(
                ctx,
                publisher,
                &ready.delivery,
                event_type,
                disposition,
                started,
            )
            .await
        };
        settled.instrument(ready.span.clone()).await?;
    }
    Ok(())
}

/// Claims and handles every message of `batch` in one transaction; the handlers' after-commit
/// actions run once it has committed, and are dropped if it rolls back.
async fn transact(ctx: &Context, batch: &[Ready]) -> Result<Vec<Disposition>, HandlerError> {
    let (result, deferred) = super::after_commit::collect(async {
        let mut conn = ctx.pool.get().await?;
        let consumer = ctx.consumer.as_str();
        conn.transaction(async |tx| {
            let mut dispositions = Vec::with_capacity(batch.len());
            for Ready {
                envelope,
                handler,
                span,
                ..
            } in batch
            {
                let (id, event_type) = (envelope.event_id, envelope.event_type.as_str());
                let handled = async {
                    let claim = match ctx.handlers.claims_in_inbox() {
                        true => inbox::claim(tx, consumer, id, event_type).await?,
                        false => Claim::First,
                    };
                    Ok::<_, HandlerError>(match claim {
                        Claim::Duplicate => Disposition::Duplicate,
                        Claim::First => {
                            handler.handle(tx, envelope).await?;
                            Disposition::Processed
                        }
                    })
                };
                dispositions.push(handled.instrument(span.clone()).await?);
            }
            Ok::<_, HandlerError>(dispositions)
        })
        .await
    })
    .await;
    if result.is_ok() {
        for action in deferred {
            action();
        }
    }
    result
}

/// How many transient failures `delivery` already had (its attempt header; absent = none).
fn prior_failures(delivery: &Delivery) -> u32 {
    headers::get_i64(delivery.properties.headers().as_ref(), headers::ATTEMPT)
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(0)
}

/// Dead-lettering for a reason found before any attempt: the attempt count stays as it was.
fn dead_letter(delivery: &Delivery, reason: &'static str, error: String) -> Disposition {
    Disposition::DeadLetter {
        reason,
        error,
        failures: prior_failures(delivery),
    }
}

/// The fate of a message applied alone whose transaction failed with `err`: a permanent error
/// is dead-lettered at once, a transient one retried until the attempts run out.
fn failed(ctx: &Context, delivery: &Delivery, err: &HandlerError) -> Disposition {
    match err {
        HandlerError::Permanent(err) => {
            dead_letter(delivery, headers::REASON_REJECTED, format!("{err:#}"))
        }
        HandlerError::Transient(err) => {
            let failures = prior_failures(delivery).saturating_add(1);
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
    }
}

fn log(disposition: &Disposition) {
    match disposition {
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
}

/// Settles `delivery`, then counts its outcome: counted even when settling failed, since the
/// outcome was decided (and, for a processed message, committed) either way.
async fn conclude(
    ctx: &Context,
    publisher: &Channel,
    delivery: &Delivery,
    event_type: &str,
    disposition: &Disposition,
    started: Instant,
) -> Result<(), ChannelBroken> {
    let settled = settle(ctx, publisher, delivery, disposition).await;
    let labels = [
        (crate::metrics::SERVICE, ctx.consumer.clone()),
        ("queue", ctx.queue.clone()),
        ("event_type", event_type.to_owned()),
        ("outcome", disposition.outcome_label().to_owned()),
    ];
    metrics::counter!("consumer_messages_total", &labels).increment(1);
    metrics::histogram!("consumer_handling_seconds", &labels[..3])
        .record(started.elapsed().as_secs_f64());
    settled
}
