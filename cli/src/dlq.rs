//! `sagactl dlq`: list, show, replay and purge dead letters; replays and purges are audited.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use shared::dlq::ops::ReplayOptions;
use shared::dlq::{DeadLetter, Filter, OperationReport, Operator};

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
    /// Consumers whose dead-letter queues to look at (comma-separated).
    #[arg(long, env = "DLQ_CONSUMERS", default_value = monitor_service::admin::DEFAULT_CONSUMERS, global = true)]
    consumers: String,
    /// Where replays and purges are audited (the monitor's database).
    #[arg(
        long,
        env = "MONITOR_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/saga_monitor",
        global = true
    )]
    audit_database_url: String,
    /// Machine-readable output.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(Debug, Subcommand)]
enum DlqCommand {
    /// Every dead-letter queue with its depth and its (matching) messages.
    List(FilterArgs),
    /// One dead letter's headers and pretty-printed body.
    Show { event_id: String },
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
    /// Delete matching dead letters, after writing them to a file.
    Purge {
        #[command(flatten)]
        filter: FilterArgs,
        #[arg(long)]
        all: bool,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
        /// The file purged messages are written to (JSON lines).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Args)]
struct FilterArgs {
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
        }
    }
}

pub async fn run(args: DlqArgs) -> anyhow::Result<()> {
    let c = &args.connection;
    let consumers = monitor_service::admin::consumers_from(&c.consumers);
    let operator = Operator::connect(&c.amqp_url, &c.prefix, consumers).await?;
    match args.command {
        DlqCommand::List(filter) => {
            let listings = operator.list(&filter.into()).await?;
            if c.json {
                println!("{}", serde_json::to_string_pretty(&listings)?);
            } else {
                for listing in &listings {
                    println!(
                        "{}  depth {}  matching {}",
                        listing.queue,
                        listing.depth,
                        listing.messages.len()
                    );
                    if !listing.messages.is_empty() {
                        print_table(&listing.messages);
                    }
                }
            }
        }
        DlqCommand::Show { event_id } => {
            let Some(letter) = operator.show(&event_id).await? else {
                bail!("no dead letter with event id {event_id}");
            };
            if c.json {
                println!("{}", serde_json::to_string_pretty(&letter)?);
            } else {
                print_letter(&letter);
            }
        }
        DlqCommand::Replay {
            filter,
            all,
            dry_run,
            rate,
        } => {
            let filter: Filter = filter.into();
            require_selection(&filter, all)?;
            let mut audit = audit_connection(&c.audit_database_url).await?;
            let crash_after = crash_point()?;
            let hook = move |moved: usize| {
                if crash_after == Some(moved) {
                    eprintln!(
                        "SAGACTL_CRASH_AFTER_REPLAY_PUBLISH: exiting between confirm and ack"
                    );
                    std::process::exit(86);
                }
            };
            let outcome = operator
                .replay(&filter, ReplayOptions { dry_run, rate }, &hook)
                .await;
            finish(&mut audit, "replay", &filter, outcome, c.json).await?;
        }
        DlqCommand::Purge {
            filter,
            all,
            yes,
            out,
        } => {
            let filter: Filter = filter.into();
            require_selection(&filter, all)?;
            let mut audit = audit_connection(&c.audit_database_url).await?;
            if !yes {
                let preview = operator.list(&filter).await?;
                let count: usize = preview.iter().map(|l| l.messages.len()).sum();
                if !confirm(&format!("purge {count} dead letter(s)?"))? {
                    bail!("not confirmed; nothing purged");
                }
            }
            let out = out.unwrap_or_else(|| {
                PathBuf::from(format!(
                    "dlq-purge-{}.jsonl",
                    Utc::now().format("%Y%m%dT%H%M%SZ")
                ))
            });
            let outcome = operator.purge(&filter, &out).await;
            finish(&mut audit, "purge", &filter, outcome, c.json).await?;
            eprintln!("purged messages written to {}", out.display());
        }
    }
    Ok(())
}

fn require_selection(filter: &Filter, all: bool) -> anyhow::Result<()> {
    if filter.is_everything() && !all {
        bail!("no filter given: pass --all to act on every dead letter");
    }
    Ok(())
}

