//! One broker session of a consumer, in steps: open its channels and start consuming; receive
//! deliveries, each with whatever else is already here as one batch; run each batch in a task
//! of its own; on the way out, drain those tasks before closing the channels.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::{Context as _, anyhow};
use futures_util::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{Channel, Connection};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tracing::Instrument;

use super::settle::ChannelBroken;
use super::{Consumer, Context, process};
use crate::amqp;
use crate::shutdown::Shutdown;

/// How a session ended other than by a broker failure.
pub(super) enum SessionEnd {
    Shutdown,
}

/// An open session: its channels, its deliveries, and the slots its in-flight batches hold.
struct Session {
    channel: Channel,
    /// Publishes retry and dead-letter copies, with confirms.
    publisher: Channel,
    deliveries: lapin::Consumer,
    tag: ShortString,
    slots: Arc<Semaphore>,
    /// Notified by a batch task whose channel failed while settling.
    broken: Arc<Notify>,
}

impl Consumer {
    /// Consumes on `connection` until shutdown (`Ok`) or a broker failure (`Err`); either way,
    /// the batches in flight commit (or roll back) and settle before it returns.
    pub(super) async fn session(
        &self,
        connection: &Connection,
        shutdown: &mut Shutdown,
    ) -> anyhow::Result<SessionEnd> {
        let mut session = self.open(connection).await?;
        tracing::info!(queue = %self.ctx.queue, "consuming");
        self.connected.store(true, Ordering::SeqCst);
        let end = self.receive(&mut session, shutdown).await;
        self.drain(session, &end).await;
        end
    }

    /// Opens the consuming and the publishing channel, declares the queue and starts consuming.
    async fn open(&self, connection: &Connection) -> anyhow::Result<Session> {
        let ctx = &self.ctx;
        let channel = connection
            .create_channel()
            .await
            .context("opening channel")?;
        channel
            .basic_qos(ctx.settings.prefetch, BasicQosOptions::default())
            .await
            .context("setting prefetch")?;
        let publisher = amqp::publish::confirm_channel(connection).await?;
        ctx.topology.ensure_exchanges(connection).await?;
        ctx.topology
            .declare_queue(&channel, &self.queue_spec())
            .await?;

        let tag = format!("{}-{}", ctx.consumer, uuid::Uuid::new_v4().simple());
        let tag = amqp::headers::short(&tag)?;
        let deliveries = channel
            .basic_consume(
                amqp::headers::short(&ctx.queue)?,
                tag.clone(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .with_context(|| format!("consuming {}", ctx.queue))?;
        Ok(Session {
            channel,
            publisher,
            deliveries,
            tag,
            slots: Arc::new(Semaphore::new(ctx.settings.concurrency)),
            broken: Arc::default(),
        })
    }

    /// Takes a free slot, then a delivery and whatever else is already here, and spawns them
    /// as one batch; until shutdown, or until the stream or a settling channel fails.
    async fn receive(
        &self,
        session: &mut Session,
        shutdown: &mut Shutdown,
    ) -> anyhow::Result<SessionEnd> {
        const BROKEN: &str = "a channel failed while settling";
        loop {
            let permit = tokio::select! {
                _ = shutdown.wait() => return Ok(SessionEnd::Shutdown),
                _ = session.broken.notified() => return Err(anyhow!(BROKEN)),
                permit = session.slots.clone().acquire_owned() => permit?,
            };
            let first = tokio::select! {
                _ = shutdown.wait() => return Ok(SessionEnd::Shutdown),
                _ = session.broken.notified() => return Err(anyhow!(BROKEN)),
                next = session.deliveries.next() => received(next)?,
            };
            let max = self.ctx.handlers.batch_size();
            let (batch, stream_end) = already_here(&mut session.deliveries, first, max);
            spawn_batch(&self.ctx, session, batch, permit);
            if let Some(err) = stream_end {
                return Err(err);
            }
        }
    }

    /// Waits for every batch in flight, then closes the channels.
    async fn drain(&self, session: Session, end: &anyhow::Result<SessionEnd>) {
        if matches!(end, Ok(SessionEnd::Shutdown)) {
            // Stop the broker pushing more; prefetched deliveries not yet taken are requeued
            // when the channel closes.
            let _ = session
                .channel
                .basic_cancel(session.tag, BasicCancelOptions::default())
                .await;
        }
        // Every in-flight handler commits (or rolls back) and settles before we close.
        let all = u32::try_from(self.ctx.settings.concurrency).unwrap_or(u32::MAX);
        let _ = session.slots.acquire_many(all).await;
        let _ = session.channel.close(200, "draining done".into()).await;
        let _ = session.publisher.close(200, "draining done".into()).await;
    }
}

/// The delivery the stream yielded, or why the stream is over.
fn received(next: Option<lapin::Result<Delivery>>) -> anyhow::Result<Delivery> {
    match next {
        Some(Ok(delivery)) => Ok(delivery),
        Some(Err(err)) => Err(anyhow::Error::new(err).context("consumer stream")),
        None => Err(anyhow!("the broker ended the consumer stream")),
    }
}

/// `first` and the deliveries already received after it, up to `max`, never waiting for more:
/// a batch costs no latency. Also the stream's failure, if it failed meanwhile, for the
/// session to end on once the batch is on its way.
fn already_here(
    deliveries: &mut lapin::Consumer,
    first: Delivery,
    max: usize,
) -> (Vec<Delivery>, Option<anyhow::Error>) {
    let mut batch = vec![first];
    while batch.len() < max {
        let Some(next) = deliveries.next().now_or_never() else {
            break;
        };
        match received(next) {
            Ok(delivery) => batch.push(delivery),
            Err(err) => return (batch, Some(err)),
        }
    }
    (batch, None)
}

/// Processes `batch` in a task holding `permit`; a channel failure wakes the receive loop.
fn spawn_batch(
    ctx: &Arc<Context>,
    session: &Session,
    batch: Vec<Delivery>,
    permit: OwnedSemaphorePermit,
) {
    let span = match batch.as_slice() {
        [delivery] => delivery_span(&ctx.queue, delivery),
        _ => tracing::info_span!("consume_batch", queue = %ctx.queue, size = batch.len()),
    };
    let (ctx, publisher, broken) = (
        ctx.clone(),
        session.publisher.clone(),
        session.broken.clone(),
    );
    tokio::spawn(
        async move {
            if let Err(ChannelBroken(reason)) = process::process(&ctx, &publisher, batch).await {
                tracing::warn!(%reason, "message left unacked; it will be redelivered");
                broken.notify_one();
            }
            drop(permit);
        }
        .instrument(span),
    );
}

/// The span of one delivery, with the saga, trace and event ids from its properties.
fn delivery_span(queue: &str, delivery: &Delivery) -> tracing::Span {
    let headers = delivery.properties.headers().as_ref();
    let traceparent = amqp::headers::get_str(headers, amqp::headers::TRACEPARENT);
    let span = tracing::info_span!(
        "consume",
        queue = %queue,
        saga_id = amqp::headers::get_i64(headers, amqp::headers::SAGA_ID).unwrap_or_default(),
        trace_id = traceparent.as_deref().and_then(crate::telemetry::trace_id).unwrap_or(""),
        event_id = delivery.properties.message_id().as_ref().map(|id| id.as_str()).unwrap_or(""),
        event_type = delivery.properties.kind().as_ref().map(|t| t.as_str()).unwrap_or(""),
    );
    crate::telemetry::continue_trace(&span, traceparent.as_deref());
    span
}
