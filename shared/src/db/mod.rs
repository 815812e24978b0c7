//! Database connections, pools and the embedded migrations runner.
//!
//! Every connection is opened by [`connect`], which honours libpq's `sslmode` (from `disable`
//! to `verify-full`) and root certificate ([`tls`]).

mod cached;
mod connect;
pub mod tls;

use anyhow::Context;
use diesel_async::AsyncPgConnection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::deadpool::Pool;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use futures_util::FutureExt;

use crate::config::DatabaseSettings;

pub use cached::{Cached, cached};
pub use connect::connect;

pub type PgPool = Pool<AsyncPgConnection>;
pub type PoolError = diesel_async::pooled_connection::deadpool::PoolError;

/// The outbox and inbox tables, shared by every service database. Services run these first,
/// then their own migrations (whose versions must sort after these).
pub const OUTBOX_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/outbox");

/// A pool whose `get()` fails after `pool_timeout` instead of waiting forever when the database
/// is down or every connection is busy.
///
/// Connections are recycled without a test query: the default runs `SELECT 1` on every
/// checkout, a round trip per transaction that cost the saga a fifth of its database
/// statements. A connection that failed is marked broken and dropped by the pool all the same,
/// and one that died idle fails its first statement, which every caller already handles as a
/// transient error (the consumer retries, HTTP answers 503, the relay backs off).
pub fn build_pool(settings: &DatabaseSettings) -> anyhow::Result<PgPool> {
    let mut config = ManagerConfig::default();
    config.recycling_method = RecyclingMethod::Fast;
    config.custom_setup = Box::new(|url| connect(url).boxed());
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(
        settings.url.clone(),
        config,
    );
    Pool::builder(manager)
        .max_size(settings.pool_size)
        .wait_timeout(Some(settings.pool_timeout))
        .create_timeout(Some(settings.pool_timeout))
        .recycle_timeout(Some(settings.pool_timeout))
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .context("building the database pool")
}

/// Key of the session advisory lock every migration run holds, so that replicas starting at
/// the same moment migrate one after the other instead of racing on the catalog (two
/// concurrent `CREATE TABLE __diesel_schema_migrations` fail on `pg_type_typname_nsp_index`).
/// The lock is per database: replicas of different services never wait for each other.
const MIGRATION_LOCK_KEY: i64 = 0x7361_6761_6d69_6772; // "sagamigr"

/// Runs `migrations` against `url` on a blocking thread (the synchronous migration harness must
/// not run on an async worker thread), under the migration advisory lock. The lock is taken on
/// the harness's own connection and released when it closes, also if the process dies.
///
/// The connection is opened here, on the caller's runtime, which also drives it while the
/// harness blocks on it from the blocking thread.
pub async fn run_migrations(url: &str, migrations: EmbeddedMigrations) -> anyhow::Result<()> {
    let conn = connect(url)
        .await
        .with_context(|| format!("connecting to {} for migrations", redact(url)))?;
    tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        use diesel::RunQueryDsl;
        let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::from(conn);
        diesel::sql_query("SELECT pg_advisory_lock($1)")
            .bind::<diesel::sql_types::BigInt, _>(MIGRATION_LOCK_KEY)
            .execute(&mut conn)
            .context("taking the migration lock")?;
        conn.run_pending_migrations(migrations)
            .map_err(|err| anyhow::anyhow!("running migrations: {err}"))?;
        Ok(())
    })
    .await
    .context("migration task panicked")?
}

/// Makes sure the database named in `url` exists. A database that exists is only connected to:
/// a service whose database an administrator created needs neither `CREATEDB` nor access to
/// the server's `postgres` database. Only a missing one is created, from `postgres`; a replica
/// that loses the race to create it finds it created.
pub async fn create_database_if_missing(url: &str) -> anyhow::Result<()> {
    let missing = match connect(url).await {
        Ok(_) => return Ok(()),
        Err(err) => err.to_string().contains("does not exist"),
    };
    if !missing {
        // Unreachable or refused: the caller's connection attempt reports it with its cause.
        return Ok(());
    }
    let (server, name) = split_database_url(url)?;
    let query = url.split_once('?').map(|(_, query)| format!("?{query}"));
    let admin_url = format!("{server}/postgres{}", query.unwrap_or_default());
    let mut conn = connect(&admin_url)
        .await
        .with_context(|| format!("connecting to {} to create {name}", redact(&admin_url)))?;
    let statement = format!("CREATE DATABASE \"{}\"", name.replace('"', "\"\""));
    if let Err(err) =
        diesel_async::RunQueryDsl::execute(diesel::sql_query(statement), &mut conn).await
        && !database_exists(&mut conn, &name).await?
    {
        return Err(err).with_context(|| format!("creating database {name}"));
    }
    Ok(())
}

async fn database_exists(conn: &mut AsyncPgConnection, name: &str) -> anyhow::Result<bool> {
    use diesel::sql_types::{Bool, Text};
    #[derive(diesel::QueryableByName)]
    struct Exists {
        #[diesel(sql_type = Bool)]
        exists: bool,
    }
    let found: Exists = diesel_async::RunQueryDsl::get_result(
        diesel::sql_query("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS exists")
            .bind::<Text, _>(name),
        conn,
    )
    .await?;
    Ok(found.exists)
}

/// `postgres://u@h:p/name?x` → (`postgres://u@h:p`, `name`).
pub fn split_database_url(url: &str) -> anyhow::Result<(String, String)> {
    let without_query = url.split('?').next().unwrap_or(url);
    let (server, name) = without_query
        .rsplit_once('/')
        .filter(|(server, name)| {
            server.contains("://") && !server.ends_with('/') && !name.is_empty()
        })
        .with_context(|| format!("{} names no database", redact(url)))?;
    Ok((server.to_owned(), name.to_owned()))
}

/// The URL with any password replaced, for logs.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let credentials = &url[scheme_end + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme_end + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_redacts_urls() {
        let (server, name) =
            split_database_url("postgres://u:pw@h:5432/orders?sslmode=disable").unwrap();
        assert_eq!(server, "postgres://u:pw@h:5432");
        assert_eq!(name, "orders");
        assert!(split_database_url("postgres://h:5432").is_err());
        assert_eq!(redact("postgres://u:pw@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        // An AMQP URL naming several cluster nodes keeps one password, redacted once.
        let cluster = redact("amqp://u:p@ss,w@h1:5681,h2:5682/saga");
        assert_eq!(cluster, "amqp://u:***@h1:5681,h2:5682/saga");
    }
}
