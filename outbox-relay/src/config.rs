//! Relay settings from environment variables (all listed in the README).

use std::time::Duration;

use anyhow::bail;
use shared::config::{AmqpSettings, env_millis, env_or, env_parse};

/// The four service databases on the local server.
pub const DEFAULT_DATABASE_URLS: &str = "postgres://postgres@127.0.0.1:5432/saga_order,\
postgres://postgres@127.0.0.1:5432/saga_product,\
postgres://postgres@127.0.0.1:5432/saga_coupon,\
postgres://postgres@127.0.0.1:5432/saga_balance";

#[derive(Debug, Clone)]
pub struct RelaySettings {
    /// `RELAY_DATABASE_URLS`: comma-separated service databases to relay from.
    pub database_urls: Vec<String>,
    /// `AMQP_URL` and `AMQP_PREFIX`.
    pub amqp: AmqpSettings,
    /// `RELAY_BATCH_SIZE`: rows claimed and published per transaction (the confirm window).
    pub batch_size: i64,
    /// `RELAY_CLAIMERS`: concurrent claim loops per database, each with its own channel, so one
    /// batch's database work overlaps another's broker round trip. Batches of different claimers
    /// (and of several relays) reach the broker in no particular order relative to each other.
    /// The saga does not need more: a step's event is produced by handling the previous step's,
    /// so it cannot be published before its cause. Only events of one database that are not
    /// each other's cause may swap (an `OrderCompleted` and the cancellation request that
    /// followed it over HTTP); no consumer depends on their order, the monitor keeps the later
    /// state. Set 1 (and run one relay) where a database's events must keep commit order.
    pub claimers: usize,
    /// `RELAY_POLL_INTERVAL_MS`: fallback poll when no notification arrives; NOTIFY is the hot
    /// path, this only catches what a lost notification missed.
    pub poll_interval: Duration,
    /// `RELAY_RETENTION_SECS`: 0 (the default) deletes each row in the transaction that confirmed
    /// it, the cheapest way to retire a row; above 0, rows are marked `published_at` and kept
    /// that long for inspection, then cleaned up (about a quarter slower, see the benchmark).
    pub retention: Duration,
    /// `RELAY_CLEANUP_INTERVAL_MS`: how often cleanup runs.
    pub cleanup_interval: Duration,
    /// `RELAY_DB_TIMEOUT_MS`: database connect and pool wait timeout.
    pub db_timeout: Duration,
    /// `RELAY_MAX_BACKOFF_MS`: cap of the reconnect backoff after a broker or database failure.
    pub max_backoff: Duration,
    /// `RELAY_METRICS_PORT`: where `/metrics` is served (0 = a free port); in-process relays
    /// (tests, `sagactl up`) leave it `None` and serve none of their own.
    pub metrics_port: Option<u16>,
    /// `HTTP_HOST`: the interface of the metrics listener.
    pub metrics_host: String,
    /// `RELAY_BACKLOG_INTERVAL_MS`: how often the backlog gauges are refreshed.
    pub backlog_interval: Duration,
    /// `OUTBOX_RELAY_CRASH_AFTER_CONFIRM`: test-only fault injection; the process exits right
    /// after the broker confirmed a batch and before the rows are marked published.
    pub crash_after_confirm: bool,
}

impl RelaySettings {
    pub fn from_env() -> anyhow::Result<Self> {
        let database_urls: Vec<String> = env_or("RELAY_DATABASE_URLS", DEFAULT_DATABASE_URLS)
            .split(',')
            .map(|url| url.trim().to_owned())
            .filter(|url| !url.is_empty())
            .collect();
        if database_urls.is_empty() {
            bail!("RELAY_DATABASE_URLS lists no database");
        }
        let settings = Self {
            database_urls,
            amqp: AmqpSettings::from_env(),
            batch_size: env_parse("RELAY_BATCH_SIZE", 500)?,
            claimers: env_parse("RELAY_CLAIMERS", 2)?,
            poll_interval: env_millis("RELAY_POLL_INTERVAL_MS", 5_000)?,
            retention: Duration::from_secs(env_parse("RELAY_RETENTION_SECS", 0)?),
            cleanup_interval: env_millis("RELAY_CLEANUP_INTERVAL_MS", 60_000)?,
            db_timeout: env_millis("RELAY_DB_TIMEOUT_MS", 5_000)?,
            max_backoff: env_millis("RELAY_MAX_BACKOFF_MS", 5_000)?,
            crash_after_confirm: env_parse("OUTBOX_RELAY_CRASH_AFTER_CONFIRM", false)?,
            metrics_port: Some(env_parse("RELAY_METRICS_PORT", 9187)?),
            metrics_host: env_or("HTTP_HOST", "127.0.0.1"),
            backlog_interval: env_millis("RELAY_BACKLOG_INTERVAL_MS", 5_000)?,
        };
        if settings.batch_size < 1 || settings.claimers < 1 {
            bail!("RELAY_BATCH_SIZE and RELAY_CLAIMERS must be at least 1");
        }
        Ok(settings)
    }

    /// Defaults for `database_urls` and `amqp`, as a test or tool would start it.
    pub fn new(database_urls: Vec<String>, amqp: AmqpSettings) -> Self {
        Self {
            database_urls,
            amqp,
            batch_size: 500,
            claimers: 2,
            poll_interval: Duration::from_secs(5),
            retention: Duration::ZERO,
            cleanup_interval: Duration::from_secs(60),
            db_timeout: Duration::from_secs(5),
            max_backoff: Duration::from_secs(5),
            crash_after_confirm: false,
            metrics_port: None,
            metrics_host: "127.0.0.1".into(),
            backlog_interval: Duration::from_secs(5),
        }
    }
}
