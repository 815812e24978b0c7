//! Order SQL, on the caller's connection so that a state change and its outbox rows share one
//! transaction. Status changes are conditional (`WHERE status = expected`): a saga step applies
//! only to an order in the state it expects, so a late or repeated event changes nothing.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Integer, Numeric};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;
use shared::events::{FailureReason, PricedItem};

use crate::domain::{NewOrder, OrderStatus};
use crate::schema::{order_items, orders};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = orders)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct OrderRow {
    pub id: i64,
    pub user_id: i64,
    pub status: OrderStatus,
    pub user_coupon_id: Option<i64>,
    pub total_amount: Option<Decimal>,
    pub discount_amount: Option<Decimal>,
    pub paid_amount: Option<Decimal>,
    pub failure_code: Option<String>,
    pub failure_reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deadline_at: DateTime<Utc>,
    pub traceparent: Option<String>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = order_items)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct ItemRow {
    pub order_id: i64,
    pub product_id: i64,
    pub quantity: i32,
    pub unit_price: Option<Decimal>,
}

/// How a new order's saga starts: its deadline and the trace it belongs to.
#[derive(Debug, Clone)]
pub struct SagaStart {
    pub deadline_at: DateTime<Utc>,
    pub traceparent: Option<String>,
}

impl SagaStart {
    /// A saga accepted now, whose deadline is `deadline` away.
    pub fn now(deadline: crate::deadline::SagaDeadline, traceparent: Option<String>) -> Self {
        Self {
            deadline_at: deadline.from_now(),
            traceparent,
        }
    }
}

/// Inserts a PENDING order and its lines; returns its id.
pub async fn insert(
    conn: &mut AsyncPgConnection,
    order: &NewOrder,
    idempotency: Option<(&str, &str)>,
    saga: &SagaStart,
) -> QueryResult<i64> {
    let id: i64 = diesel::insert_into(orders::table)
        .values((
            orders::user_id.eq(order.user_id),
            orders::status.eq(OrderStatus::Pending),
            orders::user_coupon_id.eq(order.user_coupon_id),
            orders::idempotency_key.eq(idempotency.map(|(key, _)| key)),
            orders::request.eq(idempotency.map(|(_, request)| request)),
            orders::deadline_at.eq(saga.deadline_at),
            orders::traceparent.eq(saga.traceparent.as_deref()),
        ))
        .returning(orders::id)
        .get_result(conn)
        .await?;
    // One statement text whatever the number of lines, so it stays prepared: a multi-row
    // `INSERT` would be parsed and planned again for every order.
    let (products, quantities): (Vec<i64>, Vec<i32>) = order
        .items
        .iter()
        .map(|line| (line.product_id, line.quantity))
        .unzip();
    shared::db::cached(
        diesel::sql_query(
            "INSERT INTO order_items (order_id, product_id, quantity) \
             SELECT $1, line.product_id, line.quantity \
             FROM unnest($2::bigint[], $3::int[]) AS line (product_id, quantity)",
        )
        .bind::<BigInt, _>(id)
        .bind::<Array<BigInt>, _>(products)
        .bind::<Array<Integer>, _>(quantities),
    )
    .execute(conn)
    .await?;
    Ok(id)
}

/// The order a user created with `key`: its id, the request it stood for, its status.
pub async fn find_by_key(
    conn: &mut AsyncPgConnection,
    user_id: i64,
    key: &str,
) -> QueryResult<Option<(i64, Option<String>, OrderStatus)>> {
    orders::table
        .filter(orders::user_id.eq(user_id))
        .filter(orders::idempotency_key.eq(key))
        .select((orders::id, orders::request, orders::status))
        .first(conn)
        .await
        .optional()
}

