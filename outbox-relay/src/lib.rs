//! The outbox relay: publishes committed outbox rows to RabbitMQ, losing nothing.
//!
//! - [`config`]: settings from the command line and the environment.
//! - [`store`]: the SQL: claim a batch by state with `FOR UPDATE SKIP LOCKED`, mark, clean up.
//! - [`publisher`]: one confirm-mode channel; a batch is published pipelined.
//! - [`listener`]: LISTEN/NOTIFY wake-ups, with reconnect and catch-up.
//! - [`worker`]: the claim → publish → confirm → mark loop for one database.
//! - [`cleanup`]: deletes published rows past their retention.
//! - [`metrics`]: published rows, confirm latency, errors, outbox backlog; `GET /metrics`.
//!
//! Per configured database the relay runs one listener, `claimers` workers, one cleanup task
//! and one backlog gauge. Its PostgreSQL connections per database: one per claimer and one the
//! cleanup and the gauge share (a pool of `claimers + 1`), plus the listener's own session
//! (README, "Connection budget"). A row is marked published only in the transaction that claimed it and only after the
//! broker confirmed it; killed at any instant, the claim rolls back and the row is published
//! again (a duplicate the consumers' inboxes absorb). Several relays on one database claim
//! disjoint batches thanks to `SKIP LOCKED`.

pub mod cleanup;
pub mod config;
pub mod listener;
pub mod metrics;
pub mod publisher;
pub mod store;
pub mod worker;

use std::sync::Arc;

use anyhow::Context;
use shared::config::{DatabaseSettings, PoolSettings};
use shared::db::{build_pool, redact};
use shared::shutdown::Shutdown;
use tokio::task::JoinSet;

pub use config::RelaySettings;

/// Runs the relay for every configured database until `shutdown`; returns once every task
/// finished its current batch.
pub async fn run(settings: RelaySettings, shutdown: Shutdown) -> anyhow::Result<()> {
    shared::metrics::install();
    metrics::describe();
    let settings = Arc::new(settings);
    let mut tasks = JoinSet::new();
    if let Some(port) = settings.metrics_port {
        let (port, server) = metrics::serve(&settings.metrics_host, port, shutdown.clone())?;
        tracing::info!(port, "relay metrics on /metrics");
        tasks.spawn(async move {
            let _ = server.await;
        });
    }
    for (index, url) in settings.database_urls.iter().enumerate() {
        let (_, name) = shared::db::split_database_url(url)?;
        // A claimer holds its connection for a whole batch; the cleanup and the backlog gauge
        // run seconds apart and take turns on one more.
        let pool = build_pool(&DatabaseSettings::new(
            url.clone(),
            &PoolSettings {
                pool_size: settings.claimers + 1,
                pool_timeout: settings.db_timeout,
            },
        ))
        .with_context(|| format!("pool for {}", redact(url)))?;
        let listen_url = settings.listen_urls.get(index).unwrap_or(url).clone();
        metrics::register(&name);
        let target = Arc::new(worker::Target {
            name,
            url: url.clone(),
            pool,
            wake: tokio::sync::Notify::new(),
            notified: std::sync::atomic::AtomicU64::new(0),
        });
        tasks.spawn(listener::run(
            target.clone(),
            listen_url,
            settings.poll_interval,
            shutdown.clone(),
        ));
        for index in 0..settings.claimers {
            tasks.spawn(worker::run(
                target.clone(),
                settings.clone(),
                index,
                shutdown.clone(),
            ));
        }
        tasks.spawn(cleanup::run(
            target.clone(),
            settings.clone(),
            shutdown.clone(),
        ));
        tasks.spawn(metrics::backlog(
            target.clone(),
            settings.backlog_interval,
            shutdown.clone(),
        ));
        tracing::info!(database = %target.name, claimers = settings.claimers, "relaying");
    }
    while let Some(finished) = tasks.join_next().await {
        finished.context("relay task panicked")?;
    }
    Ok(())
}
