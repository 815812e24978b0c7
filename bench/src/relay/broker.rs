//! The run's own AMQP prefix on the shared broker: the events exchange and one consumer queue,
//! declared through the production topology code and removed at the end, so a run neither sees
//! nor disturbs anything else on the machine.

use anyhow::Context;
use shared::amqp::{QueueSpec, Topology, connect};
use shared::config::AmqpSettings;

use crate::workload::BenchEvent;

pub struct BenchBroker {
    pub topology: Topology,
    pub spec: QueueSpec,
    /// The broker, with the run's prefix.
    pub amqp: AmqpSettings,
}

impl BenchBroker {
    /// Declares the exchanges and the consumer queue, so the queue is the same quorum queue,
    /// with the same arguments, that services consume.
    pub async fn declare(amqp: AmqpSettings) -> anyhow::Result<Self> {
        let prefix = amqp.prefix.clone();
        let topology = Topology::new(prefix.as_str());
        // No retry ladder: nothing in the benchmark fails, and fewer queues means less to delete.
        let spec = QueueSpec::new(
            "bench",
            vec![<BenchEvent as shared::envelope::SagaEvent>::ROUTING_KEY.to_owned()],
            Vec::new(),
        )
        // One queue the benchmark's consumer reads: the relay's rate is what is measured.
        .with_partitions(1);
        let connection = connect(&amqp, &format!("relay-bench {prefix}")).await?;
        let channel = connection
            .create_channel()
            .await
            .context("opening channel")?;
        topology.declare_exchanges(&channel).await?;
        topology.declare_queue(&channel, &spec).await?;
        let _ = connection.close(200, "declared".into()).await;
        Ok(Self {
            topology,
            spec,
            amqp,
        })
    }

    pub fn queue(&self) -> String {
        self.topology.partition_queue(&self.spec.consumer, 0)
    }

    /// Deletes the queue and the exchanges.
    pub async fn delete(&self) -> anyhow::Result<()> {
        let connection = connect(&self.amqp, "relay-bench cleanup").await?;
        let channel = connection
            .create_channel()
            .await
            .context("opening channel")?;
        self.topology.delete_queue(&channel, &self.spec).await?;
        self.topology.delete_exchanges(&channel).await?;
        let _ = connection.close(200, "bench done".into()).await;
        Ok(())
    }
}
