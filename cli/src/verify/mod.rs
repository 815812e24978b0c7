//! `sagactl verify`: checks the invariants of `docs/invariants.md` across the four service
//! databases and the broker, prints a report (text, or one JSON object with `--json`) and exits
//! non-zero on any violation.
//!
//! Orders not yet terminal are reported with their age (a violation only past
//! `--max-in-flight-age`) and left out of the per-order checks, so the tool can run against a
//! system under load; against an idle system every order is checked.
//!
//! - [`rows`]: what is read from each database, one named type per query.
//! - [`checks`]: one function per invariant.

mod checks;
mod rows;

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use diesel_async::AsyncPgConnection;
use serde::Serialize;
use shared::config::{AmqpSettings, PgServer, parse_duration};

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The order service's database (default: saga_order on the PG* server).
    #[arg(long, env = "ORDER_DATABASE_URL", hide_env_values = true)]
    order_db: Option<String>,
    /// The product service's database (default: saga_product on the PG* server).
    #[arg(long, env = "PRODUCT_DATABASE_URL", hide_env_values = true)]
    product_db: Option<String>,
    /// The coupon service's database (default: saga_coupon on the PG* server).
    #[arg(long, env = "COUPON_DATABASE_URL", hide_env_values = true)]
    coupon_db: Option<String>,
    /// The balance service's database (default: saga_balance on the PG* server).
    #[arg(long, env = "BALANCE_DATABASE_URL", hide_env_values = true)]
    balance_db: Option<String>,
    #[command(flatten)]
    server: PgServer,
    #[command(flatten)]
    amqp: AmqpSettings,
    /// Consumers whose dead-letter queues are checked (comma-separated).
    #[arg(long, env = "DLQ_CONSUMERS", default_value = shared::dlq::DEFAULT_CONSUMERS)]
    consumers: String,
    /// An order still in flight after this long is a violation (stuck).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    max_in_flight_age: Duration,
    /// An outbox row unpublished for longer than this is a violation.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    max_unpublished_age: Duration,
    /// Dead letters are reported but not counted as violations.
    #[arg(long)]
    allow_dead_letters: bool,
    /// Print the report as one JSON object (`{"ok","notes","violations"}`).
    #[arg(long)]
    json: bool,
}

impl VerifyArgs {
    fn database(&self, given: &Option<String>, service: &str) -> String {
        given
            .clone()
            .unwrap_or_else(|| self.server.service_database_url(service))
    }
}

/// What the checks found.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub ok: bool,
    pub notes: Vec<String>,
    pub violations: Vec<String>,
}

impl Report {
    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.violations.push(what());
        }
    }
}

pub async fn run(args: VerifyArgs) -> anyhow::Result<()> {
    let mut report = verify(&args).await?;
    report.ok = report.violations.is_empty();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for note in &report.notes {
            println!("  {note}");
        }
        for violation in &report.violations {
            println!("VIOLATION: {violation}");
        }
        if report.ok {
            println!("OK: every invariant holds");
        }
    }
    if report.ok {
        Ok(())
    } else {
        anyhow::bail!("{} violation(s)", report.violations.len())
    }
}

async fn connect(url: &str) -> anyhow::Result<AsyncPgConnection> {
    shared::db::connect(url)
        .await
        .with_context(|| format!("connecting to {}", shared::db::redact(url)))
}

/// Reads every database, then runs each invariant's check.
pub async fn verify(args: &VerifyArgs) -> anyhow::Result<Report> {
    let mut report = Report::default();
    let mut dbs = [
        (
            "order",
            connect(&args.database(&args.order_db, "order")).await?,
        ),
        (
            "product",
            connect(&args.database(&args.product_db, "product")).await?,
        ),
        (
            "coupon",
            connect(&args.database(&args.coupon_db, "coupon")).await?,
        ),
        (
            "balance",
            connect(&args.database(&args.balance_db, "balance")).await?,
        ),
    ];
    let [
        (_, order_db),
        (_, product_db),
        (_, coupon_db),
        (_, balance_db),
    ] = &mut dbs;
    let orders = rows::Orders::load(order_db).await?;
    let settled = checks::every_order_ends(&mut report, &orders, args.max_in_flight_age)?;
    checks::stock_matches_completed_orders(&mut report, &orders, &settled, product_db).await?;
    checks::coupons_used_once_by_completed_orders(&mut report, &orders, &settled, coupon_db)
        .await?;
    checks::balances_match_payments(&mut report, &settled, balance_db).await?;
    for (name, conn) in &mut dbs {
        checks::outbox_drained(&mut report, name, conn, args.max_unpublished_age).await?;
    }
    let consumers = shared::dlq::consumers_from(&args.consumers);
    checks::no_dead_letters(&mut report, &args.amqp, consumers, args.allow_dead_letters).await?;
    Ok(report)
}
