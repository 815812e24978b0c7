//! Long-poll waiters: `GET /orders/{id}?wait_ms=` parks on a per-order [`Notify`] that the
//! status listener fires when the order's row changes.
//!
//! The listener LISTENs on the `order_status` channel that the orders trigger notifies at
//! commit, so a change committed by any order-service instance wakes waiters on all of them.
//! After a listener reconnect every waiter is woken to re-read its order (notifications sent
//! while disconnected are lost).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shared::notify::{Signal, listen as pg_listen};
use shared::shutdown::Shutdown;
use tokio::sync::{Notify, mpsc};

pub const CHANNEL: &str = "order_status";

/// Order id → the waiters parked on it.
#[derive(Default)]
pub struct Waiters {
    parked: Mutex<HashMap<i64, Arc<Notify>>>,
}

impl std::fmt::Debug for Waiters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Waiters")
    }
}

/// A waiter's registration; dropping it unregisters.
pub struct Parked<'a> {
    waiters: &'a Waiters,
    order_id: i64,
    pub notify: Arc<Notify>,
}

impl Waiters {
    /// Parks on `order_id`. Create the `notified()` future (and `enable` it) before re-reading
    /// the order, so a change committed in between is not missed.
    pub fn park(&self, order_id: i64) -> Parked<'_> {
        let notify = self
            .lock()
            .entry(order_id)
            .or_insert_with(|| Arc::new(Notify::new()))
            .clone();
        Parked {
            waiters: self,
            order_id,
            notify,
        }
    }

    pub fn wake(&self, order_id: i64) {
        if let Some(notify) = self.lock().get(&order_id) {
            notify.notify_waiters();
        }
    }

    pub fn wake_all(&self) {
        for notify in self.lock().values() {
            notify.notify_waiters();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Arc<Notify>>> {
        // A poisoned map only means a waiter panicked mid-insert; the map itself is fine.
        self.parked
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        let mut parked = self.waiters.lock();
        // The map holds one reference and this waiter another: nobody else waits on it.
        if Arc::strong_count(&self.notify) <= 2 {
            parked.remove(&self.order_id);
        }
    }
}

/// Dispatches `order_status` notifications to waiters until shutdown.
pub async fn listen(
    waiters: Arc<Waiters>,
    url: String,
    health_interval: Duration,
    shutdown: Shutdown,
) {
    let (tx, mut rx) = mpsc::channel(1024);
    let listener = tokio::spawn(pg_listen(url, CHANNEL, tx, health_interval, shutdown));
    while let Some(signal) = rx.recv().await {
        match signal {
            Signal::Notified(payload) => match payload.parse::<i64>() {
                Ok(order_id) => waiters.wake(order_id),
                Err(_) => tracing::warn!(%payload, "unexpected order_status payload"),
            },
            Signal::Reconnected => waiters.wake_all(),
        }
    }
    let _ = listener.await;
}
