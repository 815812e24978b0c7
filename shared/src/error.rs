//! Error policy, written once.
//!
//! - Startup, relay and consumer plumbing use `anyhow` with `.context(..)`: those errors are only
//!   logged, and the context chain is what an operator needs.
//! - Repositories return typed errors (`diesel::result::Error` or their own enums).
//! - Event handlers return [`HandlerError`], whose variant decides the message's fate: a
//!   transient error is retried with backoff, a permanent one is dead-lettered at once.
//! - HTTP handlers use one `ApiError` enum per service implementing `ResponseError`.

use diesel::result::{DatabaseErrorKind, Error as DieselError};

/// What went wrong while handling one message, classified by what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Worth retrying later: the database was unreachable, a serialization failure or deadlock,
    /// a pool timeout. Retried with increasing delay, dead-lettered when attempts run out.
    #[error("transient: {0:#}")]
    Transient(anyhow::Error),
    /// Retrying cannot help: the payload does not decode, or it breaks an invariant the handler
    /// checks. Dead-lettered at once with this reason.
    #[error("permanent: {0:#}")]
    Permanent(anyhow::Error),
}

impl HandlerError {
    pub fn transient(err: impl Into<anyhow::Error>) -> Self {
        Self::Transient(err.into())
    }

    pub fn permanent(err: impl Into<anyhow::Error>) -> Self {
        Self::Permanent(err.into())
    }

    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Transient(_))
    }
}

/// Every database error is retried: connection loss, serialization failures and deadlocks heal by
/// themselves, and anything else (a constraint a bug violates) is dead-lettered after the bounded
/// retries with the error attached, which is where an operator wants to find it.
impl From<DieselError> for HandlerError {
    fn from(err: DieselError) -> Self {
        let kind = match &err {
            DieselError::DatabaseError(DatabaseErrorKind::SerializationFailure, _) => {
                "serialization failure"
            }
            DieselError::DatabaseError(DatabaseErrorKind::ClosedConnection, _) => {
                "connection closed"
            }
            _ => "database error",
        };
        Self::Transient(anyhow::Error::new(err).context(kind))
    }
}

impl From<crate::db::PoolError> for HandlerError {
    fn from(err: crate::db::PoolError) -> Self {
        Self::Transient(anyhow::Error::new(err).context("database pool"))
    }
}

impl From<serde_json::Error> for HandlerError {
    fn from(err: serde_json::Error) -> Self {
        Self::Permanent(anyhow::Error::new(err).context("payload does not decode"))
    }
}
