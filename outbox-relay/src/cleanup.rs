//! Deletes published rows once they are older than the retention, in bounded chunks so one
//! cleanup never holds long locks or bloats one transaction.

use std::sync::Arc;

use chrono::Utc;
use shared::shutdown::Shutdown;

use crate::config::RelaySettings;
use crate::store;
use crate::worker::Target;

const CHUNK: i64 = 5_000;

pub async fn run(target: Arc<Target>, settings: Arc<RelaySettings>, mut shutdown: Shutdown) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(settings.cleanup_interval) => {}
            _ = shutdown.wait() => return,
        }
        match clean(&target, &settings, &shutdown).await {
            Ok(0) => {}
            Ok(deleted) => {
                tracing::debug!(database = %target.name, deleted, "published rows cleaned up")
            }
            Err(err) => {
                tracing::warn!(database = %target.name, error = format!("{err:#}"), "outbox cleanup failed")
            }
        }
    }
}

/// Deletes every row published before `now - retention`; returns how many.
pub async fn clean(
    target: &Target,
    settings: &RelaySettings,
    shutdown: &Shutdown,
) -> anyhow::Result<usize> {
    let cutoff = Utc::now() - chrono::Duration::from_std(settings.retention)?;
    let mut conn = target.pool.get().await?;
    let mut total = 0;
    loop {
        let deleted = store::delete_published_before(&mut conn, cutoff, CHUNK).await?;
        total += deleted;
        if i64::try_from(deleted).unwrap_or(i64::MAX) < CHUNK || shutdown.is_triggered() {
            return Ok(total);
        }
    }
}
