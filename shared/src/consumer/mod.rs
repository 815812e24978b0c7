//! The consumer runtime: deliveries in, handler calls in one transaction, acks after commit.
//!
//! For each delivery: open the sealed envelope (signature, producer, ids, decryption; see
//! [`crate::seal`]), find the handler for its type, open a transaction,
//! claim the message id in the inbox, run the handler (which writes state and outbox rows),
//! commit, then ack. Deliveries that arrive together may share one transaction (see
//! [`Handlers::batched`]); a single delivery is a batch of one. Transient failures go round a
//! delay-queue ladder up to a bounded number of attempts; malformed, unauthenticated, unknown
//! or permanently rejected messages, and those out of attempts, are dead-lettered with the
//! reason in headers.
//! See [`process`] for the ordering that makes this lossless, and [`settle`] for the copies.
//!
//! The runtime owns its broker connection ([`session`]): when it drops, in-flight handlers
//! finish (their acks fail harmlessly, the broker redelivers, the inbox absorbs the duplicates)
//! and it reconnects with backoff. Shutdown stops taking deliveries, drains the in-flight ones
//! and closes.

mod after_commit;
pub mod handler;
mod lanes;
mod process;
mod session;
mod settle;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::amqp::{self, QueueSpec, Topology};
use crate::backoff::Backoff;
use crate::config::{AmqpSettings, ConsumerSettings};
use crate::db::PgPool;
use crate::seal::Keyring;
use crate::shutdown::Shutdown;

pub use after_commit::after_commit;
pub use handler::{AnyEventHandler, EventHandler, Handlers};
use session::SessionEnd;

/// Everything a delivery's processing needs, shared by the in-flight tasks.
pub(crate) struct Context {
    /// The inbox key: which consumer applied a message.
    pub consumer: String,
    pub queue: String,
    pub topology: Topology,
    pub pool: PgPool,
    pub handlers: Handlers,
    pub settings: ConsumerSettings,
    /// Opens the sealed deliveries (verification and data keys).
    pub keys: Keyring,
    /// The broker user this consumer connects as: the `user_id` of its retry and dead-letter
    /// copies.
    pub user: String,
}

/// One consumer: a queue, its handlers and the database they write to.
pub struct Consumer {
    ctx: Arc<Context>,
    amqp: AmqpSettings,
    connected: Arc<AtomicBool>,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("queue", &self.ctx.queue)
            .finish()
    }
}

impl Consumer {
    /// A consumer named `name` (its queue is `{prefix}.{name}`) that admits only events sealed
    /// by their producers under `keys`.
    pub fn new(
        name: &str,
        amqp: &AmqpSettings,
        pool: PgPool,
        settings: ConsumerSettings,
        handlers: Handlers,
        keys: Keyring,
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
                keys,
                // An unparsable URL never connects, so nothing is published under the empty name.
                user: amqp::user_of(&amqp.url).unwrap_or_default(),
            }),
            amqp: amqp.clone(),
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
        .with_partitions(self.ctx.settings.partitions)
    }

    /// The consumer's name as a whole (`{prefix}.{name}`): its partition queues are
    /// `{prefix}.{name}.p{i}`.
    pub fn queue(&self) -> &str {
        &self.ctx.queue
    }

    /// Consumes until `shutdown`, reconnecting whenever the broker connection is lost.
    pub async fn run(self, mut shutdown: Shutdown) -> anyhow::Result<()> {
        let name = format!("consumer {}", self.ctx.queue);
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        loop {
            let Some(connection) = amqp::connect_with_retry(&self.amqp, &name, &mut shutdown).await
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
}
