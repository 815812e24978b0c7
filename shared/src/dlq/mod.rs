//! Dead-letter operations: list, show, replay and purge the dead-letter queues.
//!
//! A dead-letter queue is read by taking a snapshot of its depth and consuming that many
//! messages on one channel *without* acknowledging them. What an operation keeps (a listed
//! message, one that does not match a filter) is simply never acked: closing the channel returns
//! it to the queue in its original order. What it moves is acked only after its copy is safe:
//!
//! - replay publishes the copy to the queue it was dead-lettered from, waits for the broker's
//!   confirm, and only then acks the dead letter. Killed in between, the dead letter is still
//!   there and the copy may be too: a duplicate, which the consumer's inbox absorbs. A dead
//!   letter was never committed by its consumer (its inbox claim rolled back with it), so the
//!   replayed copy applies exactly once.
//! - purge writes the message to a file and syncs it before acking.
//!
//! - [`message`]: a dead letter as read from its queue, and the filter operations take.
//! - [`ops`]: the operations.

pub mod message;
pub mod ops;

pub use message::{DeadLetter, Filter};
pub use ops::{Listing, Moved, OperationReport, Operator};
