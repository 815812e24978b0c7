//! One broker session of a consumer, in steps: open its channels and start consuming every
//! partition queue; receive deliveries and queue each on its saga's lane ([`super::lanes`]);
//! on the way out, let the lanes finish their batches before closing the channels.

use std::sync::atomic::Ordering;

use anyhow::{Context as _, anyhow};
use futures_util::StreamExt;
use futures_util::stream::SelectAll;
use lapin::message::Delivery;
use lapin::options::{BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use tokio::sync::Notify;

use super::Consumer;
use super::lanes::Lanes;
use crate::amqp;
use crate::shutdown::Shutdown;

/// How a session ended other than by a broker failure.
pub(super) enum SessionEnd {
    Shutdown,
}

/// An open session: its channels, its deliveries (every partition's, merged) and its lanes.
/// One partition's deliveries, then `None` once the broker ends its stream (a `basic.cancel`,
/// e.g. the queue was deleted): a merged stream would otherwise drop it and go on without it.
type Partition = futures_util::stream::BoxStream<'static, Option<lapin::Result<Delivery>>>;

struct Session {
    channel: Channel,
    /// Publishes retry and dead-letter copies, with confirms.
    publisher: Channel,
    /// Every partition's deliveries; `None` when one partition's stream ended.
    deliveries: SelectAll<Partition>,
    lanes: Lanes,
    /// Notified by a lane whose channel failed while settling.
    broken: std::sync::Arc<Notify>,
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
        tracing::info!(queue = %self.ctx.queue, partitions = self.ctx.settings.partitions,
            "consuming");
        self.connected.store(true, Ordering::SeqCst);
        let end = self.receive(&mut session, shutdown).await;
        drain(session).await;
        end
    }

    /// Opens the consuming and the publishing channel, declares the queues and consumes every
    /// partition. A partition delivers to one consumer at a time (single active consumer): the
    /// instance that subscribed first, the others waiting in line to take over.
    async fn open(&self, connection: &Connection) -> anyhow::Result<Session> {
        let ctx = &self.ctx;
        let channel = connection
            .create_channel()
            .await
            .context("opening channel")?;
        let spec = self.queue_spec();
        // The limit applies per consumer (quorum queues take no channel-wide one): the
        // partitions share CONSUMER_PREFETCH.
        let per_partition = (ctx.settings.prefetch / spec.partitions.max(1)).max(1);
        channel
            .basic_qos(per_partition, BasicQosOptions::default())
            .await
            .context("setting prefetch")?;
        let publisher = amqp::publish::confirm_channel(connection).await?;
        ctx.topology.ensure_exchanges(connection).await?;
        ctx.topology.declare_queue(&channel, &spec).await?;

        let mut deliveries = SelectAll::new();
        for partition in ctx.topology.partition_queues(&spec) {
            let tag = format!("{}-{}", ctx.consumer, uuid::Uuid::new_v4().simple());
            let consumer = channel
                .basic_consume(
                    amqp::headers::short(&partition)?,
                    amqp::headers::short(&tag)?,
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .with_context(|| format!("consuming {partition}"))?;
            let ended = futures_util::stream::once(async { None });
            deliveries.push(consumer.map(Some).chain(ended).boxed());
        }
        let broken = std::sync::Arc::new(Notify::new());
        let lanes = Lanes::start(&self.ctx, &publisher, &broken, ctx.settings.concurrency);
        Ok(Session {
            channel,
            publisher,
            deliveries,
            lanes,
            broken,
        })
    }

    /// Queues each delivery on its lane until shutdown, or until the stream or a settling
    /// channel fails.
    async fn receive(
        &self,
        session: &mut Session,
        shutdown: &mut Shutdown,
    ) -> anyhow::Result<SessionEnd> {
        loop {
            let delivery = tokio::select! {
                _ = shutdown.wait() => return Ok(SessionEnd::Shutdown),
                _ = session.broken.notified() => {
                    return Err(anyhow!("a channel failed while settling"))
                }
                next = session.deliveries.next() => received(next.flatten())?,
            };
            session.lanes.dispatch(delivery);
        }
    }
}

/// Waits for the lanes' batches in flight, then closes the channels. No `basic.cancel` first:
/// under single active consumer, cancelling would hand the partition to the next instance
/// while a batch of it is still being handled here. Deliveries received but not handled are
/// returned to their queue by the close, ahead of the rest, and go to the next instance in
/// order.
async fn drain(session: Session) {
    session.lanes.stop().await;
    let _ = session.channel.close(200, "draining done".into()).await;
    let _ = session.publisher.close(200, "draining done".into()).await;
}

/// The delivery the stream yielded, or why the stream is over.
fn received(next: Option<lapin::Result<Delivery>>) -> anyhow::Result<Delivery> {
    match next {
        Some(Ok(delivery)) => Ok(delivery),
        Some(Err(err)) => Err(anyhow::Error::new(err).context("consumer stream")),
        None => Err(anyhow!("the broker ended the consumer stream")),
    }
}

/// The span of one delivery ([`process_span`](crate::telemetry::messaging::process_span)), with
/// the saga, trace and event ids from its properties.
pub(super) fn delivery_span(ctx: &super::Context, delivery: &Delivery) -> tracing::Span {
    let properties = &delivery.properties;
    let headers = properties.headers().as_ref();
    let traceparent = amqp::headers::get_str(headers, amqp::headers::TRACEPARENT);
    let message = crate::telemetry::messaging::Message {
        id: properties
            .message_id()
            .as_ref()
            .map_or("", |id| id.as_str()),
        saga_id: amqp::headers::get_i64(headers, amqp::headers::SAGA_ID),
        routing_key: delivery.routing_key.as_str(),
    };
    crate::telemetry::messaging::process_span(
        &ctx.topology.events_exchange(),
        &ctx.queue,
        &message,
        properties.kind().as_ref().map_or("", |kind| kind.as_str()),
        traceparent.as_deref(),
    )
}
