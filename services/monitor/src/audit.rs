//! The audit trail of dead-letter operations, in the monitor's database, and as a log line.

use diesel::prelude::*;
use diesel::sql_types::{Array, Bool, Jsonb, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde::Serialize;
use shared::dlq::{Filter, OperationReport};

/// One replay or purge.
#[derive(Debug, Clone, Serialize)]
pub struct Entry<'a> {
    pub actor: &'a str,
    pub operation: &'a str,
    pub filter: &'a Filter,
    pub report: Result<&'a OperationReport, String>,
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

/// Writes `entry` to `dlq_audit` and logs it (the log line carries the same fields).
pub async fn record(conn: &mut AsyncPgConnection, entry: &Entry<'_>) -> QueryResult<()> {
    let (dry_run, event_ids, details) = match &entry.report {
        Ok(report) => (
            report.dry_run,
            report
                .moved
                .iter()
                .map(|moved| moved.event_id.clone())
                .collect::<Vec<_>>(),
            serde_json::json!({"scanned": report.scanned, "matched": report.matched, "failed": report.failed}),
        ),
        Err(error) => (false, Vec::new(), serde_json::json!({"error": error})),
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
    diesel::sql_query(
        "INSERT INTO dlq_audit (actor, operation, dry_run, filter, event_ids, outcome, details) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind::<Text, _>(entry.actor)
    .bind::<Text, _>(entry.operation)
    .bind::<Bool, _>(dry_run)
    .bind::<Jsonb, _>(filter)
    .bind::<Array<Text>, _>(event_ids)
    .bind::<Text, _>(entry.outcome())
    .bind::<Jsonb, _>(details)
    .execute(conn)
    .await?;
    Ok(())
}
