//! Wakes the claim loops at commit time through LISTEN/NOTIFY on the outbox trigger's channel.
//!
//! Every signal, including [`Signal::Reconnected`], wakes one idle claim loop (or the next to
//! become idle), which then queries for whatever is pending: that is how rows committed while
//! the listener was down get published before the fallback poll.

use std::sync::Arc;
use std::time::Duration;

use shared::notify::{Signal, listen};
use shared::shutdown::Shutdown;
use tokio::sync::mpsc;

use crate::worker::Target;

/// The channel the outbox trigger notifies (see the outbox migration).
pub const CHANNEL: &str = "outbox_pending";

/// Listens on `url`, the target's database on a session of its own (a LISTEN does not survive
/// a transaction-pooling PgBouncer, which hands the session to someone else after each
/// statement), until `shutdown`.
pub async fn run(target: Arc<Target>, url: String, health_interval: Duration, shutdown: Shutdown) {
    let (tx, mut rx) = mpsc::channel::<Signal>(64);
    let listener = tokio::spawn(listen(url, CHANNEL, tx, health_interval, shutdown));
    while let Some(signal) = rx.recv().await {
        if signal == Signal::Reconnected {
            tracing::debug!(database = %target.name, "outbox listener connected");
        }
        target
            .notified
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        target.wake.notify_one();
    }
    let _ = listener.await;
}
