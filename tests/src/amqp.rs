//! A fresh AMQP name prefix per test, with its queues and exchanges deleted at the end.

use std::sync::Mutex;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use shared::amqp::{QueueSpec, Topology, connect};
use shared::config::{AmqpSettings, AmqpTls};

/// The broker: `AMQP_URL`, default the local one.
pub fn amqp_url() -> String {
    shared::config::env_or("AMQP_URL", shared::config::DEFAULT_AMQP_URL)
}

/// One test's corner of the broker.
pub struct TestAmqp {
    pub prefix: String,
    pub topology: Topology,
    pub url: String,
    /// `AMQP_TLS_*`, for a broker reached over `amqps://`.
    tls: AmqpTls,
    pub connection: Connection,
    pub channel: Channel,
    queues: Mutex<Vec<String>>,
    /// The consumers' retry exchanges, deleted with the queues.
    exchanges: Mutex<Vec<String>>,
}

impl TestAmqp {
    /// A new prefix with its exchanges declared.
    pub async fn new() -> Self {
        Self::at(&amqp_url(), &format!("t{}", crate::unique_suffix())).await
    }

    /// `prefix` on the broker (and vhost) at `url`, with its exchanges declared.
    pub async fn at(url: &str, prefix: &str) -> Self {
        let prefix = prefix.to_owned();
        let broker = AmqpSettings {
            url: url.to_owned(),
            prefix: prefix.clone(),
            tls: AmqpTls::from_env(),
        };
        let connection = connect(&broker, &format!("test {prefix}"))
            .await
            .expect("RabbitMQ must be reachable at AMQP_URL (see README)");
        let channel = connection.create_channel().await.expect("channel");
        let topology = Topology::new(prefix.clone());
        topology
            .declare_exchanges(&channel)
            .await
            .expect("declare exchanges");
        Self {
            prefix,
            topology,
            url: broker.url,
            tls: broker.tls,
            connection,
            channel,
            queues: Mutex::new(Vec::new()),
            exchanges: Mutex::new(Vec::new()),
        }
    }

    /// Opens a new connection and channel, replacing the ones this was using: after the cluster
    /// node they were on died ([`crate::cluster`]), `connect` reaches a live one.
    pub async fn reconnect(&mut self) {
        self.connection = connect(&self.settings(), &format!("test {}", self.prefix))
            .await
            .expect("reconnecting to the broker");
        self.channel = self.connection.create_channel().await.expect("channel");
    }

    /// The settings a service under test should use.
    pub fn settings(&self) -> AmqpSettings {
        AmqpSettings {
            url: self.url.clone(),
            prefix: self.prefix.clone(),
            tls: self.tls.clone(),
        }
    }

    /// Declares `spec`'s queues now (so messages published before the consumer starts are kept)
    /// and remembers them for deletion.
    pub async fn declare(&self, spec: &QueueSpec) {
        self.topology
            .declare_queue(&self.channel, spec)
            .await
            .expect("declare queue");
        let mut queues = self.queues.lock().expect("lock");
        queues.push(self.topology.queue(&spec.consumer));
        queues.push(self.topology.dead_letter_queue(&spec.consumer));
        for delay in &spec.retry_delays {
            queues.push(self.topology.retry_queue(&spec.consumer, *delay));
        }
        self.remember_exchange(self.topology.retry_exchange(&spec.consumer));
    }

    /// Remembers the queues a consumer named `consumer` will declare itself, for deletion.
    pub fn remember_consumer(&self, consumer: &str, retry_delays: &[Duration]) {
        let mut queues = self.queues.lock().expect("lock");
        queues.push(self.topology.queue(consumer));
        queues.push(self.topology.dead_letter_queue(consumer));
        for delay in retry_delays {
            queues.push(self.topology.retry_queue(consumer, *delay));
        }
        self.remember_exchange(self.topology.retry_exchange(consumer));
    }

    fn remember_exchange(&self, name: String) {
        self.exchanges.lock().expect("lock").push(name);
    }

