//! `sagactl dlq`: list, show, summarize, replay and purge dead letters, and list and restore
//! the archive of purged ones; replays, purges and restores are audited.
//!
//! A thin front end over [`shared::dlq`], which owns the operations, their guard and their
//! audit (the same as the monitor's admin API's): each command builds the request, calls the
//! operation and prints its result.
//!
//! - [`filter`]: the selection options every command shares.
//! - [`archive`]: `sagactl dlq archive list|restore`.
//! - [`render`]: the text output (`--json` prints the operation's own types).

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand};
use diesel_async::AsyncPgConnection;
use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use shared::dlq::{
    self, Action, AuditTrail, Filter, OperationError, OperationReport, Operator, Refusal,
    ReplayOptions, Request, guard,
};
use shared::seal::KeySettings;

mod archive;
mod filter;
mod render;

use filter::FilterArgs;

/// `sagactl dlq`: one command, and the connection options every command shares.
#[derive(Debug, Args)]
pub struct DlqArgs {
    #[command(subcommand)]
    command: DlqCommand,
    #[command(flatten)]
    connection: Connection,
}

#[derive(Debug, Args)]
struct Connection {
    /// The broker.
    #[arg(long, env = "AMQP_URL", default_value = shared::config::DEFAULT_AMQP_URL, global = true)]
    amqp_url: String,
    /// The AMQP name prefix of the system.
    #[arg(long, env = "AMQP_PREFIX", default_value = shared::config::DEFAULT_AMQP_PREFIX, global = true)]
    prefix: String,
    /// TLS towards the broker, for an `amqps://` URL.
    #[command(flatten)]
    tls: shared::config::AmqpTls,
    /// Consumers whose dead-letter queues to look at (comma-separated).
    #[arg(long, env = "DLQ_CONSUMERS", default_value = dlq::DEFAULT_CONSUMERS, global = true)]
    consumers: String,
    /// Where replays and purges are audited (the monitor's database); default: saga_monitor on
    /// the server the PG* variables or DATABASE_BASE_URL name.
    #[arg(
        long,
        env = "MONITOR_DATABASE_URL",
        hide_env_values = true,
        global = true
    )]
    audit_database_url: Option<String>,
    #[command(flatten)]
    server: shared::config::PgServer,
    /// With keys, list and show decrypt the payloads and say whose signature verified.
    #[command(flatten)]
    keys: KeySettings,
    /// Machine-readable output.
    #[arg(long, global = true)]
    json: bool,
}

impl Connection {
    /// The broker as every component names it.
    fn amqp(&self) -> shared::config::AmqpSettings {
        shared::config::AmqpSettings {
            url: self.amqp_url.clone(),
            prefix: self.prefix.clone(),
            tls: self.tls.clone(),
        }
    }

    fn audit_database(&self) -> String {
        self.audit_database_url
            .clone()
            .unwrap_or_else(|| self.server.service_database_url("monitor"))
    }
}

#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// Every dead-letter queue with its depth and its (matching) messages.
    List(FilterArgs),
    /// One dead letter's headers and pretty-printed body.
    Show { event_id: String },
    /// Matching dead letters grouped by queue, event type and error class, with counts.
    Summary(FilterArgs),
    /// Send matching dead letters back to the queue they came from.
    Replay {
        #[command(flatten)]
        filter: FilterArgs,
        /// Replay every dead letter (required when no filter is given).
        #[arg(long)]
        all: bool,
        /// Show what would move, move nothing.
        #[arg(long)]
        dry_run: bool,
        /// At most this many messages per second.
        #[arg(long)]
        rate: Option<f64>,
    },
    /// Delete matching dead letters, after keeping them in the archive (`dlq archive`).
    Purge {
        #[command(flatten)]
        filter: FilterArgs,
        #[arg(long)]
        all: bool,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
        /// Also write the purged messages to this file (JSON lines).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The archive of purged dead letters: list it, restore from it.
    Archive {
        #[command(subcommand)]
        command: archive::ArchiveCommand,
    },
}

/// Runs one `sagactl dlq` command.
pub async fn run(args: DlqArgs) -> anyhow::Result<()> {
    let c = &args.connection;
    let consumers = dlq::consumers_from(&c.consumers);
    let keys = if c.keys.is_empty() {
        None
    } else {
        Some(c.keys.load(None).context("event keys")?)
    };
    let operator = Operator::connect(&c.amqp(), consumers)
        .await?
        .with_keys(keys);
    match args.command {
        DlqCommand::List(filter) => list(&operator, &filter.into(), c.json).await,
        DlqCommand::Show { event_id } => show(&operator, &event_id, c.json).await,
        DlqCommand::Summary(filter) => summary(&operator, &filter.into(), c.json).await,
        DlqCommand::Replay {
            filter,
            all,
            dry_run,
            rate,
        } => {
            replay(
                &operator,
                c,
                filter.into(),
                all,
                ReplayOptions { dry_run, rate },
            )
            .await
        }
        DlqCommand::Purge {
            filter,
            all,
            yes,
            out,
        } => purge(&operator, c, filter.into(), all, yes, out).await,
        DlqCommand::Archive { command } => archive::run(&operator, c, command).await,
    }
}

async fn list(operator: &Operator, filter: &Filter, json: bool) -> anyhow::Result<()> {
    let listings = operator.list(filter).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&listings)?);
        return Ok(());
    }
    render::listings(&listings);
    Ok(())
}

async fn summary(operator: &Operator, filter: &Filter, json: bool) -> anyhow::Result<()> {
    let summary = operator.summary(filter).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        render::summary(&summary);
    }
    Ok(())
}

