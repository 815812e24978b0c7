//! The run's own AMQP prefix on the shared broker: the events exchange and one consumer queue,
//! declared through the production topology code and removed at the end, so a run neither sees
//! nor disturbs anything else on the machine.

use anyhow::Context;
use shared::amqp::{QueueSpec, Topology, connect};

use crate::workload::BenchEvent;

pub struct BenchBroker {
    pub topology: Topology,
    pub spec: QueueSpec,
    url: String,
}

impl BenchBroker {
    /// Declares the exchanges and the consumer queue, so the queue is the same quorum queue,
    /// with the same arguments, that services consume.
    pub async fn declare(url: &str, prefix: &str) -> anyhow::Result<Self> {
        let topology = Topology::new(prefix);
        // No retry ladder: nothing in the benchmark fails, and fewer queues means less to delete.
        let spec = QueueSpec::new(
            "bench",
            vec![<BenchEvent as shared::envelope::SagaEvent>::ROUTING_KEY.to_owned()],
            Vec::new(),
        );
        let connection = connect(url, &format!("relay-bench {prefix}")).await?;
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
            url: url.to_owned(),
        })
    }

    pub fn queue(&self) -> String {
        self.topology.queue(&self.spec.consumer)
    }

    /// Deletes the queue and the exchanges.
    pub async fn delete(&self) -> anyhow::Result<()> {
        let connection = connect(&self.url, "relay-bench cleanup").await?;
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
