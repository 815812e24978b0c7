//! The audit trail of dead-letter operations: a `dlq_audit` row per replay, purge or restore
//! (dry runs and failures included) and a log line with target `audit` carrying the same
//! fields. The table lives in the monitor's database (`migrations/monitor`); this is its only
//! writer.

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::message::Filter;
use super::operation::OperationReport;
use crate::db::{PgPool, PoolError};

diesel::table! {
    dlq_audit (id) {
        id -> BigInt,
        at -> Timestamptz,
        actor -> Text,
        operation -> Text,
        dry_run -> Bool,
        filter -> Jsonb,
        event_ids -> Array<Text>,
        outcome -> Text,
        details -> Jsonb,
    }
}

/// The monitor's database, where an operation's audit row is written and the archive a purge
/// writes and a restore reads.
pub enum AuditTrail<'a> {
    /// A connection the caller opened before the operation (`sagactl`: an operation that cannot
    /// be audited is not started).
    Connection(&'a mut AsyncPgConnection),
    /// A pool a connection is taken from when one is needed (the admin API: a replay holds none
    /// while messages move; a purge or restore holds one for the archive).
    Pool(&'a PgPool),
}

impl std::fmt::Debug for AuditTrail<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Connection(_) => "AuditTrail::Connection",
            Self::Pool(_) => "AuditTrail::Pool",
        })
    }
}

/// A connection to the monitor's database, for the audit row and the archive: the caller's, or
/// one taken from its pool.
pub(super) enum Held<'a> {
    Borrowed(&'a mut AsyncPgConnection),
    // Boxed: a pooled connection is large, and one is held at a time.
    Pooled(Box<diesel_async::pooled_connection::deadpool::Object<AsyncPgConnection>>),
}

impl std::ops::Deref for Held<'_> {
    type Target = AsyncPgConnection;
    fn deref(&self) -> &AsyncPgConnection {
        match self {
            Self::Borrowed(conn) => conn,
            Self::Pooled(conn) => conn,
        }
    }
}

impl std::ops::DerefMut for Held<'_> {
    fn deref_mut(&mut self) -> &mut AsyncPgConnection {
        match self {
            Self::Borrowed(conn) => conn,
            Self::Pooled(conn) => conn,
        }
    }
}

impl AuditTrail<'_> {
    /// A connection to the trail's database: the caller's, or a new one from the pool (taken
    /// only now, so that none is held while nothing needs it).
    pub(super) async fn connection(&mut self) -> Result<Held<'_>, AuditError> {
        match self {
            Self::Connection(conn) => Ok(Held::Borrowed(conn)),
            Self::Pool(pool) => Ok(Held::Pooled(Box::new(
                pool.get().await.map_err(AuditError::Pool)?,
            ))),
        }
    }
}

/// Why an audit row could not be written.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// No connection from the pool (database down or pool exhausted).
    #[error("taking an audit database connection")]
    Pool(#[source] PoolError),
    /// The insert failed.
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
}

/// One replay or purge, as recorded.
#[derive(Debug)]
pub(super) struct Entry<'a> {
    pub(super) actor: &'a str,
    pub(super) operation: &'a str,
    pub(super) filter: &'a Filter,
    /// The report, or the error the operation stopped on.
    pub(super) report: Result<&'a OperationReport, String>,
}

impl Entry<'_> {
    fn outcome(&self) -> &'static str {
        match &self.report {
            Ok(report) if report.failed.is_empty() => "ok",
            Ok(_) => "partial",
            Err(_) => "failed",
        }
    }
}

/// Writes `entry` to `dlq_audit` through `trail` and logs it.
pub(super) async fn record(mut trail: AuditTrail<'_>, entry: &Entry<'_>) -> Result<(), AuditError> {
    write(&mut *trail.connection().await?, entry).await
}

/// Logs `entry` (target `audit`), then inserts its row.
async fn write(conn: &mut AsyncPgConnection, entry: &Entry<'_>) -> Result<(), AuditError> {
    let (dry_run, event_ids, details) = match &entry.report {
        Ok(report) => (
            report.dry_run,
            report
                .moved
                .iter()
                .map(|moved| moved.event_id.clone())
                .collect::<Vec<_>>(),
            serde_json::json!({
                "scanned": report.scanned,
                "matched": report.matched,
                "failed": report.failed,
            }),
        ),
        Err(error) => (false, Vec::new(), serde_json::json!({ "error": error })),
    };
    let filter = serde_json::to_value(entry.filter).unwrap_or_default();
    tracing::info!(
        target: "audit",
        actor = entry.actor,
        operation = entry.operation,
        dry_run,
        outcome = entry.outcome(),
        filter = %filter,
        event_ids = ?event_ids,
        "dead-letter operation"
    );
    diesel::insert_into(dlq_audit::table)
        .values((
            dlq_audit::actor.eq(entry.actor),
            dlq_audit::operation.eq(entry.operation),
            dlq_audit::dry_run.eq(dry_run),
            dlq_audit::filter.eq(&filter),
            dlq_audit::event_ids.eq(&event_ids),
            dlq_audit::outcome.eq(entry.outcome()),
            dlq_audit::details.eq(&details),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outcome_is_ok_partial_or_failed() {
        let filter = Filter::default();
        let clean = OperationReport::default();
        let partial = OperationReport {
            failed: vec![("e1".into(), "nack".into())],
            ..OperationReport::default()
        };
        let outcome = |report| {
            Entry {
                actor: "test",
                operation: "replay",
                filter: &filter,
                report,
            }
            .outcome()
        };
        assert_eq!(outcome(Ok(&clean)), "ok");
        assert_eq!(outcome(Ok(&partial)), "partial");
        assert_eq!(outcome(Err("broker gone".into())), "failed");
    }
}
