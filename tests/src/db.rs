//! A fresh database per test.

use diesel_async::{AsyncPgConnection, RunQueryDsl};
use diesel_migrations::EmbeddedMigrations;
use shared::config::DatabaseSettings;
use shared::db::{OUTBOX_MIGRATIONS, PgPool, build_pool, run_migrations};

/// The server the test databases live on: `TEST_PG_URL`, default the local trust-auth server.
pub fn server_url() -> String {
    shared::config::env_or("TEST_PG_URL", "postgres://postgres@127.0.0.1:5432")
}

/// A database created for one test and dropped (forcefully) when this value is dropped.
pub struct TestDb {
    pub name: String,
    pub url: String,
    pub pool: PgPool,
    /// The server it lives on (without a database).
    server: String,
}

impl TestDb {
    /// A new database with the outbox and inbox tables.
    pub async fn new() -> Self {
        Self::with_migrations(Vec::new()).await
    }

    /// A new database with the outbox and inbox tables, then `extra` migrations in order.
    pub async fn with_migrations(extra: Vec<EmbeddedMigrations>) -> Self {
        Self::on_server(server_url(), extra).await
    }

    /// A new database on `server` (a URL without a database) with the outbox and inbox
    /// tables, then `extra` migrations in order.
    pub async fn on_server(server: String, extra: Vec<EmbeddedMigrations>) -> Self {
        let name = format!("test_{}", crate::unique_suffix());
        let mut admin = shared::db::connect(&format!("{server}/postgres"))
            .await
            .expect("PostgreSQL must be reachable at TEST_PG_URL (see README)");
        diesel::sql_query(format!("CREATE DATABASE \"{name}\""))
            .execute(&mut admin)
            .await
            .expect("create test database");
        let url = format!("{server}/{name}");
        run_migrations(&url, OUTBOX_MIGRATIONS)
            .await
            .expect("outbox migrations");
        for migrations in extra {
            run_migrations(&url, migrations).await.expect("migrations");
        }
        let pool = build_pool(&DatabaseSettings::with_url(url.clone())).expect("pool");
        Self {
            name,
            url,
            pool,
            server,
        }
    }

    /// A database name reserved for one test but not created: the code under test creates it.
    /// It is dropped, if it exists by then, when this value is dropped.
    pub fn uncreated() -> Self {
        let name = format!("test_{}", crate::unique_suffix());
        let server = server_url();
        let url = format!("{server}/{name}");
        let pool = build_pool(&DatabaseSettings::with_url(url.clone())).expect("pool");
        Self {
            name,
            url,
            pool,
            server,
        }
    }

    /// A dedicated connection (outside the pool).
    pub async fn connect(&self) -> AsyncPgConnection {
        shared::db::connect(&self.url)
            .await
            .expect("connect to test database")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        self.pool.close();
        let (name, server) = (self.name.clone(), self.server.clone());
        // Drop cannot await, and the test's runtime may be shutting down: use a thread with its
        // own runtime. FORCE ends sessions still open (a relay process the test killed).
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async move {
                let mut admin = shared::db::connect(&format!("{server}/postgres"))
                    .await
                    .ok()?;
                diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .execute(&mut admin)
                    .await
                    .ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(_))) {
            eprintln!("warning: could not drop test database {}", self.name);
        }
    }
}