pub async fn find(conn: &mut AsyncPgConnection, id: i64) -> QueryResult<Option<OrderRow>> {
    orders::table
        .find(id)
        .select(OrderRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// The order, row-locked until the end of the caller's transaction.
pub async fn lock(conn: &mut AsyncPgConnection, id: i64) -> QueryResult<Option<OrderRow>> {
    orders::table
        .find(id)
        .for_update()
        .select(OrderRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// The lines of the given orders, by order then product.
pub async fn items(conn: &mut AsyncPgConnection, order_ids: &[i64]) -> QueryResult<Vec<ItemRow>> {
    order_items::table
        .filter(order_items::order_id.eq_any(order_ids))
        .order((order_items::order_id, order_items::product_id))
        .select(ItemRow::as_select())
        .load(conn)
        .await
}

/// A page of a user's orders, newest first.
pub async fn list_for_user(
    conn: &mut AsyncPgConnection,
    user_id: i64,
    offset: i64,
    limit: i64,
) -> QueryResult<Vec<OrderRow>> {
    orders::table
        .filter(orders::user_id.eq(user_id))
        .order(orders::id.desc())
        .offset(offset)
        .limit(limit)
        .select(OrderRow::as_select())
        .load(conn)
        .await
}

/// PENDING → COMPLETED with the amounts and prices the saga settled on; returns when the
/// order was accepted, or `None` if it was not PENDING.
pub async fn complete(
    conn: &mut AsyncPgConnection,
    id: i64,
    priced: &[PricedItem],
    total: Decimal,
    discount: Decimal,
    paid: Decimal,
) -> QueryResult<Option<DateTime<Utc>>> {
    let accepted_at: Option<DateTime<Utc>> = shared::db::cached(
        diesel::update(
            orders::table
                .find(id)
                .filter(orders::status.eq(OrderStatus::Pending)),
        )
        .set((
            orders::status.eq(OrderStatus::Completed),
            orders::total_amount.eq(total),
            orders::discount_amount.eq(discount),
            orders::paid_amount.eq(paid),
            orders::updated_at.eq(diesel::dsl::now),
        ))
        .returning(orders::created_at),
    )
    .get_result(conn)
    .await
    .optional()?;
    if accepted_at.is_none() {
        return Ok(None);
    }
    // Every line's price in one statement (a line's product appears once in an order).
    let (products, prices): (Vec<i64>, Vec<Decimal>) = priced
        .iter()
        .map(|item| (item.product_id, item.unit_price))
        .unzip();
    shared::db::cached(
        diesel::sql_query(
            "UPDATE order_items SET unit_price = priced.unit_price \
             FROM unnest($2::bigint[], $3::numeric[]) AS priced (product_id, unit_price) \
             WHERE order_items.order_id = $1 AND order_items.product_id = priced.product_id",
        )
        .bind::<BigInt, _>(id)
        .bind::<Array<BigInt>, _>(products)
        .bind::<Array<Numeric>, _>(prices),
    )
    .execute(conn)
    .await?;
    Ok(accepted_at)
}

/// PENDING → FAILED with the reason; returns when the order was accepted, or `None` if it was
/// not PENDING.
pub async fn fail(
    conn: &mut AsyncPgConnection,
    id: i64,
    reason: &FailureReason,
) -> QueryResult<Option<DateTime<Utc>>> {
    shared::db::cached(
        diesel::update(
            orders::table
                .find(id)
                .filter(orders::status.eq(OrderStatus::Pending)),
        )
        .set((
            orders::status.eq(OrderStatus::Failed),
            orders::failure_code.eq(&reason.code),
            orders::failure_reason.eq(&reason.message),
            orders::updated_at.eq(diesel::dsl::now),
        ))
        .returning(orders::created_at),
    )
    .get_result(conn)
    .await
    .optional()
}

/// `from` → `to`; returns when the order was accepted, or `None` if it was not in `from`.
pub async fn transition(
    conn: &mut AsyncPgConnection,
    id: i64,
    from: OrderStatus,
    to: OrderStatus,
) -> QueryResult<Option<DateTime<Utc>>> {
    shared::db::cached(
        diesel::update(orders::table.find(id).filter(orders::status.eq(from)))
            .set((
                orders::status.eq(to),
                orders::updated_at.eq(diesel::dsl::now),
            ))
            .returning(orders::created_at),
    )
    .get_result(conn)
    .await
    .optional()
}
