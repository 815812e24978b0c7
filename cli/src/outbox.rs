//! `sagactl outbox pending`: unpublished outbox rows older than a threshold, per service
//! database — the relay's view of trouble.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use serde::Serialize;
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
        #[arg(long, default_value = "30s", value_parser = parse_age)]
        older_than: Duration,
        /// The service databases (comma-separated).
        #[arg(long, env = "RELAY_DATABASE_URLS", default_value = outbox_relay::config::DEFAULT_DATABASE_URLS)]
        database_urls: String,
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
        json,
    } = args.command;
    let mut report = Vec::new();
    for url in database_urls
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
    {
        let (_, name) = shared::db::split_database_url(url)?;
        let mut conn = AsyncPgConnection::establish(url)
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
                "{}: {} unpublished row(s) older than {older_than:?}",
                db.database,
                db.rows.len()
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

fn parse_age(text: &str) -> anyhow::Result<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .with_context(|| format!("{text:?}: expected e.g. 30s"))?;
    Ok(match unit {
        "ms" => Duration::from_millis(number),
        "" | "s" => Duration::from_secs(number),
        "m" => Duration::from_secs(number * 60),
        "h" => Duration::from_secs(number * 3600),
        _ => bail!("{text:?}: the unit must be ms, s, m or h"),
    })
}
