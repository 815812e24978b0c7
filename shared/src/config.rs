//! Settings from environment variables. Every variable has a default that works on a developer
//! machine with PostgreSQL and RabbitMQ on 127.0.0.1; the README lists them all.

use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, bail};

/// The value of `name`, or `default` when it is unset or empty.
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

/// `name` as milliseconds.
pub fn env_millis(name: &str, default_ms: u64) -> anyhow::Result<Duration> {
    env_parse(name, default_ms).map(Duration::from_millis)
}

/// `name` as a comma-separated list of milliseconds, e.g. `1000,5000,30000`.
pub fn env_millis_list(name: &str, default: &str) -> anyhow::Result<Vec<Duration>> {
    let raw = env_or(name, default);
    let delays = raw
        .split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(|part| part.parse::<u64>().map(Duration::from_millis))
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{name}={raw:?}: expected comma-separated milliseconds"))?;
    if delays.is_empty() {
        bail!("{name} must list at least one delay");
    }
    Ok(delays)
}

/// How to reach a service database.
#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// The database URL (each service reads its own `{NAME}_DATABASE_URL`).
    pub url: String,
    /// `DB_POOL_SIZE`: connections in the pool.
    pub pool_size: usize,
    /// `DB_POOL_TIMEOUT_MS`: how long to wait for a connection (to be created or to be free)
    /// before failing; without it a pool waits forever when the database is down.
    pub pool_timeout: Duration,
}

impl DatabaseSettings {
    /// `url` with the pool settings from the environment.
    pub fn from_env(url: String) -> anyhow::Result<Self> {
        Ok(Self {
            url,
            pool_size: env_parse("DB_POOL_SIZE", 16)?,
            pool_timeout: env_millis("DB_POOL_TIMEOUT_MS", 5_000)?,
        })
    }

    pub fn with_url(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            pool_size: 16,
            pool_timeout: Duration::from_secs(5),
        }
    }
}

/// How to reach the broker and which names to use there.
#[derive(Debug, Clone)]
pub struct AmqpSettings {
    /// `AMQP_URL`.
    pub url: String,
    /// `AMQP_PREFIX`: the first segment of every exchange and queue name, so that tests and
    /// tenants sharing one broker never collide.
    pub prefix: String,
}

pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
pub const DEFAULT_AMQP_PREFIX: &str = "saga";

impl AmqpSettings {
    pub fn from_env() -> Self {
        Self {
            url: env_or("AMQP_URL", DEFAULT_AMQP_URL),
            prefix: env_or("AMQP_PREFIX", DEFAULT_AMQP_PREFIX),
        }
    }
}

/// How a service consumes its queue.
#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    /// `CONSUMER_PREFETCH`: unacknowledged deliveries the broker may push at once.
    pub prefetch: u16,
    /// `CONSUMER_CONCURRENCY`: deliveries handled at the same time (each holds one DB connection).
    pub concurrency: usize,
    /// `CONSUMER_MAX_ATTEMPTS`: handling attempts before a transiently failing message is
    /// dead-lettered (1 = no retry).
    pub max_attempts: u32,
    /// `CONSUMER_RETRY_DELAYS_MS`: the delay before retry 1, 2, ...; attempts beyond the list
    /// reuse its last delay. Each delay is one retry queue (message TTL) named after its delay,
    /// so a changed list declares new queues while the old ones drain.
    pub retry_delays: Vec<Duration>,
}

impl ConsumerSettings {
    pub fn from_env() -> anyhow::Result<Self> {
        let settings = Self {
            prefetch: env_parse("CONSUMER_PREFETCH", 64)?,
            concurrency: env_parse("CONSUMER_CONCURRENCY", 8)?,
            max_attempts: env_parse("CONSUMER_MAX_ATTEMPTS", 5)?,
            retry_delays: env_millis_list("CONSUMER_RETRY_DELAYS_MS", "1000,5000,30000,120000")?,
        };
        if settings.concurrency == 0 || settings.max_attempts == 0 || settings.prefetch == 0 {
            bail!("CONSUMER_CONCURRENCY, CONSUMER_MAX_ATTEMPTS and CONSUMER_PREFETCH must be > 0");
        }
        Ok(settings)
    }
}

impl Default for ConsumerSettings {
    fn default() -> Self {
        Self {
            prefetch: 64,
            concurrency: 8,
            max_attempts: 5,
            retry_delays: [1_000, 5_000, 30_000, 120_000]
                .into_iter()
                .map(Duration::from_millis)
                .collect(),
        }
    }
}
