//! The selection options of every `sagactl dlq` command, turned into [`Filter`].

use chrono::{DateTime, Utc};
use clap::Args;
use shared::dlq::Filter;

#[derive(Debug, Clone, Args)]
pub(super) struct FilterArgs {
    /// A consumer (`order`) or dead-letter queue name; repeatable.
    #[arg(long = "queue")]
    queues: Vec<String>,
    #[arg(long)]
    event_type: Option<String>,
    #[arg(long)]
    order_id: Option<i64>,
    /// Substring of the reason or error, case-insensitive.
    #[arg(long)]
    reason: Option<String>,
    /// Dead-lettered at or after (RFC 3339).
    #[arg(long)]
    since: Option<DateTime<Utc>>,
    /// Dead-lettered at or before (RFC 3339).
    #[arg(long)]
    until: Option<DateTime<Utc>>,
    /// An event id; repeatable.
    #[arg(long = "id")]
    ids: Vec<String>,
    /// A group id, as `sagactl dlq summary` shows it: one queue, event type and error class.
    #[arg(long)]
    group: Option<String>,
}

impl From<FilterArgs> for Filter {
    fn from(args: FilterArgs) -> Self {
        Filter {
            queues: args.queues,
            event_type: args.event_type,
            order_id: args.order_id,
            reason: args.reason,
            since: args.since,
            until: args.until,
            ids: args.ids,
            group: args.group,
        }
    }
}
