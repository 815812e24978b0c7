//! What a service need not keep forever, deleted on a timer: every service's expired inbox
//! claims, and whatever else a service adds (the monitor's event-store retention).
//!
//! Deletion goes in bounded batches, each its own short statement on a connection taken from
//! the pool and given back, so a cleanup never holds long locks, never bloats one transaction
//! and never keeps a connection from the consumers for long.

use std::future::Future;
use std::time::Duration;

use crate::config::InboxSettings;
use crate::db::PgPool;
use crate::metrics::SERVICE;
use crate::shutdown::Shutdown;

/// Rows deleted per statement.
pub const BATCH: i64 = 5_000;

/// Runs `job` at once and then every `every` until `shutdown`; at once, so that a process
/// restarted more often than `every` still cleans up. A failed run is logged and retried on
/// the next tick.
pub async fn every<F, Fut>(every: Duration, what: &'static str, mut shutdown: Shutdown, mut job: F)
where
    F: FnMut(Shutdown) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    loop {
        if let Err(err) = job(shutdown.clone()).await {
            tracing::warn!(error = format!("{err:#}"), "{what} failed");
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.wait() => return,
        }
    }
}

/// Deletes `consumer`'s inbox claims older than `window`, batch after batch until one comes
/// back short or `shutdown` is triggered; returns how many.
pub async fn expire_inbox(
    pool: &PgPool,
    consumer: &str,
    window: Duration,
    shutdown: &Shutdown,
) -> anyhow::Result<u64> {
    let cutoff = chrono::Utc::now() - chrono::Duration::from_std(window)?;
    let mut total = 0;
    loop {
        let mut conn = pool.get().await?;
        let deleted = crate::inbox::delete_expired(&mut conn, consumer, cutoff, BATCH).await?;
        total += deleted as u64;
        if i64::try_from(deleted).unwrap_or(i64::MAX) < BATCH || shutdown.is_triggered() {
            return Ok(total);
        }
    }
}

/// The inbox cleanup of `service` (its consumer's claims) until `shutdown`, counted in
/// `inbox_cleaned_total`.
pub async fn inbox_cleanup(
    pool: PgPool,
    service: String,
    settings: InboxSettings,
    shutdown: Shutdown,
) {
    ::metrics::describe_counter!(
        "inbox_cleaned_total",
        "Inbox claims deleted after the deduplication window (INBOX_WINDOW)"
    );
    let counter = ::metrics::counter!("inbox_cleaned_total", SERVICE => service.clone());
    let window = settings.window;
    every(settings.cleanup_interval, "inbox cleanup", shutdown, move |shutdown| {
        let (pool, service, counter) = (pool.clone(), service.clone(), counter.clone());
        async move {
            let deleted = expire_inbox(&pool, &service, window, &shutdown).await?;
            counter.increment(deleted);
            if deleted > 0 {
                tracing::info!(consumer = %service, deleted, ?window, "expired inbox claims deleted");
            }
            Ok(())
        }
    })
    .await
}
