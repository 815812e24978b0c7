//! The relay under test, the release binary started as its own process through the toolkit's
//! launcher, in one of its two ways of retiring a confirmed row.

use bench::params::RelayParams;
use bench::process::{Logs, Process};

/// What the relay does with a confirmed row, chosen through its retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkMode {
    /// `published_at` is set and cleanup deletes the row after the retention.
    Mark,
    /// Retention 0, the default: the row is deleted in the transaction that confirmed it.
    Delete,
}

impl MarkMode {
    fn retention(self) -> &'static str {
        match self {
            Self::Mark => "1h",
            Self::Delete => "0s",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Mark => "mark published",
            Self::Delete => "delete on confirm",
        }
    }
}

/// Starts the relay on `database_url` under `prefix`; any other `RELAY_*` variable in the
/// benchmark's environment reaches it unchanged.
pub fn spawn(
    params: &RelayParams,
    database_url: &str,
    prefix: &str,
    mode: MarkMode,
    logs: &Logs,
) -> anyhow::Result<Process> {
    let env = [
        ("RELAY_DATABASE_URLS", database_url),
        ("AMQP_URL", &params.common.amqp_url),
        ("AMQP_PREFIX", prefix),
        ("RELAY_BATCH_SIZE", &params.batch_size.to_string()),
        ("RELAY_CLAIMERS", &params.claimers.to_string()),
        ("RELAY_RETENTION", mode.retention()),
        ("RELAY_METRICS_PORT", "0"),
        ("RUST_LOG", "warn"),
    ]
    .map(|(key, value)| (key.to_owned(), value.to_owned()));
    Process::spawn(
        "relay",
        &params.relay_bin,
        &env,
        logs,
        "build it with `cargo build --release -p outbox-relay` (bench/run-relay.sh does) or set \
         RELAY_BIN",
    )
}
