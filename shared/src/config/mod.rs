//! Settings. Every option is both a command-line flag and an environment variable (clap with
//! `env`), so a binary's `--help` is its configuration reference; every one has a default that
//! works on a developer machine with PostgreSQL and RabbitMQ on 127.0.0.1. Durations take one
//! format everywhere: `500ms`, `30s`, `5m`, `2h`.
//!
//! Values holding secrets (URLs with passwords, tokens) are hidden from `--help` and redacted in
//! `Debug` output.

use std::str::FromStr;
use std::time::Duration;

use anyhow::bail;
use clap::{Args, FromArgMatches};

use crate::db::redact;

mod amqp_tls;
mod housekeeping;
mod postgres;

pub use amqp_tls::AmqpTls;
pub use housekeeping::{InboxSettings, retry_ladder};
pub use postgres::{DatabaseSettings, PgServer, PoolSettings};

/// Parses a duration as every option and variable takes it: `500ms`, `30s`, `5m`, `2h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|err| format!("{err} (a duration such as 500ms, 30s, 5m)"))
}

/// Variables that were renamed when every duration took one format, with their new names. A
/// deployment still setting an old one would otherwise run on the default without a word.
const RENAMED: [(&str, &str); 8] = [
    ("DB_POOL_TIMEOUT_MS", "DB_POOL_TIMEOUT"),
    ("CONSUMER_RETRY_DELAYS_MS", "CONSUMER_RETRY_DELAYS"),
    ("RELAY_POLL_INTERVAL_MS", "RELAY_POLL_INTERVAL"),
    ("RELAY_RETENTION_SECS", "RELAY_RETENTION"),
    ("RELAY_CLEANUP_INTERVAL_MS", "RELAY_CLEANUP_INTERVAL"),
    ("RELAY_DB_TIMEOUT_MS", "RELAY_DB_TIMEOUT"),
    ("RELAY_MAX_BACKOFF_MS", "RELAY_MAX_BACKOFF"),
    ("RELAY_BACKLOG_INTERVAL_MS", "RELAY_BACKLOG_INTERVAL"),
];

/// Fails, naming the replacement, if the environment sets a variable that was renamed.
pub fn refuse_renamed_variables() -> anyhow::Result<()> {
    for (old, new) in RENAMED {
        if std::env::var_os(old).is_some() {
            bail!("{old} was renamed {new}, which takes a duration such as 500ms, 30s or 5m");
        }
    }
    Ok(())
}

/// `T` from the environment alone (no command line), with clap's parsing and defaults: for
/// processes that run several components with their settings from one environment
/// (`sagactl up`).
pub fn from_env<T: Args + FromArgMatches>() -> anyhow::Result<T> {
    let command = T::augment_args(clap::Command::new("settings").no_binary_name(true));
    let matches = command.try_get_matches_from(Vec::<String>::new())?;
    Ok(T::from_arg_matches(&matches)?)
}

/// The value of `name`, or `default` when it is unset or empty (tests and tools).
pub fn env_or(name: &str, default: &str) -> String {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => value,
        _ => default.to_owned(),
    }
}

/// `name` parsed as `T`, or `default` when unset; a value that does not parse is an error naming
/// the variable (a typo in production config must not silently fall back to a default).
pub fn env_parse<T>(name: &str, default: T) -> anyhow::Result<T>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => value
            .trim()
            .parse()
            .map_err(|err| anyhow::anyhow!("{name}={value:?}: {err}")),
        _ => Ok(default),
    }
}

pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
pub const DEFAULT_AMQP_PREFIX: &str = "saga";

/// How to reach the broker and which names to use there.
#[derive(Clone, Args)]
pub struct AmqpSettings {
    /// The broker (`amqp://user:password@host:5672/vhost`, or `amqps://…:5671/…` for TLS); the
    /// nodes of a cluster as several hosts, `amqp://user:password@h1:5672,h2:5672,h3:5672/vhost`
    /// (each connect reaches the first live one, starting at a different node each time).
    #[arg(id = "amqp_url", value_name = "URL", long = "amqp-url", env = "AMQP_URL", default_value = DEFAULT_AMQP_URL, hide_default_value = true, hide_env_values = true)]
    pub url: String,
    /// First segment of every exchange and queue name, so that tests and tenants sharing one
    /// broker never collide.
    #[arg(id = "amqp_prefix", value_name = "PREFIX", long = "amqp-prefix", env = "AMQP_PREFIX", default_value = DEFAULT_AMQP_PREFIX)]
    pub prefix: String,
    /// TLS towards the broker, for an `amqps://` URL.
    #[command(flatten)]
    pub tls: AmqpTls,
}

