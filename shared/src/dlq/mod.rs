//! Dead-letter operations: list, show, summarize, replay and purge the dead-letter queues, and
//! list and restore the archive of purged messages. This module owns them whole: the
//! operation, its guard and its audit. `sagactl dlq` and the
//! monitor's admin API only build a [`Request`], call [`execute`] (or a reading operation of
//! [`Operator`]) and render what it returns.
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
//!   replayed copy applies exactly once. The dead letters of one saga are replayed in the
//!   order they were produced, whatever order they were dead-lettered in.
//! - purge commits the message to the archive (the monitor's `dlq_archive` table; a file as
//!   well when asked) before acking. Killed in between, the message is still in its queue and
//!   in the archive; purged again, its archive row is rewritten, not doubled.
//! - restore publishes an archived message back to its dead-letter queue, waits for the
//!   confirm, and only then marks it restored (`restore.rs` says why in that order).
//!
//! - [`message`]: a dead letter as read from its queue, and the filter operations take.
//! - [`operator`]: the broker session, the consumer list, and the reading operations.
//! - [`summary`]: the dead letters grouped by queue, event type and error class ([`class`]),
//!   each group with a short id that `Filter::group` selects by.
//! - [`operation`]: the one replay, purge or restore, [`execute`], and what it reports.
//! - [`guard`]: what an operation must satisfy before anything moves.
//! - [`audit`]: the `dlq_audit` row and the `audit` log line of every operation.
//! - [`archive`]: the table of purged messages, and listing it.
//! - `snapshot`, `replay`, `purge`, `restore`: reading without taking, and the ways of moving.

pub mod archive;
pub mod audit;
pub mod class;
pub mod guard;
pub mod message;
pub mod operation;
pub mod operator;
mod purge;
mod replay;
mod restore;
mod snapshot;
pub mod summary;

pub use archive::{ArchiveQuery, Archived};
pub use audit::{AuditError, AuditTrail};
pub use guard::Refusal;
pub use message::{DeadLetter, Filter};
pub use operation::{Action, Moved, OperationError, OperationReport, Request, execute};
pub use operator::{DEFAULT_CONSUMERS, Listing, Operator, consumers_from};
pub use replay::ReplayOptions;
pub use snapshot::MAX_PER_RUN;
pub use summary::{Group, Summary};