async fn show(operator: &Operator, event_id: &str, json: bool) -> anyhow::Result<()> {
    let Some(letter) = operator.show(event_id).await? else {
        bail!("no dead letter with event id {event_id}");
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&letter)?);
    } else {
        render::letter(&letter);
    }
    Ok(())
}

async fn replay(
    operator: &Operator,
    c: &Connection,
    filter: Filter,
    all: bool,
    options: ReplayOptions,
) -> anyhow::Result<()> {
    let request = Request {
        actor: actor(),
        filter,
        all,
        action: Action::Replay(options),
    };
    // Refused before the audit database is touched.
    request.check().map_err(refused)?;
    let mut audit = audit_connection(&c.audit_database()).await?;
    let crash_after = crash_point("SAGACTL_CRASH_AFTER_REPLAY_PUBLISH")?
        .map(|n| n.parse::<usize>())
        .transpose()
        .context("SAGACTL_CRASH_AFTER_REPLAY_PUBLISH")?;
    let hook = move |moved: usize| {
        if crash_after == Some(moved) {
            eprintln!("SAGACTL_CRASH_AFTER_REPLAY_PUBLISH: exiting between confirm and ack");
            std::process::exit(86);
        }
    };
    let outcome = dlq::execute(
        operator,
        AuditTrail::Connection(&mut audit),
        &request,
        &hook,
    )
    .await;
    finish("replay", outcome, c.json)
}

async fn purge(
    operator: &Operator,
    c: &Connection,
    filter: Filter,
    all: bool,
    yes: bool,
    out: Option<PathBuf>,
) -> anyhow::Result<()> {
    // Refused before the audit database is touched or a question asked.
    guard::selection(&filter, all).map_err(refused)?;
    let mut audit = audit_connection(&c.audit_database()).await?;
    let confirmed = yes || {
        let preview = operator.list(&filter).await?;
        let count: usize = preview.iter().map(|l| l.messages.len()).sum();
        confirm(&format!("purge {count} dead letter(s)?"))?
    };
    let request = Request {
        actor: actor(),
        filter,
        all,
        action: Action::Purge {
            dump: out.clone(),
            confirmed,
        },
    };
    let crash_after = crash_point("SAGACTL_CRASH_AFTER_ARCHIVE")?;
    let hook = move |archived: usize| {
        if archived > 0 && crash_after.is_some() {
            eprintln!("SAGACTL_CRASH_AFTER_ARCHIVE: exiting between the archive and the acks");
            std::process::exit(86);
        }
    };
    let outcome = dlq::execute(
        operator,
        AuditTrail::Connection(&mut audit),
        &request,
        &hook,
    )
    .await;
    finish("purge", outcome, c.json)?;
    eprintln!("purged messages kept in the archive: sagactl dlq archive list");
    if let Some(out) = out {
        eprintln!("and written to {}", out.display());
    }
    Ok(())
}

/// The guard's refusal in the command line's terms.
fn refused(refusal: Refusal) -> anyhow::Error {
    anyhow!(match refusal {
        Refusal::Unfiltered => "no filter given: pass --all to act on every dead letter",
        Refusal::Rate => "--rate must be a positive number of messages per second",
        Refusal::Unconfirmed => "not confirmed; nothing purged",
        Refusal::Group =>
            "--group takes a group id as `sagactl dlq summary` shows it (10 hex digits)",
    })
}

/// A fault-injection point for tests: the value of `variable`, when set.
fn crash_point(variable: &str) -> anyhow::Result<Option<String>> {
    match std::env::var(variable) {
        Ok(value) => Ok(Some(value)),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(err) => Err(err).context(variable.to_owned()),
    }
}

/// The monitor's migrations, for the audit table; the same directory the monitor embeds, so
/// that `sagactl` needs the monitor's database and not the monitor service.
const MONITOR_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/monitor");

async fn audit_connection(url: &str) -> anyhow::Result<AsyncPgConnection> {
    // Before the operation: an operation that cannot be audited is not started. The audit table
    // lives in the monitor's database; make sure it exists even if the monitor never ran.
    shared::db::create_database_if_missing(url).await?;
    shared::db::run_migrations(url, shared::db::OUTBOX_MIGRATIONS).await?;
    shared::db::run_migrations(url, MONITOR_MIGRATIONS).await?;
    shared::db::connect(url).await.with_context(|| {
        format!(
            "connecting to the audit database {}",
            shared::db::redact(url)
        )
    })
}

/// Renders the operation's report (or answers its error); a partial replay or purge is an
/// error after its report.
fn finish(
    operation: &str,
    outcome: Result<OperationReport, OperationError>,
    json: bool,
) -> anyhow::Result<()> {
    let report = outcome.map_err(|err| match err {
        OperationError::Refused(refusal) => refused(refusal),
        OperationError::Failed(err) => err,
        OperationError::EmptyGroup { group, operation } => anyhow!(
            "group {group} selects nothing to {operation} (handled already, or not this group?): \
             `sagactl dlq summary` lists the groups there are"
        ),
        audit @ OperationError::Audit(_) => anyhow::Error::new(audit),
    })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        render::report(operation, &report);
    }
    if !report.failed.is_empty() {
        bail!(
            "{} message(s) could not be moved and stay dead-lettered",
            report.failed.len()
        );
    }
    Ok(())
}

fn actor() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into());
    format!("{user}@{host} (sagactl)")
}

fn confirm(question: &str) -> anyhow::Result<bool> {
    eprint!("{question} type yes to continue: ");
    std::io::stderr().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(answer.trim() == "yes")
}
