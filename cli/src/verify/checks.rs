//! One function per invariant of `docs/invariants.md`; each adds its notes and violations to
//! the report.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use chrono::Utc;
use coupon_service::repo::CouponStatus;
use diesel_async::AsyncPgConnection;
use rust_decimal::Decimal;
use shared::config::AmqpSettings;

use super::Report;
use super::rows::{self, Order, Orders};

/// The orders that have ended, by id; the per-order checks look only at these.
pub type Settled<'a> = HashMap<i64, &'a Order>;

/// Invariant 1: every order ends. Those in flight are reported, and are stuck past `limit`.
pub fn every_order_ends<'a>(
    report: &mut Report,
    orders: &'a Orders,
    limit: Duration,
) -> anyhow::Result<Settled<'a>> {
    let now = Utc::now();
    let limit = chrono::Duration::from_std(limit)?;
    let (in_flight, settled): (Vec<&Order>, Vec<&Order>) = orders
        .orders
        .iter()
        .partition(|order| !order.status.is_terminal());
    let oldest = in_flight.iter().map(|o| now - o.created_at).max();
    report.notes.push(format!(
        "orders: {} ({} in flight{})",
        orders.orders.len(),
        in_flight.len(),
        oldest
            .map(|age| format!(", oldest {} s", age.num_seconds()))
            .unwrap_or_default()
    ));
    for order in &in_flight {
        report.check(now - order.created_at <= limit, || {
            format!("order {} is stuck in {}", order.id, order.status)
        });
    }
    Ok(settled.into_iter().map(|o| (o.id, o)).collect())
}

/// Invariant 2: what each order holds net in the product ledger is what a COMPLETED order
/// bought, and nothing for a FAILED or CANCELLED one; every product's stock is where its
/// ledger ends.
pub async fn stock_matches_completed_orders(
    report: &mut Report,
    orders: &Orders,
    settled: &Settled<'_>,
    conn: &mut AsyncPgConnection,
) -> anyhow::Result<()> {
    let held: HashMap<(i64, i64), i64> = rows::reservations(conn)
        .await?
        .into_iter()
        .map(|r| ((r.order_id, r.product_id), r.held))
        .collect();
    for item in &orders.items {
        let Some(order) = settled.get(&item.order_id) else {
            continue;
        };
        let expected = if order.holds() { item.quantity } else { 0 };
        let actual = held
            .get(&(item.order_id, item.product_id))
            .copied()
            .unwrap_or(0);
        report.check(actual == expected, || {
            format!(
                "order {} ({}) holds {actual} of product {}, expected {expected}",
                order.id, order.status, item.product_id
            )
        });
    }
    let ledgers = rows::stock_ledgers(conn).await?;
    for product in &ledgers {
        report.check(product.stock == product.ledger_end, || {
            format!(
                "product {} has stock {} but its ledger ends at {}",
                product.product_id, product.stock, product.ledger_end
            )
        });
    }
    report.notes.push(format!("products: {}", ledgers.len()));
    Ok(())
}

/// Invariant 3: a user coupon is USED iff exactly one COMPLETED order used it.
pub async fn coupons_used_once_by_completed_orders(
    report: &mut Report,
    orders: &Orders,
    settled: &Settled<'_>,
    conn: &mut AsyncPgConnection,
) -> anyhow::Result<()> {
    let known: HashSet<i64> = orders.orders.iter().map(|o| o.id).collect();
    let coupons = rows::user_coupons(conn).await?;
    let used: Vec<&rows::UserCoupon> = coupons
        .iter()
        .filter(|c| c.status == CouponStatus::Used)
        .collect();
    for coupon in &used {
        match coupon.order_id.map(|id| (id, settled.get(&id))) {
            Some((_, Some(order))) => report.check(order.holds(), || {
                format!(
                    "user coupon {} is USED by order {} which is {}",
                    coupon.id, order.id, order.status
                )
            }),
            // Used by an order still in flight: its saga has not ended yet.
            Some((id, None)) if known.contains(&id) => {}
            unknown => report.violations.push(format!(
                "user coupon {} is USED by an unknown order {:?}",
                coupon.id,
                unknown.map(|(id, _)| id)
            )),
        }
    }
    let used_by: HashSet<(i64, i64)> = used
        .iter()
        .filter_map(|c| c.order_id.map(|order| (c.id, order)))
        .collect();
    let mut users_of: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for order in settled.values().filter(|o| o.holds()) {
        let Some(coupon) = order.user_coupon_id else {
            continue;
        };
        users_of.entry(coupon).or_default().push(order.id);
        report.check(used_by.contains(&(coupon, order.id)), || {
            format!(
                "completed order {} used coupon {coupon}, which is not USED by it",
                order.id
            )
        });
    }
    for (coupon, orders) in users_of.iter().filter(|(_, orders)| orders.len() > 1) {
        report.violations.push(format!(
            "user coupon {coupon} was used by several completed orders {orders:?}"
        ));
    }
    report.notes.push(format!(
        "user coupons: {} ({} used)",
        coupons.len(),
        used.len()
    ));
    Ok(())
}

/// Invariant 4: each balance is its history's sum; each order paid exactly its amount, net of
/// refunds, and nothing when it did not complete.
pub async fn balances_match_payments(
    report: &mut Report,
    settled: &Settled<'_>,
    conn: &mut AsyncPgConnection,
) -> anyhow::Result<()> {
    let ledgers = rows::balance_ledgers(conn).await?;
    for user in &ledgers {
        report.check(user.balance == user.history_sum, || {
            format!(
                "user {} has balance {} but the history sums to {}",
                user.user_id, user.balance, user.history_sum
            )
        });
    }
    let net: HashMap<i64, Decimal> = rows::payments(conn)
        .await?
        .into_iter()
        .map(|p| (p.order_id, p.paid - p.refunded))
        .collect();
    for order in settled.values() {
        let expected = match order.holds() {
            true => order.paid_amount.unwrap_or_default(),
            false => Decimal::ZERO,
        };
        let actual = net.get(&order.id).copied().unwrap_or_default();
        report.check(actual == expected, || {
            format!(
                "order {} ({}) paid {actual} net, expected {expected}",
                order.id, order.status
            )
        });
    }
    report
        .notes
        .push(format!("users with a balance: {}", ledgers.len()));
    Ok(())
}

/// Invariant 5, the outbox half: no row of database `name` left unpublished past `limit`.
pub async fn outbox_drained(
    report: &mut Report,
    name: &str,
    conn: &mut AsyncPgConnection,
    limit: Duration,
) -> anyhow::Result<()> {
    let pending = shared::outbox::unpublished(conn, limit).await?;
    report.check(pending == 0, || {
        format!(
            "{name}: {pending} outbox row(s) unpublished for over {}",
            humantime::format_duration(limit)
        )
    });
    Ok(())
}

/// Invariant 5, the broker half: the dead-letter queues hold nothing (reported only, with
/// `allowed`).
pub async fn no_dead_letters(
    report: &mut Report,
    amqp: &AmqpSettings,
    consumers: Vec<String>,
    allowed: bool,
) -> anyhow::Result<()> {
    let operator = shared::dlq::Operator::connect(amqp, consumers).await?;
    for queue in operator.queues(&shared::dlq::Filter::default()) {
        let depth = operator.depth(&queue).await?;
        report
            .notes
            .push(format!("{queue}: {depth} dead letter(s)"));
        if !allowed {
            report.check(depth == 0, || {
                format!("{queue} holds {depth} dead letter(s)")
            });
        }
    }
    Ok(())
}
