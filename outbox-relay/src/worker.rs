//! One claim loop for one database: claim a batch, publish it pipelined, await the confirms,
//! mark what was confirmed, commit. Repeat while full batches come back (or a batch released a
//! saga's next event, which a claim holds back until the one before is published), then sleep
//! until a notification or the fallback poll.
//!
//! A notification wakes ONE idle claimer of the database (or, when all are busy, the next to
//! finish), and a claimer that brings back a full batch wakes one more to share the backlog.
//! Waking all of them on every commit made all but one claim nothing, three wasted round trips
//! each, which at a few rows per batch was a tenth of the saga's database statements.

use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel_async::AnsiTransactionManager;
use diesel_async::AsyncPgConnection;
use diesel_async::TransactionManager;
use shared::amqp::Topology;
use shared::amqp::publish::Outcome;
use shared::backoff::Backoff;
use shared::db::PgPool;
use shared::shutdown::Shutdown;
use tokio::sync::Notify;

use crate::config::RelaySettings;
use crate::metrics::NAME;
use crate::publisher::Publisher;
use crate::store;
use shared::metrics::SERVICE;

/// A database the relay serves.
pub struct Target {
    /// The database name, for logs and metric labels.
    pub name: String,
    pub url: String,
    pub pool: PgPool,
    /// Wakes one idle claimer: on a notification, and when a full batch says there is a
    /// backlog. A wake-up with nobody waiting is kept for the next claimer to wait, so none is
    /// lost while all are busy.
    pub wake: Notify,
    /// Notifications received so far: a claimer compares it across its batch to learn that a
    /// commit came in meanwhile (see [`BatchReport::unblocked`]).
    pub notified: std::sync::atomic::AtomicU64,
}

/// What one batch did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BatchReport {
    pub claimed: usize,
    pub published: usize,
    pub rejected: usize,
    /// Publishes whose fate is unknown because the channel failed: the broker connection is lost.
    pub unknown: usize,
    /// The batch published a saga's row and that saga may have a later row, claimable only
    /// now: the claim saw one, or a commit was notified while the batch was in flight (its
    /// claim then skipped the new row, whose predecessor was still unpublished).
    pub unblocked: bool,
    /// Some confirmed row had a saga.
    pub saga_published: bool,
    /// The claim saw a later pending row of a claimed saga.
    pub followed: bool,
}

/// Runs until `shutdown`, reconnecting to the broker and retrying the database with backoff.
pub async fn run(
    target: Arc<Target>,
    settings: Arc<RelaySettings>,
    index: usize,
    mut shutdown: Shutdown,
) {
    let topology = Topology::new(settings.amqp.prefix.clone());
    let name = format!("outbox-relay {} #{index}", target.name);
    let mut backoff = Backoff::new(Duration::from_millis(50), settings.max_backoff);
    let mut publisher: Option<Publisher> = None;
    // Whether rows may wait for a retry (a previous run may have left some): only then is the
    // earliest retry time worth a query after each drain.
    let mut retry_pending = true;
    while !shutdown.is_triggered() {
        let result = match &publisher {
            Some(active) => drain(&target, &settings, active, &shutdown, &mut retry_pending).await,
            None => match Publisher::connect(&settings.amqp, &topology, &name).await {
                Ok(connected) => {
                    tracing::info!(database = %target.name, "relay connected to the broker");
                    publisher = Some(connected);
                    continue;
                }
                Err(err) => Err(err),
            },
        };
        let mut sleep_for = settings.poll_interval;
        match result {
            Ok(Drained::Idle { retry_due_in }) => {
                backoff.reset();
                if let Some(due) = retry_due_in {
                    sleep_for = sleep_for.min(due);
                }
            }
            Ok(Drained::BrokerLost) => {
                if let Some(lost) = publisher.take() {
                    lost.close().await;
                }
                pause(
                    &mut backoff,
                    &mut shutdown,
                    &target,
                    "broker connection lost",
                )
                .await;
                continue;
            }
            Err(err) => {
                pause(&mut backoff, &mut shutdown, &target, &format!("{err:#}")).await;
                continue;
            }
        }
        tokio::select! {
            _ = target.wake.notified() => {}
            _ = tokio::time::sleep(sleep_for) => {}
            _ = shutdown.wait() => {}
        }
    }
    if let Some(active) = publisher {
        active.close().await;
    }
}

enum Drained {
    /// The last batch was not full: nothing more is due right now. Rows that failed are due
    /// again in `retry_due_in` (no notification will announce them).
    Idle {
        retry_due_in: Option<Duration>,
    },
    BrokerLost,
}

async fn pause(backoff: &mut Backoff, shutdown: &mut Shutdown, target: &Target, why: &str) {
    let delay = backoff.next_delay();
    tracing::warn!(database = %target.name, error = why, ?delay, "relay backing off");
    metrics::counter!("relay_errors_total", SERVICE => NAME, "database" => target.name.clone())
        .increment(1);
    tokio::select! {
        _ = tokio::time::sleep(delay) => {}
        _ = shutdown.wait() => {}
    }
}

