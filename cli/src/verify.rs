//! `sagactl verify`: checks the invariants of DESIGN.md section 7 across the four service
//! databases and the broker, prints a report and exits non-zero on any violation.
//!
//! Orders not yet terminal are reported with their age (a violation only past
//! `--max-in-flight-age`) and left out of the per-order checks, so the tool can run against a
//! system under load; against an idle system every order is checked.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::Args;
use diesel::sql_types::{BigInt, Nullable, Numeric, Text, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use shared::service::default_database_url;

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[arg(long, env = "ORDER_DATABASE_URL", default_value_t = default_database_url("order"))]
    order_db: String,
    #[arg(long, env = "PRODUCT_DATABASE_URL", default_value_t = default_database_url("product"))]
    product_db: String,
    #[arg(long, env = "COUPON_DATABASE_URL", default_value_t = default_database_url("coupon"))]
    coupon_db: String,
    #[arg(long, env = "BALANCE_DATABASE_URL", default_value_t = default_database_url("balance"))]
    balance_db: String,
    #[arg(long, env = "AMQP_URL", default_value = shared::config::DEFAULT_AMQP_URL)]
    amqp_url: String,
    #[arg(long, env = "AMQP_PREFIX", default_value = shared::config::DEFAULT_AMQP_PREFIX)]
    prefix: String,
    #[arg(long, env = "DLQ_CONSUMERS", default_value = monitor_service::admin::DEFAULT_CONSUMERS)]
    consumers: String,
    /// An order still in flight after this many seconds is a violation (stuck).
    #[arg(long, default_value_t = 60)]
    max_in_flight_age: u64,
    /// Dead letters are reported but not counted as violations.
    #[arg(long)]
    allow_dead_letters: bool,
}

/// What the checks found.
#[derive(Debug, Default)]
pub struct Report {
    pub notes: Vec<String>,
    pub violations: Vec<String>,
}

impl Report {
    fn check(&mut self, ok: bool, what: impl Into<String>) {
        if !ok {
            self.violations.push(what.into());
        }
    }
}

pub async fn run(args: VerifyArgs) -> anyhow::Result<()> {
    let report = verify(&args).await?;
    for note in &report.notes {
        println!("  {note}");
    }
    if report.violations.is_empty() {
        println!("OK: every invariant holds");
        Ok(())
    } else {
        for violation in &report.violations {
            println!("VIOLATION: {violation}");
        }
        anyhow::bail!("{} violation(s)", report.violations.len())
    }
}

#[derive(Debug, diesel::QueryableByName)]
struct OrderRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Nullable<BigInt>)]
    user_coupon_id: Option<i64>,
    #[diesel(sql_type = Nullable<Numeric>)]
    paid_amount: Option<Decimal>,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
}

#[derive(Debug, diesel::QueryableByName)]
struct Pair {
    #[diesel(sql_type = BigInt)]
    a: i64,
    #[diesel(sql_type = BigInt)]
    b: i64,
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(Debug, diesel::QueryableByName)]
struct Amounts {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Numeric)]
    x: Decimal,
    #[diesel(sql_type = Numeric)]
    y: Decimal,
}

#[derive(Debug, diesel::QueryableByName)]
struct Coupon {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    status: String,
    #[diesel(sql_type = Nullable<BigInt>)]
    order_id: Option<i64>,
}

async fn connect(url: &str) -> anyhow::Result<AsyncPgConnection> {
    AsyncPgConnection::establish(url)
        .await
        .with_context(|| format!("connecting to {}", shared::db::redact(url)))
}

