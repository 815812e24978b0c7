//! A fresh vhost and AMQP name prefix per test, deleted at the end with everything in it.
//!
//! A vhost of its own, not only a prefix, because deleting a vhost first closes every connection
//! in it: deleting a test's queues one by one while its services still run lets a consumer
//! declare a queue again between two deletes, and a quorum queue with at-least-once
//! dead-lettering deleted as it is being created crashes RabbitMQ 3.10's dead-letter worker in a
//! restart loop that takes down the node-wide `rabbit_fifo_dlx_sup` (rabbitmq-server #16652):
//! after that no such queue can be declared on the node until it is restarted.

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
    /// The vhost this created and deletes when dropped, instead of the queues one by one.
    vhost: Option<String>,
}

impl TestAmqp {
    /// A new vhost on the broker at `AMQP_URL` (through its management API; the URL's user gets
    /// every permission in it) and a new prefix in it, with its exchanges declared.
    pub async fn new() -> Self {
        let name = format!("t{}", crate::unique_suffix());
        let mut url: lapin::uri::AMQPUri = amqp_url().parse().expect("AMQP_URL");
        let management = crate::broker::management();
        management
            .create_vhost(&name)
            .await
            .expect("a vhost through the management API (rabbitmq_management enabled?)");
        let all = shared::broker::permissions::Permissions {
            configure: ".*".into(),
            write: ".*".into(),
            read: ".*".into(),
        };
        management
            .grant(&name, &url.authority.userinfo.username, &all)
            .await
            .expect("grant the test's user its vhost");
        url.vhost = name.clone();
        let mut amqp = Self::at(&url.to_string(), &name).await;
        amqp.vhost = Some(name);
        amqp
    }

    /// This broker's URL, reached through `addr` instead (a [`crate::TcpProxy`]).
    pub fn url_through(&self, addr: std::net::SocketAddr) -> String {
        let mut url: lapin::uri::AMQPUri = self.url.parse().expect("the test's AMQP URL");
        url.authority.host = addr.ip().to_string();
        url.authority.port = addr.port();
        url.to_string()
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
            vhost: None,
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
        self.remember(spec);
    }

    /// Remembers the queues and exchanges `spec` declares, for deletion.
    pub fn remember(&self, spec: &QueueSpec) {
        let mut queues = self.queues.lock().expect("lock");
        queues.extend(self.topology.partition_queues(spec));
        queues.push(self.topology.dead_letter_queue(&spec.consumer));
        for delay in &spec.retry_delays {
            queues.push(self.topology.retry_queue(&spec.consumer, *delay));
        }
        drop(queues);
        self.remember_exchange(self.topology.retry_exchange(&spec.consumer));
        self.remember_exchange(self.topology.inbound_exchange(&spec.consumer));
    }

    /// Remembers the queues a consumer named `consumer` will declare itself (with the default
    /// number of partitions), for deletion.
    pub fn remember_consumer(&self, consumer: &str, retry_delays: &[Duration]) {
        self.remember(&QueueSpec::new(consumer, Vec::new(), retry_delays.to_vec()));
    }

    /// Messages waiting in all of `consumer`'s partition queues (default partitions).
    pub async fn consumer_depth(&self, consumer: &str) -> u32 {
        let spec = QueueSpec::new(consumer, Vec::new(), Vec::new());
        let mut total = 0;
        for queue in self.topology.partition_queues(&spec) {
            total += self.depth(&queue).await;
        }
        total
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
            .consume_until(&[queue.to_owned()], deadline, |delivery| {
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

    /// [`Self::take`] from every partition of `consumer`'s queue.
    pub async fn take_from_consumer(
        &self,
        consumer: &str,
        count: usize,
        deadline: Duration,
    ) -> Vec<Delivery> {
        let spec = QueueSpec::new(consumer, Vec::new(), Vec::new());
        let queues = self.topology.partition_queues(&spec);
        let mut out = Vec::with_capacity(count);
        let done = count == 0
            || self
                .consume_until(&queues, deadline, |delivery| {
                    out.push(delivery);
                    out.len() >= count
                })
                .await;
        assert!(
            done,
            "timed out after {deadline:?} with {} of {count} messages from {consumer}'s partitions",
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
                .consume_until(&[queue.to_owned()], deadline, |delivery| {
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

    /// Consumes and acks `queues` (on one channel), handing each delivery to `enough` until it
    /// says so (true) or `deadline` passes (false).
    async fn consume_until(
        &self,
        queues: &[String],
        deadline: Duration,
        mut enough: impl FnMut(Delivery) -> bool,
    ) -> bool {
        let channel = self.connection.create_channel().await.expect("channel");
        let mut consumers = Vec::with_capacity(queues.len());
        for queue in queues {
            let consumer = channel
                .basic_consume(
                    queue.as_str().into(),
                    "".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .expect("consume");
            consumers.push(consumer);
        }
        let mut consumer = futures_util::stream::select_all(consumers);
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
        let vhost = self.vhost.take();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async move {
                if let Some(vhost) = vhost {
                    return crate::broker::management().delete_vhost(&vhost).await.ok();
                }
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
