//! The three measurements: the relay draining a pre-filled outbox, the broker ceiling for the
//! same publish pattern, and commit-to-consume latency under a steady load.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bench::cpu::{CpuSample, CpuUsage};
use bench::db::Database;
use bench::params::RelayParams;
use bench::process::{Logs, Process};
use bench::stats::percentile;
use lapin::Connection;
use shared::outbox::OutboxMessage;

use crate::broker::BenchBroker;
use crate::ceiling;
use crate::consumer::{BenchConsumer, Tally};
use crate::launch::{self, MarkMode};
use crate::results::{Latency, Transfer};
use crate::workload::{self, CommitTimes};

/// How long the relay may take to finish its batch after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// What every run needs.
pub struct Bench<'a> {
    pub params: &'a RelayParams,
    pub db: &'a Database,
    pub broker: &'a BenchBroker,
    logs: &'a Logs,
    /// The consumers' own connection, apart from every publisher's.
    pub consumer_connection: Connection,
}

impl<'a> Bench<'a> {
    pub async fn new(
        params: &'a RelayParams,
        db: &'a Database,
        broker: &'a BenchBroker,
        logs: &'a Logs,
    ) -> anyhow::Result<Self> {
        let consumer_connection =
            shared::amqp::connect(&broker.amqp, "relay-bench consumer").await?;
        Ok(Self {
            params,
            db,
            broker,
            logs,
            consumer_connection,
        })
    }

    async fn consumer(&self, commit_times: Option<CommitTimes>) -> anyhow::Result<BenchConsumer> {
        BenchConsumer::start(
            &self.consumer_connection,
            &self.broker.queue(),
            self.params.prefetch,
            self.params.ack_every,
            commit_times,
        )
        .await
    }

    fn spawn_relay(&self, mode: MarkMode) -> anyhow::Result<Process> {
        launch::spawn(
            self.params,
            &self.db.url,
            self.broker.topology.prefix(),
            mode,
            self.logs,
        )
    }

    /// The relay drains `messages`, already committed, into the queue.
    pub async fn throughput(&self, messages: usize, mode: MarkMode) -> anyhow::Result<Transfer> {
        let mut consumer = self.consumer(None).await?;
        let mut relay = self.spawn_relay(mode)?;
        let started = relay.started;
        let before = sample(Some(&relay));
        tokio::select! {
            waited = consumer.wait_for(messages, self.params.timeout) => {
                waited.context("throughput run: waiting for the relayed messages")?;
            }
            err = relay.exited() => return Err(err),
        }
        let after = sample(Some(&relay));
        // The relay marks rows after their confirms, so the last marks may trail the last
        // delivery; the latency run must start from an empty backlog.
        tokio::select! {
            drained = self.wait_until_published() => drained?,
            err = relay.exited() => return Err(err),
        }
        relay.stop(STOP_GRACE).await?;
        let tally = consumer.finish().await?;
        transfer(
            format!("relay, {} claimers, {}", self.params.claimers, mode.label()),
            messages,
            started,
            &tally,
            after.since(&before),
        )
    }

