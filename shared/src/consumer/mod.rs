//! The consumer runtime: deliveries in, handler calls in one transaction, acks after commit.
//!
//! For each delivery: decode the envelope, find the handler for its type, open a transaction,
//! claim the message id in the inbox, run the handler (which writes state and outbox rows),
//! commit, then ack. Transient failures go round a delay-queue ladder up to a bounded number of
//! attempts; malformed, unknown or permanently rejected messages, and those out of attempts, are
//! dead-lettered with the reason in headers. See [`process`] for the ordering that makes this
//! lossless.
//!
//! The runtime owns its broker connection: when it drops, in-flight handlers finish (their acks
//! fail harmlessly, the broker redelivers, the inbox absorbs the duplicates) and it reconnects
//! with backoff. Shutdown stops taking deliveries, drains the in-flight ones and closes.

mod after_commit;
pub mod handler;
mod process;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context as _, anyhow};
use futures_util::{FutureExt, StreamExt};
use lapin::Connection;
use lapin::options::{
    BasicCancelOptions, BasicConsumeOptions, BasicQosOptions, ConfirmSelectOptions,
};
use lapin::types::FieldTable;
use tokio::sync::{Notify, Semaphore};
use tracing::Instrument;

use crate::amqp::{self, QueueSpec, Topology};
use crate::backoff::Backoff;
use crate::config::{AmqpSettings, ConsumerSettings};
use crate::db::PgPool;
use crate::shutdown::Shutdown;

pub use after_commit::after_commit;
pub use handler::{AnyEventHandler, EventHandler, Handlers};

/// Everything a delivery's processing needs, shared by the in-flight tasks.
pub(crate) struct Context {
    /// The inbox key: which consumer applied a message.
    pub consumer: String,
    pub queue: String,
    pub topology: Topology,
    pub pool: PgPool,
    pub handlers: Handlers,
    pub settings: ConsumerSettings,
}

/// One consumer: a queue, its handlers and the database they write to.
pub struct Consumer {
    ctx: Arc<Context>,
    amqp_url: String,
    connected: Arc<AtomicBool>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("queue", &self.ctx.queue)
            .finish()
    }
}

enum SessionEnd {
    Shutdown,
}

impl Consumer {
    /// A consumer named `name` (its queue is `{prefix}.{name}`).
    pub fn new(
        name: &str,
        amqp: &AmqpSettings,
        pool: PgPool,
        settings: ConsumerSettings,
        handlers: Handlers,
    ) -> Self {
        let topology = Topology::new(amqp.prefix.clone());
        Self {
            ctx: Arc::new(Context {
                consumer: name.to_owned(),
                queue: topology.queue(name),
                topology,
                pool,
                handlers,
                settings,
            }),
            amqp_url: amqp.url.clone(),
            connected: Arc::default(),
        }
    }

    /// True while a broker session is consuming; readiness probes read it.
    pub fn connected_flag(&self) -> Arc<AtomicBool> {
        self.connected.clone()
    }

    /// The queue this consumer declares and reads.
    pub fn queue_spec(&self) -> QueueSpec {
        QueueSpec::new(
            self.ctx.consumer.clone(),
            self.ctx.handlers.routing_keys().to_vec(),
            self.ctx.settings.retry_delays.clone(),
        )
    }

    pub fn queue(&self) -> &str {
        &self.ctx.queue
    }

