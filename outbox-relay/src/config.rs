//! Relay settings: command-line flags and environment variables (`outbox-relay --help` lists
//! them all with their defaults).

use std::time::Duration;

use anyhow::bail;
use clap::Parser;
use shared::config::{AmqpSettings, PgServer, parse_duration};

/// The service databases the relay serves when none are named: those of the four services that
/// write events.
pub const SERVICE_DATABASES: [&str; 4] = ["order", "product", "coupon", "balance"];

#[derive(Clone, clap::Args)]
pub struct RelaySettings {
    /// Comma-separated service databases to relay from; default: the order, product, coupon and
    /// balance databases (`saga_order`, ...) on the server the PG* options or DATABASE_BASE_URL
    /// name.
    #[arg(
        long = "database-urls",
        env = "RELAY_DATABASE_URLS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub database_urls: Vec<String>,
    #[command(flatten)]
    pub amqp: AmqpSettings,
    /// Rows claimed and published per transaction (the publisher-confirm window).
    #[arg(long = "batch-size", env = "RELAY_BATCH_SIZE", default_value_t = 500)]
    pub batch_size: i64,
    /// Concurrent claim loops per database, each with its own channel, so one batch's database
    /// work overlaps another's broker round trip. Batches of different claimers (and relays)
    /// reach the broker in no particular order relative to each other, but one saga's events
    /// keep their commit order whatever the number: a row is claimed only once every earlier
    /// row of its saga was confirmed.
    #[arg(long, env = "RELAY_CLAIMERS", default_value_t = 2)]
    pub claimers: usize,
    /// Fallback poll when no notification arrives; NOTIFY is the hot path, this only catches
    /// what a lost notification missed.
    #[arg(long = "poll-interval", env = "RELAY_POLL_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub poll_interval: Duration,
    /// 0s deletes each row in the transaction that confirmed it, the cheapest way to retire it;
    /// above 0, rows are marked published and kept that long for inspection, then deleted.
    #[arg(long, env = "RELAY_RETENTION", default_value = "0s", value_parser = parse_duration)]
    pub retention: Duration,
    /// How often retention cleanup runs.
    #[arg(long = "cleanup-interval", env = "RELAY_CLEANUP_INTERVAL", default_value = "1m", value_parser = parse_duration)]
    pub cleanup_interval: Duration,
    /// Database connect and pool wait timeout.
    #[arg(long = "db-timeout", env = "RELAY_DB_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub db_timeout: Duration,
    /// Cap of the reconnect backoff after a broker or database failure.
    #[arg(long = "max-backoff", env = "RELAY_MAX_BACKOFF", default_value = "5s", value_parser = parse_duration)]
    pub max_backoff: Duration,
    /// Port of `/metrics` and `/health` (0 picks a free one). In-process relays (tests,
    /// `sagactl up`) have none.
    #[arg(
        long = "metrics-port",
        env = "RELAY_METRICS_PORT",
        default_value = "9187"
    )]
    pub metrics_port: Option<u16>,
    /// Interface of the metrics listener.
    #[arg(long = "http-host", env = "HTTP_HOST", default_value = "127.0.0.1")]
    pub metrics_host: String,
    /// How often the outbox backlog gauges are refreshed.
    #[arg(long = "backlog-interval", env = "RELAY_BACKLOG_INTERVAL", default_value = "5s", value_parser = parse_duration)]
    pub backlog_interval: Duration,
    /// The LISTEN connection's URL per database (same order as `database_urls`): the database
    /// on `DATABASE_DIRECT_URL` when set, never through a transaction-pooling PgBouncer. Empty:
    /// the database URLs themselves.
    #[arg(skip)]
    pub listen_urls: Vec<String>,
    /// Test-only fault injection: exit right after the broker confirmed a batch, before the rows
    /// are marked published.
    #[arg(long = "crash-after-confirm", env = "OUTBOX_RELAY_CRASH_AFTER_CONFIRM", hide = true, default_value_t = false, action = clap::ArgAction::Set)]
    pub crash_after_confirm: bool,
}

impl std::fmt::Debug for RelaySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let urls: Vec<String> = self
            .database_urls
            .iter()
            .map(|url| shared::db::redact(url))
            .collect();
        f.debug_struct("RelaySettings")
            .field("database_urls", &urls)
            .field("amqp", &self.amqp)
            .field("batch_size", &self.batch_size)
            .field("claimers", &self.claimers)
            .finish_non_exhaustive()
    }
}

/// The relay binary's command line.
#[derive(Debug, Parser)]
#[command(
    name = "outbox-relay",
    version,
    about = "Publishes committed outbox rows to RabbitMQ"
)]
pub struct RelayCli {
    #[command(flatten)]
    pub relay: RelaySettings,
    #[command(flatten)]
    pub server: PgServer,
}

impl RelayCli {
    /// The settings, with the default databases filled in from the server options.
    pub fn settings(self) -> anyhow::Result<RelaySettings> {
        self.relay.resolved(&self.server)
    }
}

impl RelaySettings {
    /// The settings from the environment alone (`sagactl up`).
    pub fn from_env() -> anyhow::Result<Self> {
        shared::config::refuse_renamed_variables()?;
        let server = shared::config::from_env::<PgServer>()?;
        shared::config::from_env::<Self>()?.resolved(&server)
    }

    /// `self` checked, with the four service databases on `server` when none are named.
    pub fn resolved(mut self, server: &PgServer) -> anyhow::Result<Self> {
        self.database_urls.retain(|url| !url.trim().is_empty());
        if self.database_urls.is_empty() {
            self.database_urls = SERVICE_DATABASES
                .iter()
                .map(|name| server.service_database_url(name))
                .collect();
        }
        self.listen_urls = self
            .database_urls
            .iter()
            .map(|url| server.direct_url(url))
            .collect::<anyhow::Result<_>>()?;
        if self.batch_size < 1 || self.claimers < 1 {
            bail!("RELAY_BATCH_SIZE and RELAY_CLAIMERS must be at least 1");
        }
        Ok(self)
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
            listen_urls: Vec::new(),
        }
    }
}
