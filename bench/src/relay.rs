//! The relay under test, run as its own process (the release binary), exactly as deployed, so
//! its CPU can be read from /proc separately from the benchmark's.

use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

use crate::params::Params;

/// What the relay does with a confirmed row, chosen through its retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarkMode {
    /// The default: `published_at` is set and cleanup deletes the row after the retention.
    Mark,
    /// `RELAY_RETENTION_SECS=0`: the row is deleted in the transaction that confirmed it.
    Delete,
}

impl MarkMode {
    fn retention_secs(self) -> &'static str {
        match self {
            Self::Mark => "3600",
            Self::Delete => "0",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Mark => "mark published",
            Self::Delete => "delete on confirm",
        }
    }
}

pub struct RelayProcess {
    child: Child,
    pub pid: u32,
    pub started: Instant,
}

impl RelayProcess {
    /// Starts the relay on `database_url` under `prefix`; any other `RELAY_*` variable in the
    /// benchmark's environment reaches it unchanged.
    pub fn spawn(
        params: &Params,
        database_url: &str,
        prefix: &str,
        mode: MarkMode,
    ) -> anyhow::Result<Self> {
        if !params.relay_bin.is_file() {
            bail!(
                "{} not found: build it with `cargo build --release -p outbox-relay` \
                 (bench/run-relay.sh does) or set RELAY_BIN",
                params.relay_bin.display()
            );
        }
        let started = Instant::now();
        let child = Command::new(&params.relay_bin)
            .env("RELAY_DATABASE_URLS", database_url)
            .env("AMQP_URL", &params.amqp_url)
            .env("AMQP_PREFIX", prefix)
            .env("RELAY_BATCH_SIZE", params.batch_size.to_string())
            .env("RELAY_CLAIMERS", params.claimers.to_string())
            .env("RELAY_RETENTION_SECS", mode.retention_secs())
            .env("RELAY_METRICS_PORT", "0")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            // A failed run must not leave a relay behind.
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", params.relay_bin.display()))?;
        let pid = child.id().context("the relay exited at once")?;
        Ok(Self {
            child,
            pid,
            started,
        })
    }

    /// Resolves only if the relay exits, as an error: raced against every wait so that a crashed
    /// relay fails the run at once instead of at the deadline.
    pub async fn exited(&mut self) -> anyhow::Error {
        match self.child.wait().await {
            Ok(status) => anyhow::anyhow!("the relay exited during the run: {status}"),
            Err(err) => anyhow::Error::new(err).context("waiting on the relay"),
        }
    }

    /// SIGTERM, then the relay's own graceful shutdown; SIGKILL if that takes past `grace`.
    pub async fn stop(mut self, grace: Duration) -> anyhow::Result<ExitStatus> {
        let signalled = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status()
            .await
            .context("running kill -TERM")?;
        if signalled.success()
            && let Ok(status) = tokio::time::timeout(grace, self.child.wait()).await
        {
            return status.context("waiting for the relay to stop");
        }
        self.child.kill().await.context("killing the relay")?;
        self.child.wait().await.context("reaping the relay")
    }
}
