//! The one replay, purge or restore. A front end (`sagactl dlq`, the monitor's admin API)
//! builds a [`Request`]; [`execute`] passes it through the guard, moves the messages and writes
//! the audit record, failures included; the front end renders what it returns.

use std::path::PathBuf;

use serde::Serialize;

use super::audit::{self, AuditError, AuditTrail, Entry};
use super::guard::Refusal;
use super::message::Filter;
use super::operator::Operator;
use super::purge::Purge;
use super::replay::ReplayOptions;

/// A replay, purge or restore as a front end asks for it.
#[derive(Debug, Clone)]
pub struct Request {
    /// Who asks, as the audit trail records it (`user@host (sagactl)`, `admin-api <peer>`).
    pub actor: String,
    /// Which dead letters.
    pub filter: Filter,
    /// Consent to act on every dead letter: required when `filter` narrows nothing.
    pub all: bool,
    /// What to do with them.
    pub action: Action,
}

/// What a request does with the dead letters it selects.
#[derive(Debug, Clone)]
pub enum Action {
    /// Send them back to the queue they were dead-lettered from.
    Replay(ReplayOptions),
    /// Delete them after keeping them in the archive (`dlq_archive`) and, with a `dump`, in
    /// that file too (JSON lines); refused unless `confirmed`.
    Purge {
        dump: Option<PathBuf>,
        confirmed: bool,
    },
    /// Put the archived messages the filter selects (and not restored yet) back into the
    /// dead-letter queues they were purged from.
    Restore,
}

impl Action {
    /// The operation's name, as the audit trail records it: `replay`, `purge` or `restore`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Replay(_) => "replay",
            Self::Purge { .. } => "purge",
            Self::Restore => "restore",
        }
    }
}

/// A message an operation moved (replayed, purged or restored).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Moved {
    /// Its event id.
    pub event_id: String,
    /// The dead-letter queue it was in (`dlq_archive` for a restore).
    pub from: String,
    /// The queue a replay or restore sent it to; for a purge `dlq_archive` (and the file, when
    /// it wrote one).
    pub to: String,
}

/// What a replay, purge or restore did.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct OperationReport {
    /// Messages read from the selected queues.
    pub scanned: usize,
    /// Those that matched the filter.
    pub matched: usize,
    /// True when nothing was moved on purpose (`moved` is what would have moved).
    pub dry_run: bool,
    /// Messages moved, in order.
    pub moved: Vec<Moved>,
    /// Messages that matched but stayed put: `[event id, why]` pairs.
    #[schema(value_type = Vec<Vec<String>>)]
    pub failed: Vec<(String, String)>,
}

/// Why a replay or purge did not return a report; the variant tells a front end how to answer.
#[derive(Debug, thiserror::Error)]
pub enum OperationError {
    /// The guard refused the request: nothing was read, moved or audited.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The audit record could not be written. The operation ran; its outcome is in the `audit`
    /// log line.
    #[error("writing the audit record")]
    Audit(#[source] AuditError),
    /// The operation stopped on an error; it is audited as `failed`.
    #[error(transparent)]
    Failed(anyhow::Error),
    /// The filter names a group and nothing matched: most likely the group was handled
    /// already, or the id is a typo; audited (it moved nothing), yet not a success, because an
    /// operator who asked for a group expects it to be there.
    #[error("group {group} selects nothing to {operation}")]
    EmptyGroup {
        group: String,
        operation: &'static str,
    },
}

/// Runs `request` on `operator`: the guard first, then the replay, purge or restore, then its
/// record in `trail` (and the `audit` log line), whatever the outcome. A purge archives and a
/// restore reads the archive through `trail`'s database, the monitor's. `after_confirm(n)` runs
/// between a replay's n-th confirm and its ack, and once between a purge's archive commit and
/// its acks (`n` = messages archived): fault-injection points for tests.
///
/// A report with `failed` entries is a partial success: `Ok`, audited as `partial`.
pub async fn execute(
    operator: &Operator,
    mut trail: AuditTrail<'_>,
    request: &Request,
    after_confirm: &(dyn Fn(usize) + Sync),
) -> Result<OperationReport, OperationError> {
    request.check()?;
    let filter = &request.filter;
    let outcome = match &request.action {
        Action::Replay(options) => operator.replay(filter, *options, after_confirm).await,
        Action::Purge { dump, .. } => match trail.connection().await {
            Ok(mut conn) => {
                let purge = Purge {
                    actor: &request.actor,
                    dump: dump.as_deref(),
                    after_archive: after_confirm,
                };
                operator.purge(&mut conn, filter, &purge).await
            }
            Err(err) => Err(anyhow::Error::new(err)),
        },
        Action::Restore => match trail.connection().await {
            Ok(mut conn) => operator.restore(&mut conn, filter, &request.actor).await,
            Err(err) => Err(anyhow::Error::new(err)),
        },
    };
    let entry = Entry {
        actor: &request.actor,
        operation: request.action.name(),
        filter,
        report: outcome.as_ref().map_err(|err| format!("{err:#}")),
    };
    audit::record(trail, &entry)
        .await
        .map_err(OperationError::Audit)?;
    let report = outcome.map_err(OperationError::Failed)?;
    match &filter.group {
        Some(group) if report.matched == 0 => Err(OperationError::EmptyGroup {
            group: group.clone(),
            operation: request.action.name(),
        }),
        _ => Ok(report),
    }
}
