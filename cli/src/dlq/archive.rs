//! `sagactl dlq archive`: the messages purges removed, kept in the monitor's database; list
//! them, and restore them to the dead-letter queue they were purged from (audited).

use clap::Subcommand;
use shared::dlq::{self, Action, ArchiveQuery, AuditTrail, Operator, Request};

use super::filter::FilterArgs;
use super::{Connection, actor, audit_connection, finish, refused, render};

#[derive(Debug, Subcommand)]
pub(super) enum ArchiveCommand {
    /// Archived messages, newest purge first (not those restored, unless --restored).
    List {
        #[command(flatten)]
        filter: FilterArgs,
        /// Include the messages restored already.
        #[arg(long)]
        restored: bool,
        /// At most this many.
        #[arg(
            long,
            default_value_t = 100,
            value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..)
        )]
        limit: usize,
    },
    /// Put matching archived messages back into their dead-letter queue (each once).
    Restore {
        #[command(flatten)]
        filter: FilterArgs,
        /// Restore every archived message (required when no filter is given).
        #[arg(long)]
        all: bool,
    },
}

/// Runs one `sagactl dlq archive` command.
pub(super) async fn run(
    operator: &Operator,
    c: &Connection,
    command: ArchiveCommand,
) -> anyhow::Result<()> {
    match command {
        ArchiveCommand::List {
            filter,
            restored,
            limit,
        } => {
            let mut conn = audit_connection(&c.audit_database()).await?;
            let query = ArchiveQuery {
                filter: filter.into(),
                restored,
                limit,
            };
            let archived = operator.archived(&mut conn, &query).await?;
            if c.json {
                println!("{}", serde_json::to_string_pretty(&archived)?);
            } else {
                render::archived(&archived);
            }
            Ok(())
        }
        ArchiveCommand::Restore { filter, all } => {
            let request = Request {
                actor: actor(),
                filter: filter.into(),
                all,
                action: Action::Restore,
            };
            // Refused before the database is touched.
            request.check().map_err(refused)?;
            let mut conn = audit_connection(&c.audit_database()).await?;
            let outcome = dlq::execute(
                operator,
                AuditTrail::Connection(&mut conn),
                &request,
                &|_| {},
            )
            .await;
            finish("restore", outcome, c.json)
        }
    }
}
