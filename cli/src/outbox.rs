//! `sagactl outbox pending`: unpublished outbox rows older than a threshold, per service
//! database — the relay's view of trouble.

use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde::Serialize;
use shared::config::{AmqpSettings, PgServer, parse_duration};
use shared::outbox::UnpublishedRow;

#[derive(Debug, Args)]
pub struct OutboxArgs {
    #[command(subcommand)]
    command: OutboxCommand,
}

#[derive(Debug, Subcommand)]
enum OutboxCommand {
    /// Unpublished rows older than `--older-than`.
    Pending {
        /// Age threshold: 500ms, 30s, 5m, 2h.
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        older_than: Duration,
        /// The service databases (comma-separated); default: the four service databases on the
        /// server the PG* options or DATABASE_BASE_URL name.
        #[arg(
            long,
            env = "RELAY_DATABASE_URLS",
            value_delimiter = ',',
            hide_env_values = true
        )]
        database_urls: Vec<String>,
        #[command(flatten)]
        server: PgServer,
        /// Print the rows as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Serialize)]
struct DatabasePending {
    database: String,
    rows: Vec<UnpublishedRow>,
}

pub async fn run(args: OutboxArgs) -> anyhow::Result<()> {
    let OutboxCommand::Pending {
        older_than,
        database_urls,
        server,
        json,
    } = args.command;
    let mut report = Vec::new();
    let relay = outbox_relay::RelaySettings::new(database_urls, AmqpSettings::from_env());
    for url in &relay.resolved(&server)?.database_urls {
        let (_, name) = shared::db::split_database_url(url)?;
        let mut conn = shared::db::connect(url)
            .await
            .with_context(|| format!("connecting to {}", shared::db::redact(url)))?;
        let rows = shared::outbox::unpublished_rows(&mut conn, older_than, 1000)
            .await
            .with_context(|| format!("reading the outbox of {name}"))?;
        report.push(DatabasePending {
            database: name,
            rows,
        });
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for db in &report {
            println!(
                "{}: {} unpublished row(s) older than {}",
                db.database,
                db.rows.len(),
                humantime::format_duration(older_than)
            );
            for row in &db.rows {
                println!(
                    "  #{:<8} {}  {:<28} order {:<8} since {}  attempts {}  {}",
                    row.id,
                    row.event_id,
                    row.event_type,
                    row.saga_id.map_or_else(|| "-".into(), |id| id.to_string()),
                    row.created_at.format("%Y-%m-%dT%H:%M:%SZ"),
                    row.attempts,
                    row.last_error.as_deref().unwrap_or("")
                );
            }
        }
    }
    Ok(())
}
