//! The PostgreSQL server the benchmarks work on (`BENCH_PG_URL`): the databases a run creates
//! and drops again, and what the results record about the server.

use anyhow::Context;
use diesel::sql_types::Text;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use shared::db::redact;

/// A server URL without a database name.
#[derive(Debug, Clone)]
pub struct Server {
    url: String,
}

/// A database on the server.
#[derive(Debug, Clone)]
pub struct Database {
    pub name: String,
    pub url: String,
}

impl Database {
    pub async fn connect(&self) -> anyhow::Result<AsyncPgConnection> {
        connect(&self.url).await
    }
}

/// Connects to `url`, naming it (without its password) if that fails.
pub async fn connect(url: &str) -> anyhow::Result<AsyncPgConnection> {
    shared::db::connect(url)
        .await
        .with_context(|| format!("connecting to {}", redact(url)))
}

#[derive(diesel::QueryableByName)]
struct One {
    #[diesel(sql_type = Text)]
    value: String,
}

impl Server {
    pub fn new(url: &str) -> Self {
        Self {
            url: url.trim_end_matches('/').to_owned(),
        }
    }

    /// The URL of database `name` on this server.
    pub fn database(&self, name: &str) -> Database {
        Database {
            name: name.to_owned(),
            url: format!("{}/{name}", self.url),
        }
    }

    async fn admin(&self) -> anyhow::Result<AsyncPgConnection> {
        connect(&format!("{}/postgres", self.url))
            .await
            .context("(BENCH_PG_URL)")
    }

    /// Creates database `name` (which must not exist yet).
    pub async fn create(&self, name: &str) -> anyhow::Result<Database> {
        diesel::sql_query(format!("CREATE DATABASE \"{name}\""))
            .execute(&mut self.admin().await?)
            .await
            .with_context(|| format!("creating database {name}"))?;
        Ok(self.database(name))
    }

    /// Drops every database in `names` that exists; FORCE ends the sessions of a process under
    /// test that outlived a failed run.
    pub async fn drop(&self, names: &[String]) -> anyhow::Result<()> {
        let mut admin = self.admin().await?;
        for name in names {
            diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .execute(&mut admin)
                .await
                .with_context(|| format!("dropping database {name}"))?;
        }
        Ok(())
    }

    /// `SELECT version()`.
    pub async fn version(&self) -> anyhow::Result<String> {
        self.one("SELECT version() AS value").await
    }

    /// The server settings that move the figures, as `name=value` pairs.
    pub async fn settings(&self) -> anyhow::Result<String> {
        self.one(
            "SELECT string_agg(name || '=' || setting || coalesce(unit, ''), ', ' ORDER BY name) \
             AS value FROM pg_settings WHERE name IN ('autovacuum', 'synchronous_commit', \
             'shared_buffers', 'max_connections', 'wal_sync_method', 'fsync')",
        )
        .await
    }

    /// The server's `max_connections`.
    pub async fn max_connections(&self) -> anyhow::Result<u64> {
        let text = self
            .one("SELECT setting AS value FROM pg_settings WHERE name = 'max_connections'")
            .await?;
        text.parse()
            .with_context(|| format!("max_connections {text:?} is not a number"))
    }

    async fn one(&self, sql: &str) -> anyhow::Result<String> {
        let row: One = diesel::sql_query(sql)
            .get_result(&mut self.admin().await?)
            .await
            .with_context(|| sql.to_owned())?;
        Ok(row.value)
    }
}
