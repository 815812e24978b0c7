//! The benchmark's own corner of the shared servers: a fresh database and a fresh AMQP prefix,
//! both removed at the end, so a run neither sees nor disturbs anything else on the machine.

use anyhow::Context;
use diesel::sql_types::Text;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use lapin::Connection;
use shared::amqp::{QueueSpec, Topology, connect};
use shared::db::{OUTBOX_MIGRATIONS, redact, run_migrations};

use crate::workload::BenchEvent;

/// A database created for this run.
#[derive(Debug)]
pub struct BenchDb {
    pub name: String,
    pub url: String,
    server: String,
}

impl BenchDb {
    /// Creates `bench_relay_<suffix>` on `server` with the outbox tables.
    pub async fn create(server: &str, suffix: &str) -> anyhow::Result<Self> {
        let name = format!("bench_relay_{suffix}");
        let mut admin = admin_connection(server).await?;
        diesel::sql_query(format!("CREATE DATABASE \"{name}\""))
            .execute(&mut admin)
            .await
            .with_context(|| format!("creating database {name}"))?;
        let db = Self {
            url: format!("{server}/{name}"),
            name,
            server: server.to_owned(),
        };
        run_migrations(&db.url, OUTBOX_MIGRATIONS).await?;
        Ok(db)
    }

    pub async fn connect(&self) -> anyhow::Result<AsyncPgConnection> {
        AsyncPgConnection::establish(&self.url)
            .await
            .with_context(|| format!("connecting to {}", redact(&self.url)))
    }

    /// Drops the database; FORCE ends a relay session that outlived a failed run.
    pub async fn drop_database(&self) -> anyhow::Result<()> {
        let mut admin = admin_connection(&self.server).await?;
        diesel::sql_query(format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            self.name
        ))
        .execute(&mut admin)
        .await
        .with_context(|| format!("dropping database {}", self.name))?;
        Ok(())
    }
}

async fn admin_connection(server: &str) -> anyhow::Result<AsyncPgConnection> {
    let url = format!("{server}/postgres");
    AsyncPgConnection::establish(&url)
        .await
        .with_context(|| format!("connecting to {} (BENCH_PG_URL)", redact(&url)))
}

/// `SELECT version()`.
pub async fn server_version(conn: &mut AsyncPgConnection) -> anyhow::Result<String> {
    #[derive(diesel::QueryableByName)]
    struct Version {
        #[diesel(sql_type = Text)]
        version: String,
    }
    let row: Version = diesel::sql_query("SELECT version() AS version")
        .get_result(conn)
        .await
        .context("SELECT version()")?;
    Ok(row.version)
}

/// Outbox rows not yet marked published.
pub async fn unpublished(conn: &mut AsyncPgConnection) -> anyhow::Result<i64> {
    shared::outbox::unpublished(conn, std::time::Duration::ZERO)
        .await
        .context("counting unpublished rows")
}

/// This run's prefix on the broker: the events exchange and one consumer queue.
pub struct BenchBroker {
    pub topology: Topology,
    pub spec: QueueSpec,
    pub connection: Connection,
}

impl BenchBroker {
    /// Declares the exchanges and the consumer queue through the production topology code, so
    /// the queue is the same quorum queue, with the same arguments, that services consume.
    pub async fn declare(url: &str, prefix: &str) -> anyhow::Result<Self> {
        let connection = connect(url, &format!("relay-bench {prefix}")).await?;
        let channel = connection
            .create_channel()
            .await
            .context("opening channel")?;
        let topology = Topology::new(prefix);
        // No retry ladder: nothing in the benchmark fails, and fewer queues means less to delete.
        let spec = QueueSpec::new(
            "bench",
            vec![<BenchEvent as shared::envelope::SagaEvent>::ROUTING_KEY.to_owned()],
            Vec::new(),
        );
        topology.declare_queue(&channel, &spec).await?;
        let _ = channel.close(200, "declared".into()).await;
        Ok(Self {
            topology,
            spec,
            connection,
        })
    }

    pub fn queue(&self) -> String {
        self.topology.queue(&self.spec.consumer)
    }

    /// Deletes the queues and exchanges and closes the connection.
    pub async fn delete(&self) -> anyhow::Result<()> {
        let channel = self
            .connection
            .create_channel()
            .await
            .context("opening channel")?;
        self.topology.delete_queue(&channel, &self.spec).await?;
        self.topology.delete_exchanges(&channel).await?;
        let _ = channel.close(200, "deleted".into()).await;
        let _ = self.connection.close(200, "bench done".into()).await;
        Ok(())
    }
}
