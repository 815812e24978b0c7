//! The admin API's settings: off unless a token is given.

use std::num::NonZeroU32;
use std::path::PathBuf;

use shared::config::AmqpSettings;
use shared::dlq::{DEFAULT_CONSUMERS, consumers_from};
use shared::seal::Keyring;

use super::{AdminToken, RateLimit};

/// The admin API's settings.
#[derive(Clone)]
pub struct AdminSettings {
    /// `ADMIN_TOKEN`.
    pub token: AdminToken,
    /// `ADMIN_RATE_LIMIT`: admin requests per client and minute.
    pub rate_limit: RateLimit,
    /// The broker whose dead-letter queues are operated on.
    pub amqp: AmqpSettings,
    /// `DLQ_CONSUMERS`: the consumers whose dead-letter queues exist.
    pub consumers: Vec<String>,
    /// `ADMIN_PURGE_DIR`: where purged messages are written.
    pub purge_dir: PathBuf,
    /// The monitor's keys: list and show decrypt with them (replays send the sealed bytes).
    pub keys: Option<Keyring>,
}

impl std::fmt::Debug for AdminSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminSettings")
            .field("token", &self.token)
            .field("consumers", &self.consumers)
            .finish()
    }
}

/// The admin API's options.
#[derive(Clone, clap::Args)]
pub struct AdminArgs {
    /// Bearer token of the admin API (dead-letter operations); unset = the API is off.
    #[arg(long = "admin-token", env = "ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Consumers whose dead-letter queues the admin API looks at (comma-separated).
    #[arg(long = "dlq-consumers", env = "DLQ_CONSUMERS", default_value = DEFAULT_CONSUMERS)]
    pub consumers: String,
    /// Where the admin API writes purged messages (default: the system temp directory).
    #[arg(long = "admin-purge-dir", env = "ADMIN_PURGE_DIR")]
    pub purge_dir: Option<PathBuf>,
    /// Admin requests each client may make per minute (a burst of as many), against token
    /// guessing; past it, 429 with Retry-After.
    #[arg(
        long = "admin-rate-limit",
        env = "ADMIN_RATE_LIMIT",
        value_name = "PER_MINUTE",
        default_value = "60"
    )]
    pub rate_limit: NonZeroU32,
    /// The broker identity the admin API operates dead letters as: the operator's, since the
    /// monitor's own consumer identity may not read dead-letter queues (default: `AMQP_URL`).
    #[arg(
        id = "admin_amqp_url",
        long = "admin-amqp-url",
        env = "ADMIN_AMQP_URL",
        hide_env_values = true
    )]
    pub amqp_url: Option<String>,
}

impl std::fmt::Debug for AdminArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminArgs")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("consumers", &self.consumers)
            .finish()
    }
}

impl AdminSettings {
    /// `None` when no token is given: the admin API is off.
    pub fn from_args(args: AdminArgs, amqp: &AmqpSettings) -> Option<Self> {
        let token = AdminToken::new(args.token?)?;
        let mut amqp = amqp.clone();
        if let Some(url) = args.amqp_url.filter(|url| !url.trim().is_empty()) {
            amqp.url = url;
        }
        Some(Self {
            token,
            rate_limit: RateLimit::per_minute(args.rate_limit),
            amqp,
            consumers: consumers_from(&args.consumers),
            purge_dir: args.purge_dir.unwrap_or_else(std::env::temp_dir),
            keys: None,
        })
    }

    /// As [`Self::from_args`], from the environment alone.
    pub fn from_env(amqp: &AmqpSettings) -> anyhow::Result<Option<Self>> {
        Ok(Self::from_args(
            shared::config::from_env::<AdminArgs>()?,
            amqp,
        ))
    }
}
