//! What `verify` reads, one named row type per query.

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Nullable, Numeric, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use order_service::domain::OrderStatus;
use rust_decimal::Decimal;

/// An order as the order service recorded it.
#[derive(Debug, diesel::QueryableByName)]
pub struct Order {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = Text)]
    pub status: OrderStatus,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub user_coupon_id: Option<i64>,
    #[diesel(sql_type = Nullable<Numeric>)]
    pub paid_amount: Option<Decimal>,
    #[diesel(sql_type = Timestamptz)]
    pub created_at: DateTime<Utc>,
}

impl Order {
    /// Whether the order keeps what it took (stock, coupon, money).
    pub fn holds(&self) -> bool {
        self.status == OrderStatus::Completed
    }
}

/// One line of an order.
#[derive(Debug, diesel::QueryableByName)]
pub struct OrderItem {
    #[diesel(sql_type = BigInt)]
    pub order_id: i64,
    #[diesel(sql_type = BigInt)]
    pub product_id: i64,
    #[diesel(sql_type = BigInt)]
    pub quantity: i64,
}

/// Every order and its lines.
#[derive(Debug)]
pub struct Orders {
    pub orders: Vec<Order>,
    pub items: Vec<OrderItem>,
}

impl Orders {
    pub async fn load(conn: &mut AsyncPgConnection) -> anyhow::Result<Self> {
        let orders = diesel::sql_query(
            "SELECT id, status, user_coupon_id, paid_amount, created_at FROM orders",
        )
        .load(conn)
        .await?;
        let items = diesel::sql_query(
            "SELECT order_id, product_id, quantity::bigint AS quantity FROM order_items",
        )
        .load(conn)
        .await?;
        Ok(Self { orders, items })
    }
}

/// What an order holds of a product, net, by the product ledger.
#[derive(Debug, diesel::QueryableByName)]
pub struct Reservation {
    #[diesel(sql_type = BigInt)]
    pub order_id: i64,
    #[diesel(sql_type = BigInt)]
    pub product_id: i64,
    #[diesel(sql_type = BigInt)]
    pub held: i64,
}

pub async fn reservations(conn: &mut AsyncPgConnection) -> anyhow::Result<Vec<Reservation>> {
    Ok(diesel::sql_query(
        "SELECT order_id, product_id, (-sum(delta))::bigint AS held FROM stock_movements \
         WHERE order_id IS NOT NULL GROUP BY order_id, product_id",
    )
    .load(conn)
    .await?)
}

/// A product's stock next to where its ledger ends.
#[derive(Debug, diesel::QueryableByName)]
pub struct StockLedger {
    #[diesel(sql_type = BigInt)]
    pub product_id: i64,
    #[diesel(sql_type = BigInt)]
    pub stock: i64,
    #[diesel(sql_type = BigInt)]
    pub ledger_end: i64,
}

pub async fn stock_ledgers(conn: &mut AsyncPgConnection) -> anyhow::Result<Vec<StockLedger>> {
    Ok(diesel::sql_query(
        "SELECT p.id AS product_id, p.stock::bigint AS stock, COALESCE((SELECT m.stock_after \
         FROM stock_movements m WHERE m.product_id = p.id ORDER BY m.id DESC LIMIT 1), p.stock)\
         ::bigint AS ledger_end FROM products p",
    )
    .load(conn)
    .await?)
}

/// A user coupon and the order that used it.
#[derive(Debug, diesel::QueryableByName)]
pub struct UserCoupon {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = Text)]
    pub status: coupon_service::repo::CouponStatus,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub order_id: Option<i64>,
}

pub async fn user_coupons(conn: &mut AsyncPgConnection) -> anyhow::Result<Vec<UserCoupon>> {
    Ok(
        diesel::sql_query("SELECT id, status, order_id FROM user_coupons")
            .load(conn)
            .await?,
    )
}

/// A user's balance next to the sum of its history.
#[derive(Debug, diesel::QueryableByName)]
pub struct BalanceLedger {
    #[diesel(sql_type = BigInt)]
    pub user_id: i64,
    #[diesel(sql_type = Numeric)]
    pub balance: Decimal,
    #[diesel(sql_type = Numeric)]
    pub history_sum: Decimal,
}

pub async fn balance_ledgers(conn: &mut AsyncPgConnection) -> anyhow::Result<Vec<BalanceLedger>> {
    let payment = balance_service::repo::LedgerKind::Payment.as_str();
    Ok(diesel::sql_query(format!(
        "SELECT b.user_id, b.balance, COALESCE((SELECT sum(CASE h.kind WHEN '{payment}' \
         THEN -h.amount ELSE h.amount END) FROM balance_history h WHERE h.user_id = b.user_id), 0) \
         AS history_sum FROM balances b"
    ))
    .load(conn)
    .await?)
}

/// What an order paid and had refunded.
#[derive(Debug, diesel::QueryableByName)]
pub struct Payment {
    #[diesel(sql_type = BigInt)]
    pub order_id: i64,
    #[diesel(sql_type = Numeric)]
    pub paid: Decimal,
    #[diesel(sql_type = Numeric)]
    pub refunded: Decimal,
}

pub async fn payments(conn: &mut AsyncPgConnection) -> anyhow::Result<Vec<Payment>> {
    use balance_service::repo::LedgerKind;
    let (payment, refund) = (LedgerKind::Payment.as_str(), LedgerKind::Refund.as_str());
    Ok(diesel::sql_query(format!(
        "SELECT order_id, sum(CASE kind WHEN '{payment}' THEN amount ELSE 0 END) AS paid, \
         sum(CASE kind WHEN '{refund}' THEN amount ELSE 0 END) AS refunded FROM balance_history \
         WHERE order_id IS NOT NULL GROUP BY order_id"
    ))
    .load(conn)
    .await?)
}