    /// Consumes until `shutdown`, reconnecting whenever the broker connection is lost.
    pub async fn run(self, mut shutdown: Shutdown) -> anyhow::Result<()> {
        let name = format!("consumer {}", self.ctx.queue);
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        loop {
            let Some(connection) =
                amqp::connect_with_retry(&self.amqp_url, &name, &mut shutdown).await
            else {
                return Ok(());
            };
            let result = self.session(&connection, &mut shutdown).await;
            self.connected.store(false, Ordering::SeqCst);
            let _ = connection.close(200, "consumer session over".into()).await;
            match result {
                Ok(SessionEnd::Shutdown) => {
                    tracing::info!(queue = %self.ctx.queue, "consumer stopped");
                    return Ok(());
                }
                Err(err) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(queue = %self.ctx.queue, error = format!("{err:#}"), ?delay,
                        "consumer session lost, reconnecting");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = shutdown.wait() => return Ok(()),
                    }
                }
            }
        }
    }

    async fn session(
        &self,
        connection: &Connection,
        shutdown: &mut Shutdown,
    ) -> anyhow::Result<SessionEnd> {
        let ctx = &self.ctx;
        let channel = connection
            .create_channel()
            .await
            .context("opening channel")?;
        channel
            .basic_qos(ctx.settings.prefetch, BasicQosOptions::default())
            .await
            .context("setting prefetch")?;
        let publisher = connection
            .create_channel()
            .await
            .context("opening channel")?;
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .context("enabling publisher confirms")?;
        ctx.topology
            .declare_queue(&channel, &self.queue_spec())
            .await?;

        let tag = format!("{}-{}", ctx.consumer, uuid::Uuid::new_v4().simple());
        let mut deliveries = channel
            .basic_consume(
                amqp::headers::short(&ctx.queue)?,
                amqp::headers::short(&tag)?,
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .with_context(|| format!("consuming {}", ctx.queue))?;
        tracing::info!(queue = %ctx.queue, "consuming");
        self.connected.store(true, Ordering::SeqCst);

        let concurrency = ctx.settings.concurrency;
        let slots = Arc::new(Semaphore::new(concurrency));
        let broken = Arc::new(Notify::new());
        let end = loop {
            let permit = tokio::select! {
                _ = shutdown.wait() => break Ok(SessionEnd::Shutdown),
                _ = broken.notified() => break Err(anyhow!("a channel failed while settling")),
                permit = slots.clone().acquire_owned() => permit?,
            };
            let delivery = tokio::select! {
                _ = shutdown.wait() => break Ok(SessionEnd::Shutdown),
                _ = broken.notified() => break Err(anyhow!("a channel failed while settling")),
                next = deliveries.next() => match next {
                    Some(Ok(delivery)) => delivery,
                    Some(Err(err)) => break Err(anyhow::Error::new(err).context("consumer stream")),
                    None => break Err(anyhow!("the broker ended the consumer stream")),
                },
            };
            // Whatever else is already here joins the batch (never waiting for more).
            let mut batch = vec![delivery];
            let mut stream_end = None;
            while batch.len() < ctx.handlers.batch_size() {
                match deliveries.next().now_or_never() {
                    Some(Some(Ok(next))) => batch.push(next),
                    Some(Some(Err(err))) => {
                        stream_end = Some(anyhow::Error::new(err).context("consumer stream"));
                        break;
                    }
                    Some(None) => {
                        stream_end = Some(anyhow!("the broker ended the consumer stream"));
                        break;
                    }
                    None => break,
                }
            }
            let span = match batch.as_slice() {
                [delivery] => delivery_span(&ctx.queue, delivery),
                _ => tracing::info_span!("consume_batch", queue = %ctx.queue, size = batch.len()),
            };
            let (ctx, publisher, broken) = (ctx.clone(), publisher.clone(), broken.clone());
            tokio::spawn(
                async move {
                    if let Err(process::ChannelBroken(reason)) =
                        process::process_batch(&ctx, &publisher, batch).await
                    {
                        tracing::warn!(%reason, "message left unacked; it will be redelivered");
                        broken.notify_one();
                    }
                    drop(permit);
                }
                .instrument(span),
            );
            if let Some(err) = stream_end {
                break Err(err);
            }
        };

        if matches!(end, Ok(SessionEnd::Shutdown)) {
            // Stop the broker pushing more; prefetched deliveries not yet taken are requeued
            // when the channel closes.
            let _ = channel
                .basic_cancel(amqp::headers::short(&tag)?, BasicCancelOptions::default())
                .await;
        }
        // Drain: every in-flight handler commits (or rolls back) and settles before we close.
        let all = u32::try_from(concurrency).unwrap_or(u32::MAX);
        let _ = slots.acquire_many(all).await;
        let _ = channel.close(200, "draining done".into()).await;
        let _ = publisher.close(200, "draining done".into()).await;
        end
    }
}

/// The span of one delivery, with the saga, trace and event ids from its properties.
fn delivery_span(queue: &str, delivery: &lapin::message::Delivery) -> tracing::Span {
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
