//! LISTEN on a PostgreSQL channel, reconnecting forever, for whoever needs commit-time wake-ups.
//!
//! NOTIFY is not a queue: notifications sent while the connection is down are gone. So the
//! listener reports [`Signal::Reconnected`] after every (re)connect, and a subscriber must then
//! query for whatever it may have missed. A silently dead connection is caught by a periodic
//! `SELECT 1`.

use std::pin::pin;
use std::time::Duration;

use diesel_async::RunQueryDsl;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use crate::backoff::Backoff;
use crate::shutdown::Shutdown;

/// What the listener reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// A notification with its payload.
    Notified(String),
    /// The connection was (re)established: anything may have been missed before this.
    Reconnected,
}

/// Listens on `channel` of the database at `url` until `shutdown`, sending every signal to `out`.
/// Returns when shutdown is requested or `out` is closed.
pub async fn listen(
    url: String,
    channel: &'static str,
    out: mpsc::Sender<Signal>,
    health_interval: Duration,
    mut shutdown: Shutdown,
) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    while !shutdown.is_triggered() && !out.is_closed() {
        match session(&url, channel, &out, health_interval, &mut shutdown).await {
            Ok(()) => return,
            Err(err) => {
                let delay = backoff.next_delay();
                tracing::warn!(
                    channel,
                    error = format!("{err:#}"),
                    ?delay,
                    "LISTEN connection lost"
                );
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.wait() => return,
                }
            }
        }
    }
}

/// One connection's life: `Ok` on shutdown, `Err` when the connection fails.
async fn session(
    url: &str,
    channel: &'static str,
    out: &mpsc::Sender<Signal>,
    health_interval: Duration,
    shutdown: &mut Shutdown,
) -> anyhow::Result<()> {
    let mut conn = crate::db::connect(url).await?;
    diesel::sql_query(format!("LISTEN {channel}"))
        .execute(&mut conn)
        .await?;
    if out.send(Signal::Reconnected).await.is_err() {
        return Ok(());
    }
    loop {
        enum Event {
            Notified(String),
            Ended,
            HealthCheck,
            Shutdown,
        }
        let event = {
            let mut notifications = pin!(conn.notifications_stream());
            tokio::select! {
                next = notifications.next() => match next {
                    Some(Ok(notification)) => Event::Notified(notification.payload),
                    Some(Err(_)) | None => Event::Ended,
                },
                _ = tokio::time::sleep(health_interval) => Event::HealthCheck,
                _ = shutdown.wait() => Event::Shutdown,
            }
        };
        match event {
            Event::Notified(payload) => {
                if out.send(Signal::Notified(payload)).await.is_err() {
                    return Ok(());
                }
            }
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