    /// A plain queue bound to the events exchange with `binding` that the test reads itself.
    pub async fn probe(&self, binding: &str) -> String {
        let name = format!("{}.probe.{}", self.prefix, crate::unique_suffix());
        self.channel
            .queue_declare(
                name.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("declare probe");
        self.channel
            .queue_bind(
                name.as_str().into(),
                self.topology.events_exchange().as_str().into(),
                binding.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("bind probe");
        self.queues.lock().expect("lock").push(name.clone());
        name
    }

    /// Reads (and acks) messages from `queue` until `count` arrived, failing after `deadline`.
    pub async fn take(&self, queue: &str, count: usize, deadline: Duration) -> Vec<Delivery> {
        let mut out = Vec::with_capacity(count);
        if count == 0 {
            return out;
        }
        let done = self
            .consume_until(queue, deadline, |delivery| {
                out.push(delivery);
                out.len() >= count
            })
            .await;
        assert!(
            done,
            "timed out after {deadline:?} with {} of {count} messages from {queue}",
            out.len()
        );
        out
    }

    /// Reads (and acks) messages from `queue` until every id of `expected` (AMQP message ids) was
    /// seen, duplicates allowed; returns how many deliveries that took. Fails after `deadline`
    /// naming how many ids are still missing.
    pub async fn take_ids(
        &self,
        queue: &str,
        expected: &std::collections::HashSet<String>,
        deadline: Duration,
    ) -> usize {
        let mut missing = expected.clone();
        let mut deliveries = 0;
        let done = missing.is_empty()
            || self
                .consume_until(queue, deadline, |delivery| {
                    deliveries += 1;
                    if let Some(id) = delivery.properties.message_id() {
                        missing.remove(id.as_str());
                    }
                    missing.is_empty()
                })
                .await;
        assert!(
            done,
            "after {deadline:?} and {deliveries} deliveries, {} of {} ids never arrived on {queue}",
            missing.len(),
            expected.len()
        );
        deliveries
    }

    /// Consumes and acks `queue`, handing each delivery to `enough` until it says so (true) or
    /// `deadline` passes (false).
    async fn consume_until(
        &self,
        queue: &str,
        deadline: Duration,
        mut enough: impl FnMut(Delivery) -> bool,
    ) -> bool {
        let channel = self.connection.create_channel().await.expect("channel");
        let mut consumer = channel
            .basic_consume(
                queue.into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("consume");
        let collect = async {
            while let Some(delivery) = consumer.next().await {
                let delivery = delivery.expect("delivery");
                delivery
                    .acker
                    .ack(BasicAckOptions::default())
                    .await
                    .expect("ack");
                if enough(delivery) {
                    return true;
                }
            }
            false
        };
        let done = tokio::time::timeout(deadline, collect)
            .await
            .unwrap_or(false);
        let _ = channel.close(200, "done".into()).await;
        done
    }

    /// How many messages wait in `queue` (ready, not unacked).
    pub async fn depth(&self, queue: &str) -> u32 {
        let channel = self.connection.create_channel().await.expect("channel");
        let declared = channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("passive declare");
        let _ = channel.close(200, "done".into()).await;
        declared.message_count()
    }
}

impl Drop for TestAmqp {
    fn drop(&mut self) {
        let queues = std::mem::take(&mut *self.queues.lock().unwrap_or_else(|e| e.into_inner()));
        let exchanges =
            std::mem::take(&mut *self.exchanges.lock().unwrap_or_else(|e| e.into_inner()));
        let broker = self.settings();
        let topology = self.topology.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async move {
                let connection = connect(&broker, "test cleanup").await.ok()?;
                let channel = connection.create_channel().await.ok()?;
                for queue in queues {
                    let _ = channel
                        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                        .await;
                }
                for exchange in exchanges {
                    let _ = channel
                        .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
                        .await;
                }
                let _ = topology.delete_exchanges(&channel).await;
                let _ = connection.close(200, "cleanup".into()).await;
                Some(())
            })
        })
        .join();
    }
}
