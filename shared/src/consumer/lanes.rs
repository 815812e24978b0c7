//! Lanes: the in-process half of per-saga order. Every delivery of one saga goes to the same
//! lane, and a lane handles one batch at a time in arrival order, so two events of one saga are
//! never handled at the same time and never overtake each other inside an instance. Different
//! sagas spread over the lanes and run in parallel (the partitions do the same across
//! instances: [`crate::amqp::Topology`]).

use std::hash::{Hash, Hasher};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::FutureExt;
use lapin::Channel;
use lapin::message::Delivery;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;

use super::settle::ChannelBroken;
use super::{Context, process};
use crate::amqp;

/// The lanes of one session.
pub(super) struct Lanes {
    senders: Vec<mpsc::UnboundedSender<Delivery>>,
    tasks: Vec<JoinHandle<()>>,
    /// Set on shutdown: a lane finishes its batch in flight and takes no other; what it holds
    /// is returned to the queue when the channel closes.
    stopping: Arc<AtomicBool>,
    /// Spreads deliveries without a saga id.
    next: usize,
    /// Ends the session: a lane is gone.
    broken: Arc<Notify>,
}

impl Lanes {
    /// `count` lanes settling on `publisher`'s copies; a lane whose channel broke notifies
    /// `broken` and stops.
    pub(super) fn start(
        ctx: &Arc<Context>,
        publisher: &Channel,
        broken: &Arc<Notify>,
        count: usize,
    ) -> Self {
        let stopping = Arc::new(AtomicBool::new(false));
        let (senders, tasks) = (0..count.max(1))
            .map(|_| {
                let (sender, receiver) = mpsc::unbounded_channel();
                let lane = Lane {
                    ctx: ctx.clone(),
                    publisher: publisher.clone(),
                    broken: broken.clone(),
                    stopping: stopping.clone(),
                };
                (sender, tokio::spawn(lane.run(receiver)))
            })
            .unzip();
        Self {
            senders,
            tasks,
            stopping,
            next: 0,
            broken: broken.clone(),
        }
    }

    /// Queues `delivery` on its saga's lane. Unbounded, but never more than the prefetch of the
    /// session's consumers is outstanding. A lane that stopped (its channel broke, or it
    /// panicked) drops it and ends the session: the broker redelivers it once the session is
    /// over, and no saga waits forever behind a dead lane.
    pub(super) fn dispatch(&mut self, delivery: Delivery) {
        let headers = delivery.properties.headers().as_ref();
        let index = match amqp::headers::get_i64(headers, amqp::headers::SAGA_ID) {
            Some(saga) => lane_of(saga, self.senders.len()),
            None => {
                self.next = self.next.wrapping_add(1);
                self.next % self.senders.len()
            }
        };
        if self.senders[index].send(delivery).is_err() {
            self.broken.notify_one();
        }
    }

    /// Lets every lane finish the batch it is handling, drops what waits, and returns when all
    /// are done: nothing is left half-handled when the channel closes.
    pub(super) async fn stop(self) {
        self.stopping.store(true, Ordering::SeqCst);
        drop(self.senders);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// The lane of `saga` among `count`: stable for the life of the process.
fn lane_of(saga: i64, count: usize) -> usize {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    saga.hash(&mut hasher);
    usize::try_from(hasher.finish() % u64::try_from(count).unwrap_or(1)).unwrap_or(0)
}

struct Lane {
    ctx: Arc<Context>,
    publisher: Channel,
    broken: Arc<Notify>,
    stopping: Arc<AtomicBool>,
}

impl Lane {
    /// Takes a delivery and whatever else already waits (up to the batch size), handles them as
    /// one batch, repeats: a batch costs no latency.
    async fn run(self, mut receiver: mpsc::UnboundedReceiver<Delivery>) {
        let max = self.ctx.handlers.batch_size();
        while let Some(first) = receiver.recv().await {
            if self.stopping.load(Ordering::SeqCst) {
                return;
            }
            let mut batch = vec![first];
            while batch.len() < max {
                match receiver.try_recv() {
                    Ok(delivery) => batch.push(delivery),
                    Err(_) => break,
                }
            }
            // A panic (a handler's, a library's) must not end the lane silently: its sagas
            // would wait forever. The session ends instead and the broker redelivers.
            let handled = AssertUnwindSafe(process::process(&self.ctx, &self.publisher, batch))
                .catch_unwind()
                .await;
            let reason = match handled {
                Ok(Ok(())) => continue,
                Ok(Err(ChannelBroken(reason))) => reason,
                Err(_) => "a handler panicked".to_owned(),
            };
            tracing::warn!(%reason, queue = %self.ctx.queue,
                "message left unacked; it will be redelivered");
            self.broken.notify_one();
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::lane_of;

    #[test]
    fn a_saga_always_takes_the_same_lane_and_sagas_spread() {
        assert_eq!(lane_of(42, 8), lane_of(42, 8));
        let used: std::collections::HashSet<usize> = (0..1_000).map(|s| lane_of(s, 8)).collect();
        assert_eq!(used.len(), 8);
        assert!((0..1_000).all(|s| lane_of(s, 3) < 3));
    }
}