fn crash_point() -> anyhow::Result<Option<usize>> {
    match std::env::var("SAGACTL_CRASH_AFTER_REPLAY_PUBLISH") {
        Ok(value) => Ok(Some(
            value
                .parse()
                .context("SAGACTL_CRASH_AFTER_REPLAY_PUBLISH")?,
        )),
        Err(_) => Ok(None),
    }
}

async fn audit_connection(url: &str) -> anyhow::Result<AsyncPgConnection> {
    // Before the operation: an operation that cannot be audited is not started. The audit table
    // lives in the monitor's database; make sure it exists even if the monitor never ran.
    shared::db::create_database_if_missing(url).await?;
    shared::db::run_migrations(url, shared::db::OUTBOX_MIGRATIONS).await?;
    shared::db::run_migrations(url, monitor_service::MIGRATIONS).await?;
    AsyncPgConnection::establish(url).await.with_context(|| {
        format!(
            "connecting to the audit database {}",
            shared::db::redact(url)
        )
    })
}

async fn finish(
    audit: &mut AsyncPgConnection,
    operation: &str,
    filter: &Filter,
    outcome: anyhow::Result<OperationReport>,
    json: bool,
) -> anyhow::Result<()> {
    let actor = actor();
    let entry = monitor_service::audit::Entry {
        actor: &actor,
        operation,
        filter,
        report: outcome.as_ref().map_err(|err| format!("{err:#}")),
    };
    monitor_service::audit::record(audit, &entry)
        .await
        .context("writing the audit record")?;
    let report = outcome?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let verb = if report.dry_run {
            "would move"
        } else {
            "moved"
        };
        println!(
            "{operation}: scanned {}, matched {}, {verb} {}, failed {}",
            report.scanned,
            report.matched,
            report.moved.len(),
            report.failed.len()
        );
        for moved in &report.moved {
            println!("  {}  {} -> {}", moved.event_id, moved.from, moved.to);
        }
        for (id, why) in &report.failed {
            println!("  FAILED {id}: {why}");
        }
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

fn print_table(messages: &[DeadLetter]) {
    println!(
        "  {:<36}  {:<26}  {:>6}  {:<20}  {:>3}  {:<25}  ERROR",
        "EVENT ID", "TYPE", "ORDER", "REASON", "TRY", "DEAD-LETTERED"
    );
    for m in messages {
        println!(
            "  {:<36}  {:<26}  {:>6}  {:<20}  {:>3}  {:<25}  {}",
            m.event_id,
            m.event_type.as_deref().unwrap_or("-"),
            m.saga_id.map_or_else(|| "-".into(), |id| id.to_string()),
            m.reason.as_deref().unwrap_or("-"),
            m.attempts.map_or_else(|| "-".into(), |n| n.to_string()),
            m.dead_lettered_at.map_or_else(
                || "-".into(),
                |at| at.format("%Y-%m-%dT%H:%M:%SZ").to_string()
            ),
            m.error
                .as_deref()
                .unwrap_or("")
                .chars()
                .take(60)
                .collect::<String>(),
        );
    }
}

fn print_letter(letter: &DeadLetter) {
    println!("event id:        {}", letter.event_id);
    println!("queue:           {}", letter.queue);
    println!(
        "original queue:  {}",
        letter.original_queue.as_deref().unwrap_or("-")
    );
    println!(
        "reason:          {}",
        letter.reason.as_deref().unwrap_or("-")
    );
    println!(
        "error:           {}",
        letter.error.as_deref().unwrap_or("-")
    );
    println!("headers:");
    for (key, value) in &letter.headers {
        println!("  {key}: {value}");
    }
    println!("body:");
    match letter
        .body
        .as_deref()
        .map(serde_json::from_str::<serde_json::Value>)
    {
        Some(Ok(json)) => println!(
            "{}",
            serde_json::to_string_pretty(&json).unwrap_or_default()
        ),
        Some(Err(_)) => println!("{}", letter.body.as_deref().unwrap_or_default()),
        None => println!(
            "(binary, base64) {}",
            letter.body_base64.as_deref().unwrap_or_default()
        ),
    }
}
