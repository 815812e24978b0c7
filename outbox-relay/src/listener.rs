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

pub async fn run(target: Arc<Target>, health_interval: Duration, shutdown: Shutdown) {
    let (tx, mut rx) = mpsc::channel::<Signal>(64);
    let listener = tokio::spawn(listen(
        target.url.clone(),
        CHANNEL,
        tx,
        health_interval,
        shutdown,
    ));
    while let Some(signal) = rx.recv().await {
        if signal == Signal::Reconnected {
            tracing::debug!(database = %target.name, "outbox listener connected");
        }
        target.wake.notify_one();
    }
    let _ = listener.await;
}