    async fn wait_until_published(&self) -> anyhow::Result<()> {
        let mut conn = self.db.connect().await?;
        let deadline = Instant::now() + self.params.timeout;
        loop {
            let pending = shared::outbox::unpublished(&mut conn, Duration::ZERO)
                .await
                .context("counting unpublished rows")?;
            if pending == 0 {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "{pending} rows still unpublished after {:?}",
                    self.params.timeout
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A plain publisher (no database) sends the same rows with `publishers` connections.
    pub async fn ceiling(
        &self,
        rows: Arc<Vec<outbox_relay::store::PendingRow>>,
        publishers: usize,
    ) -> anyhow::Result<Transfer> {
        let mut consumer = self.consumer(None).await?;
        let before = sample(None);
        let started = Instant::now();
        let exchange = self.broker.topology.events_exchange();
        let published = ceiling::publish(
            &self.broker.amqp,
            &exchange,
            rows.clone(),
            self.params.batch_size,
            publishers,
        );
        tokio::time::timeout(self.params.timeout, published)
            .await
            .context("ceiling run: publishing timed out")??;
        consumer
            .wait_for(rows.len(), self.params.timeout)
            .await
            .context("ceiling run: waiting for the messages")?;
        let after = sample(None);
        let tally = consumer.finish().await?;
        let plural = if publishers == 1 { "" } else { "s" };
        transfer(
            format!("ceiling, {publishers} publisher{plural}"),
            rows.len(),
            started,
            &tally,
            after.since(&before),
        )
    }

    /// Rows committed one per transaction at the configured rate while the relay runs.
    pub async fn latency(&self, first_row: u64) -> anyhow::Result<Latency> {
        let p = self.params;
        let rows = p.latency_rows();
        let warm_up = usize::try_from(p.rate).unwrap_or(usize::MAX).min(1_000);
        let commit_times: CommitTimes = Arc::new(Mutex::new(HashMap::with_capacity(rows)));
        let mut consumer = self.consumer(Some(commit_times.clone())).await?;
        let mut relay = self.spawn_relay(MarkMode::Mark)?;

        // Warm-up rows carry no commit time: they absorb relay start-up and connection set-up,
        // and their arrival proves the whole path is live before measuring.
        tokio::select! {
            produced = workload::produce_paced(self.db, p.producers, p.rate, warm_up, first_row, None) => {
                produced.context("latency warm-up")?;
            }
            err = relay.exited() => return Err(err),
        }
        tokio::select! {
            waited = consumer.wait_for(warm_up, p.timeout) => waited.context("latency warm-up")?,
            err = relay.exited() => return Err(err),
        }

        let before = sample(Some(&relay));
        let measured = workload::produce_paced(
            self.db,
            p.producers,
            p.rate,
            rows,
            first_row + warm_up as u64,
            Some(commit_times.clone()),
        );
        let paced = tokio::select! {
            produced = measured => produced.context("latency run: producing")?,
            err = relay.exited() => return Err(err),
        };
        tokio::select! {
            waited = consumer.wait_for(warm_up + rows, p.timeout) => {
                waited.context("latency run: waiting for the messages")?;
            }
            err = relay.exited() => return Err(err),
        }
        let after = sample(Some(&relay));
        relay.stop(STOP_GRACE).await?;
        let mut tally = consumer.finish().await?;

        if tally.latencies.len() != rows {
            bail!(
                "latency run: {} of {rows} measured rows matched a commit time ({} unmatched)",
                tally.latencies.len(),
                tally.unmatched
            );
        }
        tally.latencies.sort_unstable();
        let samples = &tally.latencies;
        Ok(Latency {
            offered_rate: p.rate,
            committed: paced.committed,
            achieved_rate: paced.committed as f64 / paced.elapsed.as_secs_f64().max(f64::EPSILON),
            lag_p99: percentile(&paced.lags, 0.99),
            lag_max: paced.lags.last().copied().unwrap_or_default(),
            p50: percentile(samples, 0.50),
            p90: percentile(samples, 0.90),
            p99: percentile(samples, 0.99),
            max: samples.last().copied().unwrap_or_default(),
            duplicates: tally.duplicates,
            cpu: after.since(&before),
        })
    }

    pub async fn close(self) {
        let _ = self
            .consumer_connection
            .close(200, "bench done".into())
            .await;
    }
}

fn transfer(
    label: String,
    messages: usize,
    started: Instant,
    tally: &Tally,
    cpu: CpuUsage,
) -> anyhow::Result<Transfer> {
    let (Some(first), Some(last)) = (tally.first_at, tally.last_at) else {
        bail!("{label}: no message was received");
    };
    Ok(Transfer::new(
        label,
        messages,
        last.saturating_duration_since(started),
        last.saturating_duration_since(first),
        tally.duplicates,
        cpu,
    ))
}

/// CPU now, of the relay too when one runs.
fn sample(relay: Option<&Process>) -> CpuSample {
    let processes: Vec<(String, u32)> =
        relay.map(|r| (r.name.clone(), r.pid)).into_iter().collect();
    CpuSample::take(&processes)
}

/// The rows the ceiling publishes: the pre-filled messages as the relay would load them.
pub fn ceiling_rows(
    messages: &[OutboxMessage],
) -> anyhow::Result<Vec<outbox_relay::store::PendingRow>> {
    let keys = workload::keys()?;
    messages
        .iter()
        .enumerate()
        .map(|(index, message)| workload::pending_row(index as i64 + 1, message, &keys))
        .collect()
}
