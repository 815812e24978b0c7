//! How long a service remembers what it applied, and how often it forgets.
//!
//! The inbox deduplicates by remembering every message id it applied; kept forever it grows by
//! one row per event. A claim is needed only while a copy of its message can still arrive, so
//! claims older than the window are deleted (`shared::housekeeping`).

use std::time::Duration;

use anyhow::bail;
use clap::Args;

use super::{ConsumerSettings, parse_duration};

/// The inbox's deduplication window and the period of every service's cleanup job.
#[derive(Debug, Clone, Args)]
pub struct InboxSettings {
    /// How long an inbox claim is kept: a redelivered message applied less than this long ago
    /// is absorbed, an older one would be applied again. Must exceed the longest a copy of an
    /// applied message can stay in flight (retries, dead-letter replays; docs/messaging.md).
    #[arg(id = "inbox_window", value_name = "DURATION", long = "inbox-window", env = "INBOX_WINDOW", default_value = "7d", value_parser = parse_duration)]
    pub window: Duration,
    /// How often expired inbox claims are deleted (in bounded batches), and in the monitor the
    /// events past MONITOR_RETENTION; also once at start.
    #[arg(id = "cleanup_interval", value_name = "DURATION", long = "cleanup-interval", env = "CLEANUP_INTERVAL", default_value = "10m", value_parser = parse_duration)]
    pub cleanup_interval: Duration,
}

impl Default for InboxSettings {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(7 * 24 * 3600),
            cleanup_interval: Duration::from_secs(600),
        }
    }
}

impl InboxSettings {
    /// `self`, or an error if the window cannot cover `consumer`'s own retries: a transiently
    /// failing duplicate of an applied message comes back after the whole retry ladder, and by
    /// then its claim must still be there.
    pub fn validated(self, consumer: &ConsumerSettings) -> anyhow::Result<Self> {
        if self.cleanup_interval.is_zero() {
            bail!("CLEANUP_INTERVAL must be above 0");
        }
        let ladder = retry_ladder(consumer);
        if self.window <= ladder {
            bail!(
                "INBOX_WINDOW ({:?}) must exceed the retry ladder of CONSUMER_RETRY_DELAYS and \
                 CONSUMER_MAX_ATTEMPTS ({ladder:?}), or a retried duplicate would apply twice",
                self.window
            );
        }
        Ok(self)
    }
}

/// The longest a message spends between its first attempt and its last: every retry delay.
pub fn retry_ladder(consumer: &ConsumerSettings) -> Duration {
    let retries = consumer.max_attempts.saturating_sub(1) as usize;
    let last = consumer.retry_delays.last().copied().unwrap_or_default();
    (0..retries)
        .map(|n| consumer.retry_delays.get(n).copied().unwrap_or(last))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_must_exceed_the_retry_ladder() {
        let consumer = ConsumerSettings::default();
        // 4 retries: 1 s + 5 s + 30 s + 2 min.
        assert_eq!(retry_ladder(&consumer), Duration::from_secs(156));
        let longer = ConsumerSettings {
            max_attempts: 7,
            ..ConsumerSettings::default()
        };
        assert_eq!(retry_ladder(&longer), Duration::from_secs(156 + 240));
        assert!(InboxSettings::default().validated(&consumer).is_ok());
        let short = InboxSettings {
            window: Duration::from_secs(156),
            ..InboxSettings::default()
        };
        let refused = short.validated(&consumer).unwrap_err().to_string();
        assert!(refused.contains("INBOX_WINDOW"), "{refused}");
        assert_eq!(parse_duration("7d"), Ok(InboxSettings::default().window));
    }
}
