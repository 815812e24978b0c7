//! Product SQL. Every function takes the caller's connection so that a stock change, its ledger
//! row, the inbox claim and the outbox rows share one transaction.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Integer, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;

use crate::schema::{products, stock_movements};

pub const RESERVE: &str = "RESERVE";
pub const RESTORE: &str = "RESTORE";
pub const ADJUST: &str = "ADJUST";

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = products)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct Product {
    pub id: i64,
    pub name: String,
    pub price: Decimal,
    pub stock: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = stock_movements)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct Movement {
    pub id: i64,
    pub product_id: i64,
    pub order_id: Option<i64>,
    pub kind: String,
    pub delta: i32,
    pub stock_after: i32,
    pub created_at: DateTime<Utc>,
}

/// Inserts a product.
pub async fn create(
    conn: &mut AsyncPgConnection,
    name: &str,
    price: Decimal,
    stock: i32,
) -> QueryResult<Product> {
    diesel::insert_into(products::table)
        .values((
            products::name.eq(name),
            products::price.eq(price),
            products::stock.eq(stock),
        ))
        .returning(Product::as_returning())
        .get_result(conn)
        .await
}

/// The product `id`, if any.
pub async fn find(conn: &mut AsyncPgConnection, id: i64) -> QueryResult<Option<Product>> {
    products::table
        .find(id)
        .select(Product::as_select())
        .first(conn)
        .await
        .optional()
}

/// A page of products by id (`limit` rows from `offset`).
pub async fn list(
    conn: &mut AsyncPgConnection,
    offset: i64,
    limit: i64,
) -> QueryResult<Vec<Product>> {
    products::table
        .order(products::id)
        .offset(offset)
        .limit(limit)
        .select(Product::as_select())
        .load(conn)
        .await
}

/// Locks the existing products among `ids` until the end of the transaction and returns them.
/// Always in id order: two orders locking overlapping products then wait for each other instead
/// of deadlocking.
pub async fn lock(conn: &mut AsyncPgConnection, ids: &[i64]) -> QueryResult<Vec<Product>> {
    products::table
        .filter(products::id.eq_any(ids))
        .order(products::id)
        .for_update()
        .select(Product::as_select())
        .load(conn)
        .await
}

/// Adds `delta` (either sign) to the stock of `id` only if the result stays within
/// `0..=ceiling`; returns the product as changed, `None` when it does not exist or the bounds
/// refuse. The bounds are computed here, so the database never evaluates an overflowing sum.
pub async fn change_stock(
    conn: &mut AsyncPgConnection,
    id: i64,
    delta: i32,
    ceiling: i32,
) -> QueryResult<Option<Product>> {
    shared::db::cached(
        diesel::update(
            products::table
                .filter(products::id.eq(id))
                .filter(products::stock.ge(delta.saturating_neg()))
                .filter(products::stock.le(ceiling.saturating_sub(delta))),
        )
        .set((
            products::stock.eq(products::stock + delta),
            products::updated_at.eq(diesel::dsl::now),
        ))
        .returning(Product::as_returning()),
    )
    .get_result(conn)
    .await
    .optional()
}

/// Takes `wanted` (product id → quantity) from the stock of products the caller has locked, with
/// a RESERVE movement for `order_id` each. `Ok(Err(product_id))` names a product whose stock
/// did not cover its quantity; the caller must roll back, as the other products were taken.
pub async fn reserve(
    conn: &mut AsyncPgConnection,
    order_id: i64,
    wanted: &std::collections::BTreeMap<i64, i64>,
) -> QueryResult<Result<(), i64>> {
    let mut changes = Vec::with_capacity(wanted.len());
    for (&product_id, &quantity) in wanted {
        let Ok(quantity) = i32::try_from(quantity) else {
            return Ok(Err(product_id));
        };
        changes.push((product_id, quantity.saturating_neg()));
    }
    move_stock(conn, order_id, RESERVE, &changes).await
}

/// Adds each change's delta (either sign) to its product's stock, keeping it within
/// `0..=i32::MAX`, with a movement of `kind` for `order_id` each: one statement, whatever the
/// number of products, so a step costs one round trip for them all. `Ok(Err(product_id))`
/// names the first product, in the order given, that does not exist or whose bounds refused;
/// the caller must roll back, as the others were changed. The bounds are computed here, so
/// the database never evaluates an overflowing sum.
pub async fn move_stock(
    conn: &mut AsyncPgConnection,
    order_id: i64,
    kind: &str,
    changes: &[(i64, i32)],
) -> QueryResult<Result<(), i64>> {
    let products: Vec<i64> = changes.iter().map(|(id, _)| *id).collect();
    let deltas: Vec<i32> = changes.iter().map(|(_, delta)| *delta).collect();
    let floors: Vec<i32> = deltas.iter().map(|delta| delta.saturating_neg()).collect();
    let ceilings: Vec<i32> = deltas
        .iter()
        .map(|delta| i32::MAX.saturating_sub(*delta))
        .collect();
    let moved: Vec<Moved> = shared::db::cached(
        diesel::sql_query(
            "WITH change AS (SELECT * FROM unnest($1::bigint[], $2::int[], $3::int[], $4::int[]) \
                 AS change (product_id, delta, floor, ceiling)), \
             changed AS (UPDATE products \
                 SET stock = products.stock + change.delta, updated_at = CURRENT_TIMESTAMP \
                 FROM change WHERE products.id = change.product_id \
                 AND products.stock >= change.floor AND products.stock <= change.ceiling \
                 RETURNING products.id, products.stock, change.delta) \
             INSERT INTO stock_movements (product_id, order_id, kind, delta, stock_after) \
             SELECT id, $5, $6, delta, stock FROM changed ORDER BY id \
             RETURNING product_id",
        )
        .bind::<Array<BigInt>, _>(products)
        .bind::<Array<Integer>, _>(deltas)
        .bind::<Array<Integer>, _>(floors)
        .bind::<Array<Integer>, _>(ceilings)
        .bind::<BigInt, _>(order_id)
        .bind::<Text, _>(kind),
    )
    .load(conn)
    .await?;
    let moved: std::collections::HashSet<i64> = moved.into_iter().map(|m| m.product_id).collect();
    Ok(match changes.iter().find(|(id, _)| !moved.contains(id)) {
        Some((refused, _)) => Err(*refused),
        None => Ok(()),
    })
}

#[derive(QueryableByName)]
struct Moved {
    #[diesel(sql_type = BigInt)]
    product_id: i64,
}

/// Records one movement.
pub async fn record(
    conn: &mut AsyncPgConnection,
    product_id: i64,
    order_id: Option<i64>,
    kind: &str,
    delta: i32,
    stock_after: i32,
) -> QueryResult<()> {
    diesel::insert_into(stock_movements::table)
        .values((
            stock_movements::product_id.eq(product_id),
            stock_movements::order_id.eq(order_id),
            stock_movements::kind.eq(kind),
            stock_movements::delta.eq(delta),
            stock_movements::stock_after.eq(stock_after),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// The movements of `kind` for `order_id`, in product id order.
pub async fn order_movements(
    conn: &mut AsyncPgConnection,
    order_id: i64,
    kind: &str,
) -> QueryResult<Vec<Movement>> {
    stock_movements::table
        .filter(stock_movements::order_id.eq(order_id))
        .filter(stock_movements::kind.eq(kind))
        .order(stock_movements::product_id)
        .select(Movement::as_select())
        .load(conn)
        .await
}
