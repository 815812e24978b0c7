//! The one replay or purge. A front end (`sagactl dlq`, the monitor's admin API) builds a
//! [`Request`]; [`execute`] passes it through the guard, moves the messages and writes the
//! audit record, failures included; the front end renders what it returns.

use std::path::PathBuf;

use serde::Serialize;

use super::audit::{self, AuditError, AuditTrail, Entry};
use super::guard::Refusal;
use super::message::Filter;
use super::operator::Operator;
use super::replay::ReplayOptions;

/// A replay or purge as a front end asks for it.
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
    /// Delete them after writing them to `dump` (JSON lines); refused unless `confirmed`.
    Purge { dump: PathBuf, confirmed: bool },
}

impl Action {
    /// The operation's name, as the audit trail records it: `replay` or `purge`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Replay(_) => "replay",
            Self::Purge { .. } => "purge",
        }
    }
}

/// A message an operation moved (replayed or purged).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Moved {
    /// Its event id.
    pub event_id: String,
    /// The dead-letter queue it was in.
    pub from: String,
    /// The queue a replay sent it to, or the file a purge wrote it to.
    pub to: String,
}

/// What a replay or purge did.
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
}

/// Runs `request` on `operator`: the guard first, then the replay or purge, then its record in
/// `trail` (and the `audit` log line), whatever the outcome. `after_confirm(n)` runs between a
/// replay's n-th confirm and its ack (a fault-injection point for tests; a purge ignores it).
///
/// A report with `failed` entries is a partial success: `Ok`, audited as `partial`.
pub async fn execute(
    operator: &Operator,
    trail: AuditTrail<'_>,
    request: &Request,
    after_confirm: &(dyn Fn(usize) + Sync),
) -> Result<OperationReport, OperationError> {
    request.check()?;
    let outcome = match &request.action {
        Action::Replay(options) => {
            operator
                .replay(&request.filter, *options, after_confirm)
                .await
        }
        Action::Purge { dump, .. } => operator.purge(&request.filter, dump).await,
    };
    let entry = Entry {
        actor: &request.actor,
        operation: request.action.name(),
        filter: &request.filter,
        report: outcome.as_ref().map_err(|err| format!("{err:#}")),
    };
    audit::record(trail, &entry)
        .await
        .map_err(OperationError::Audit)?;
    outcome.map_err(OperationError::Failed)
}