async fn drain(
    target: &Target,
    settings: &RelaySettings,
    publisher: &Publisher,
    shutdown: &Shutdown,
    retry_pending: &mut bool,
) -> anyhow::Result<Drained> {
    loop {
        let report = relay_batch(target, settings, publisher).await?;
        if report.unknown > 0 {
            return Ok(Drained::BrokerLost);
        }
        if report.rejected > 0 {
            *retry_pending = true;
        }
        let full = i64::try_from(report.claimed).unwrap_or(i64::MAX) >= settings.batch_size;
        if full {
            target.wake.notify_one();
        }
        // A short batch that published a saga's event whose next one waits (claimed one per
        // saga) is no sign of an empty outbox: go on, the next claim finds that row.
        if !(full || report.unblocked) || shutdown.is_triggered() {
            if !*retry_pending {
                return Ok(Drained::Idle { retry_due_in: None });
            }
            let mut conn = target.pool.get().await?;
            let retry_due_in = store::next_retry_at(&mut conn)
                .await?
                .map(|at| (at - chrono::Utc::now()).to_std().unwrap_or_default());
            *retry_pending = retry_due_in.is_some();
            return Ok(Drained::Idle { retry_due_in });
        }
    }
}

/// One transaction: claim, publish, confirm, mark. It commits without waiting for its WAL
/// flush ([`store::NON_DURABLE_BEGIN`]).
pub async fn relay_batch(
    target: &Target,
    settings: &RelaySettings,
    publisher: &Publisher,
) -> anyhow::Result<BatchReport> {
    let started = Instant::now();
    let notified = target.notified.load(std::sync::atomic::Ordering::SeqCst);
    let mut conn = target.pool.get().await?;
    let conn: &mut AsyncPgConnection = &mut conn;
    AnsiTransactionManager::begin_transaction_sql(conn, store::NON_DURABLE_BEGIN).await?;
    let report = match settle(conn, target, settings, publisher).await {
        Ok(report) => {
            AnsiTransactionManager::commit_transaction(conn).await?;
            report
        }
        Err(err) => {
            // The error says what went wrong; a failed rollback only adds that the connection
            // is broken, which the pool finds out by itself.
            let _ = AnsiTransactionManager::rollback_transaction(conn).await;
            return Err(err);
        }
    };
    // Read after the commit: a row notified later finds this batch published when its claimer
    // looks; one notified before may have been skipped by that claimer, so look again here.
    let notified_since = target.notified.load(std::sync::atomic::Ordering::SeqCst) != notified;
    let report = BatchReport {
        unblocked: report.saga_published && (report.followed || notified_since),
        ..report
    };
    if report.claimed > 0 {
        let database = target.name.clone();
        metrics::counter!("relay_published_total", SERVICE => NAME, "database" => database.clone())
            .increment(report.published as u64);
        metrics::histogram!("relay_batch_seconds", SERVICE => NAME, "database" => database)
            .record(started.elapsed().as_secs_f64());
        tracing::debug!(database = %target.name, ?report, "batch relayed");
    }
    Ok(report)
}

/// Inside the batch's transaction: claims, publishes, awaits the confirms, retires what was
/// confirmed and records what was refused.
async fn settle(
    tx: &mut AsyncPgConnection,
    target: &Target,
    settings: &RelaySettings,
    publisher: &Publisher,
) -> anyhow::Result<BatchReport> {
    let store::Claim { rows, followed } = store::claim(tx, settings.batch_size).await?;
    if rows.is_empty() {
        return Ok(BatchReport::default());
    }
    let publish_started = Instant::now();
    let outcomes = publisher.publish(&rows).await;
    metrics::histogram!("relay_confirm_seconds", SERVICE => NAME, "database" => target.name.clone())
        .record(publish_started.elapsed().as_secs_f64());

    let mut report = BatchReport {
        claimed: rows.len(),
        ..BatchReport::default()
    };
    let mut confirmed = Vec::with_capacity(rows.len());
    for (row, outcome) in rows.iter().zip(&outcomes) {
        match outcome {
            Outcome::Confirmed => confirmed.push(row.id),
            Outcome::Rejected(reason) => {
                report.rejected += 1;
                let attempt = u32::try_from(row.attempts).unwrap_or(0);
                let retry_in = Duration::from_millis(500)
                    .saturating_mul(2u32.saturating_pow(attempt.min(10)))
                    .min(Duration::from_secs(300));
                tracing::warn!(database = %target.name, event_id = %row.event_id,
                    routing_key = %row.routing_key, %reason, ?retry_in, "publish rejected");
                store::mark_failed(tx, row.id, reason, retry_in).await?;
            }
            Outcome::Unknown(_) => report.unknown += 1,
        }
    }
    if settings.crash_after_confirm && !confirmed.is_empty() {
        tracing::error!("OUTBOX_RELAY_CRASH_AFTER_CONFIRM: exiting before marking");
        std::process::exit(86);
    }
    report.published = if settings.retention.is_zero() {
        store::delete_published(tx, &confirmed).await?
    } else {
        store::mark_published(tx, &confirmed).await?
    };
    report.followed = followed;
    report.saga_published = rows.iter().any(|row| row.saga_id.is_some()) && !confirmed.is_empty();
    Ok(report)
}
