//! Wakes the claim loops at commit time through LISTEN/NOTIFY.
//!
//! NOTIFY is not a queue: notifications sent while this connection is down are gone. So after
//! every (re)connect the listener wakes the claim loops unconditionally, and they query for
//! whatever is pending. A connection that silently died is caught by a periodic `SELECT 1`.

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures_util::StreamExt;
use shared::backoff::Backoff;
use shared::shutdown::Shutdown;
use tokio::sync::watch;

use crate::worker::Target;

/// The channel the outbox trigger notifies (see the outbox migration).
pub const CHANNEL: &str = "outbox_pending";

pub async fn run(
    target: Arc<Target>,
    wake: watch::Sender<u64>,
    health_interval: Duration,
    mut shutdown: Shutdown,
) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    while !shutdown.is_triggered() {
        match listen(&target, &wake, health_interval, &mut shutdown).await {
            Ok(()) => return,
            Err(err) => {
                let delay = backoff.next_delay();
                tracing::warn!(database = %target.name, error = format!("{err:#}"), ?delay,
                    "outbox listener lost its connection");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.wait() => return,
                }
            }
        }
    }
}

/// Listens until shutdown (`Ok`) or until the connection fails (`Err`).
async fn listen(
    target: &Target,
    wake: &watch::Sender<u64>,
    health_interval: Duration,
    shutdown: &mut Shutdown,
) -> anyhow::Result<()> {
    let mut conn = AsyncPgConnection::establish(&target.url).await?;
    diesel::sql_query(format!("LISTEN {CHANNEL}"))
        .execute(&mut conn)
        .await?;
    // Catch up on anything committed while we were not listening.
    wake.send_modify(|n| *n = n.wrapping_add(1));
    loop {
        enum Event {
            Notified,
            Ended,
            HealthCheck,
            Shutdown,
        }
        let event = {
            let mut notifications = pin!(conn.notifications_stream());
            tokio::select! {
                next = notifications.next() => match next {
                    Some(Ok(_)) => Event::Notified,
                    Some(Err(_)) | None => Event::Ended,
                },
                _ = tokio::time::sleep(health_interval) => Event::HealthCheck,
                _ = shutdown.wait() => Event::Shutdown,
            }
        };
        match event {
            Event::Notified => wake.send_modify(|n| *n = n.wrapping_add(1)),
            Event::Ended => anyhow::bail!("notification stream ended"),
            Event::HealthCheck => {
                tokio::time::timeout(
                    health_interval,
                    diesel::sql_query("SELECT 1").execute(&mut conn),
                )
                .await
                .map_err(|_| anyhow::anyhow!("health check timed out"))??;
            }
            Event::Shutdown => return Ok(()),
        }
    }
}