impl std::fmt::Debug for AmqpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpSettings")
            .field("url", &redact(&self.url))
            .field("prefix", &self.prefix)
            .field("tls", &self.tls)
            .finish()
    }
}

impl AmqpSettings {
    /// The broker settings from the environment (`AMQP_URL`, `AMQP_PREFIX`, `AMQP_TLS_*`).
    pub fn from_env() -> Self {
        Self {
            url: env_or("AMQP_URL", DEFAULT_AMQP_URL),
            prefix: env_or("AMQP_PREFIX", DEFAULT_AMQP_PREFIX),
            tls: AmqpTls::from_env(),
        }
    }
}

/// How a service consumes its queue.
#[derive(Debug, Clone, Args)]
pub struct ConsumerSettings {
    /// Unacknowledged deliveries the broker may push at once.
    #[arg(
        id = "consumer_prefetch",
        long = "consumer-prefetch",
        env = "CONSUMER_PREFETCH",
        default_value_t = 64
    )]
    pub prefetch: u16,
    /// Lanes: batches of deliveries handled at the same time (each holds one database
    /// connection while it works: keep it below DB_POOL_SIZE, which HTTP and timers share). All deliveries of one saga go through the same lane, one batch after the
    /// other, so a saga's events are never handled concurrently within an instance.
    #[arg(
        id = "consumer_concurrency",
        long = "consumer-concurrency",
        env = "CONSUMER_CONCURRENCY",
        default_value_t = 4
    )]
    pub concurrency: usize,
    /// Handling attempts before a transiently failing message is dead-lettered (1 = no retry).
    #[arg(
        id = "consumer_max_attempts",
        long = "consumer-max-attempts",
        env = "CONSUMER_MAX_ATTEMPTS",
        default_value_t = 5
    )]
    pub max_attempts: u32,
    /// The delay before retry 1, 2, ... (comma-separated); attempts beyond the list reuse its
    /// last delay. Each delay is one retry queue named after it, so a changed list declares new
    /// queues while the old ones drain.
    #[arg(id = "consumer_retry_delays", value_name = "DURATIONS", long = "consumer-retry-delays", env = "CONSUMER_RETRY_DELAYS", default_value = "1s,5s,30s,2m", value_delimiter = ',', value_parser = parse_duration)]
    pub retry_delays: Vec<Duration>,
    /// Partition queues per consumer, each delivering to one instance at a time; a saga always
    /// lands in the same one. Must be the same for every instance of a service, and at least
    /// the number of instances that should share the work (docs/messaging.md, "Order").
    #[arg(
        id = "consumer_partitions",
        long = "consumer-partitions",
        env = "CONSUMER_PARTITIONS",
        default_value_t = crate::amqp::DEFAULT_PARTITIONS
    )]
    pub partitions: u16,
}

impl ConsumerSettings {
    /// The consumer settings from the environment.
    pub fn from_env() -> anyhow::Result<Self> {
        from_env::<Self>()?.validated()
    }

    /// `self`, or an error naming what is out of range.
    pub fn validated(self) -> anyhow::Result<Self> {
        if self.concurrency == 0
            || self.max_attempts == 0
            || self.prefetch == 0
            || self.partitions == 0
        {
            bail!(
                "CONSUMER_CONCURRENCY, CONSUMER_MAX_ATTEMPTS, CONSUMER_PREFETCH and \
                 CONSUMER_PARTITIONS must be > 0"
            );
        }
        if self.retry_delays.is_empty() {
            bail!("CONSUMER_RETRY_DELAYS must list at least one delay");
        }
        Ok(self)
    }
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        Self {
            prefetch: 64,
            concurrency: 4,
            max_attempts: 5,
            retry_delays: [1, 5, 30, 120].map(Duration::from_secs).to_vec(),
            partitions: crate::amqp::DEFAULT_PARTITIONS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_one_format() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration(" 5m "), Ok(Duration::from_secs(300)));
        assert!(parse_duration("500").is_err());
        let defaults = ConsumerSettings::default();
        let parsed: ConsumerSettings = {
            let command =
                ConsumerSettings::augment_args(clap::Command::new("t").no_binary_name(true));
            let matches = command.try_get_matches_from(Vec::<String>::new()).unwrap();
            ConsumerSettings::from_arg_matches(&matches).unwrap()
        };
        assert_eq!(parsed.retry_delays, defaults.retry_delays);
    }
}