pub async fn verify(args: &VerifyArgs) -> anyhow::Result<Report> {
    let mut report = Report::default();
    let mut order_db = connect(&args.order_db).await?;
    let orders: Vec<OrderRow> =
        diesel::sql_query("SELECT id, status, user_coupon_id, paid_amount, created_at FROM orders")
            .load(&mut order_db)
            .await?;
    let items: Vec<Pair> = diesel::sql_query(
        "SELECT order_id AS a, product_id AS b, quantity::bigint AS n FROM order_items",
    )
    .load(&mut order_db)
    .await?;

    // 1. Every order ends; those in flight are reported, and are stuck past the limit.
    let in_flight: Vec<&OrderRow> = orders
        .iter()
        .filter(|o| !matches!(o.status.as_str(), "COMPLETED" | "FAILED" | "CANCELLED"))
        .collect();
    let limit = chrono::Duration::from_std(Duration::from_secs(args.max_in_flight_age))?;
    let oldest = in_flight.iter().map(|o| Utc::now() - o.created_at).max();
    report.notes.push(format!(
        "orders: {} ({} in flight{})",
        orders.len(),
        in_flight.len(),
        oldest
            .map(|age| format!(", oldest {} s", age.num_seconds()))
            .unwrap_or_default()
    ));
    for order in &in_flight {
        report.check(
            Utc::now() - order.created_at <= limit,
            format!("order {} is stuck in {}", order.id, order.status),
        );
    }
    let terminal: HashMap<i64, &OrderRow> = orders
        .iter()
        .filter(|o| !in_flight.iter().any(|f| f.id == o.id))
        .map(|o| (o.id, o))
        .collect();
    let holds = |order: &OrderRow| order.status == "COMPLETED";

    // 2. Stock: what each order holds net in the product ledger is what a COMPLETED order
    //    bought, and nothing for a FAILED or CANCELLED one; the ledger agrees with the stock.
    let mut product_db = connect(&args.product_db).await?;
    let held: Vec<Pair> = diesel::sql_query(
        "SELECT order_id AS a, product_id AS b, (-sum(delta))::bigint AS n FROM stock_movements \
         WHERE order_id IS NOT NULL GROUP BY order_id, product_id",
    )
    .load(&mut product_db)
    .await?;
    let held: HashMap<(i64, i64), i64> = held.into_iter().map(|p| ((p.a, p.b), p.n)).collect();
    for item in &items {
        if let Some(order) = terminal.get(&item.a) {
            let expected = if holds(order) { item.n } else { 0 };
            let actual = held.get(&(item.a, item.b)).copied().unwrap_or(0);
            report.check(
                actual == expected,
                format!(
                    "order {} ({}) holds {actual} of product {}, expected {expected}",
                    item.a, order.status, item.b
                ),
            );
        }
    }
    let drift: Vec<Pair> = diesel::sql_query(
        "SELECT p.id AS a, p.stock::bigint AS b, COALESCE((SELECT m.stock_after FROM stock_movements m \
         WHERE m.product_id = p.id ORDER BY m.id DESC LIMIT 1), p.stock)::bigint AS n FROM products p",
    )
    .load(&mut product_db)
    .await?;
    for product in &drift {
        report.check(
            product.b == product.n,
            format!(
                "product {} has stock {} but its ledger ends at {}",
                product.a, product.b, product.n
            ),
        );
    }
    report.notes.push(format!("products: {}", drift.len()));

    // 3. Coupons: USED iff exactly one COMPLETED order used it.
    let mut coupon_db = connect(&args.coupon_db).await?;
    let coupons: Vec<Coupon> = diesel::sql_query("SELECT id, status, order_id FROM user_coupons")
        .load(&mut coupon_db)
        .await?;
    let by_id: HashMap<i64, &Coupon> = coupons.iter().map(|c| (c.id, c)).collect();
    for coupon in coupons.iter().filter(|c| c.status == "USED") {
        match coupon.order_id.and_then(|id| terminal.get(&id)) {
            Some(order) => report.check(
                holds(order),
                format!(
                    "user coupon {} is USED by order {} which is {}",
                    coupon.id, order.id, order.status
                ),
            ),
            None if coupon
                .order_id
                .is_some_and(|id| in_flight.iter().any(|o| o.id == id)) => {}
            None => report.violations.push(format!(
                "user coupon {} is USED by an unknown order {:?}",
                coupon.id, coupon.order_id
            )),
        }
    }
    let mut users_of: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for order in terminal.values().filter(|o| holds(o)) {
        if let Some(coupon) = order.user_coupon_id {
            users_of.entry(coupon).or_default().push(order.id);
            let used_by_it = by_id
                .get(&coupon)
                .is_some_and(|c| c.status == "USED" && c.order_id == Some(order.id));
            report.check(
                used_by_it,
                format!(
                    "completed order {} used coupon {coupon}, which is not USED by it",
                    order.id
                ),
            );
        }
    }
    for (coupon, orders) in users_of.iter().filter(|(_, orders)| orders.len() > 1) {
        report.violations.push(format!(
            "user coupon {coupon} was used by several completed orders {orders:?}"
        ));
    }
    report.notes.push(format!(
        "user coupons: {} ({} used)",
        coupons.len(),
        coupons.iter().filter(|c| c.status == "USED").count()
    ));

    // 4. Balance: each balance is its history's sum; each order paid exactly its amount, net of
    //    refunds, and nothing when it did not complete.
    let mut balance_db = connect(&args.balance_db).await?;
    let balances: Vec<Amounts> = diesel::sql_query(
        "SELECT b.user_id AS id, b.balance AS x, COALESCE((SELECT sum(CASE h.kind WHEN 'PAYMENT' THEN -h.amount ELSE h.amount END) \
         FROM balance_history h WHERE h.user_id = b.user_id), 0) AS y FROM balances b",
    )
    .load(&mut balance_db)
    .await?;
    for user in &balances {
        report.check(
            user.x == user.y,
            format!(
                "user {} has balance {} but the history sums to {}",
                user.id, user.x, user.y
            ),
        );
    }
    let paid: Vec<Amounts> = diesel::sql_query(
        "SELECT order_id AS id, sum(CASE kind WHEN 'PAYMENT' THEN amount ELSE 0 END) AS x, \
         sum(CASE kind WHEN 'REFUND' THEN amount ELSE 0 END) AS y FROM balance_history \
         WHERE order_id IS NOT NULL GROUP BY order_id",
    )
    .load(&mut balance_db)
    .await?;
    let net: HashMap<i64, Decimal> = paid.iter().map(|p| (p.id, p.x - p.y)).collect();
    for order in terminal.values() {
        let expected = if holds(order) {
            order.paid_amount.unwrap_or_default()
        } else {
            Decimal::ZERO
        };
        let actual = net.get(&order.id).copied().unwrap_or_default();
        report.check(
            actual == expected,
            format!(
                "order {} ({}) paid {actual} net, expected {expected}",
                order.id, order.status
            ),
        );
    }
    report
        .notes
        .push(format!("users with a balance: {}", balances.len()));

    // 5. Nothing left behind: no unpublished outbox row, no dead letter.
    for (name, conn) in [
        ("order", &mut order_db),
        ("product", &mut product_db),
        ("coupon", &mut coupon_db),
        ("balance", &mut balance_db),
    ] {
        let pending = shared::outbox::unpublished(conn, Duration::from_secs(10)).await?;
        report.check(
            pending == 0,
            format!("{name}: {pending} outbox row(s) unpublished for over 10 s"),
        );
    }
    let operator = shared::dlq::Operator::connect(
        &args.amqp_url,
        &args.prefix,
        monitor_service::admin::consumers_from(&args.consumers),
    )
    .await?;
    for queue in operator.queues(&shared::dlq::Filter::default()) {
        let depth = operator.depth(&queue).await?;
        report
            .notes
            .push(format!("{queue}: {depth} dead letter(s)"));
        if !args.allow_dead_letters {
            report.check(depth == 0, format!("{queue} holds {depth} dead letter(s)"));
        }
    }
    Ok(report)
}
