//! Coupon SQL. Every function takes the caller's connection so that a state change, its usage
//! row, the inbox claim and the outbox rows share one transaction.

use chrono::{DateTime, Utc};
use diesel::dsl::{exists, now};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;

use crate::schema::{coupon_usages, coupons, user_coupons};

shared::text_enum! {
    /// How a coupon's value is taken off an order's total.
    pub enum DiscountType {
        /// A fixed amount.
        Fixed => "FIXED",
        /// A percentage of the total.
        Percent => "PERCENT",
    }
}

shared::text_enum! {
    /// Whether a user coupon can still be used.
    pub enum CouponStatus {
        Available => "AVAILABLE",
        Used => "USED",
    }
}

shared::text_enum! {
    /// An entry of the coupon ledger: an order used a coupon, or gave it back.
    pub enum UsageKind {
        Use => "USE",
        Restore => "RESTORE",
    }
}

/// The unique key that allows one coupon of a kind per user (named in the migration).
pub const ONE_PER_USER: &str = "user_coupons_one_per_user";

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = coupons)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct Coupon {
    pub id: i64,
    pub name: String,
    pub discount_type: DiscountType,
    pub discount_value: Decimal,
    pub total_quantity: i32,
    pub issued_quantity: i32,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = coupons)]
pub struct NewCoupon {
    pub name: String,
    pub discount_type: DiscountType,
    pub discount_value: Decimal,
    pub total_quantity: i32,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = user_coupons)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct UserCoupon {
    pub id: i64,
    pub coupon_id: i64,
    pub user_id: i64,
    pub status: CouponStatus,
    pub order_id: Option<i64>,
    pub used_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// What a coupon is worth and until when: all an order needs of it.
#[derive(Debug, Clone, QueryableByName)]
#[diesel(table_name = coupons)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct Terms {
    pub discount_type: DiscountType,
    pub discount_value: Decimal,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A user coupon locked for an order, with its coupon's terms.
#[derive(Debug, Clone, QueryableByName)]
pub struct Held {
    #[diesel(embed)]
    pub user_coupon: UserCoupon,
    #[diesel(embed)]
    pub terms: Terms,
    /// Past `expires_at` by the database's clock, the one issuing goes by too.
    #[diesel(sql_type = diesel::sql_types::Bool)]
    pub expired: bool,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = coupon_usages)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct Usage {
    pub id: i64,
    pub user_coupon_id: i64,
    pub order_id: i64,
    pub kind: UsageKind,
    pub discount_amount: Decimal,
    pub created_at: DateTime<Utc>,
}

pub async fn create(conn: &mut AsyncPgConnection, coupon: NewCoupon) -> QueryResult<Coupon> {
    diesel::insert_into(coupons::table)
        .values(coupon)
        .returning(Coupon::as_returning())
        .get_result(conn)
        .await
}

pub async fn coupon(conn: &mut AsyncPgConnection, id: i64) -> QueryResult<Option<Coupon>> {
    coupons::table
        .find(id)
        .select(Coupon::as_select())
        .first(conn)
        .await
        .optional()
}

/// Counts one more issued coupon only if some are left and it has not expired (by the
/// database's clock); `None` when it does not. The row lock of the update queues concurrent
/// issues of one coupon, each re-checking the condition on the count the previous one left.
pub async fn take_one(conn: &mut AsyncPgConnection, id: i64) -> QueryResult<Option<Coupon>> {
    diesel::update(
        coupons::table
            .filter(coupons::id.eq(id))
            .filter(coupons::issued_quantity.lt(coupons::total_quantity))
            .filter(
                coupons::expires_at
                    .is_null()
                    .or(coupons::expires_at.gt(now)),
            ),
    )
    .set(coupons::issued_quantity.eq(coupons::issued_quantity + 1))
    .returning(Coupon::as_returning())
    .get_result(conn)
    .await
    .optional()
}

/// Gives `user_id` an `AVAILABLE` coupon; fails on [`ONE_PER_USER`] if they have one already.
pub async fn issue_to(
    conn: &mut AsyncPgConnection,
    coupon_id: i64,
    user_id: i64,
) -> QueryResult<UserCoupon> {
    diesel::insert_into(user_coupons::table)
        .values((
            user_coupons::coupon_id.eq(coupon_id),
            user_coupons::user_id.eq(user_id),
        ))
        .returning(UserCoupon::as_returning())
        .get_result(conn)
        .await
}

/// Whether `user_id` was issued coupon `coupon_id`.
pub async fn holds(
    conn: &mut AsyncPgConnection,
    coupon_id: i64,
    user_id: i64,
) -> QueryResult<bool> {
    diesel::select(exists(
        user_coupons::table
            .filter(user_coupons::coupon_id.eq(coupon_id))
            .filter(user_coupons::user_id.eq(user_id)),
    ))
    .get_result(conn)
    .await
}

pub async fn user_coupon(conn: &mut AsyncPgConnection, id: i64) -> QueryResult<Option<UserCoupon>> {
    user_coupons::table
        .find(id)
        .select(UserCoupon::as_select())
        .first(conn)
        .await
        .optional()
}

/// A page of `user_id`'s coupons with their coupon, newest first (`limit` rows from `offset`).
pub async fn owned(
    conn: &mut AsyncPgConnection,
    user_id: i64,
    offset: i64,
    limit: i64,
) -> QueryResult<Vec<(UserCoupon, Coupon)>> {
    user_coupons::table
        .inner_join(coupons::table)
        .filter(user_coupons::user_id.eq(user_id))
        .order(user_coupons::id.desc())
        .offset(offset)
        .limit(limit)
        .select((UserCoupon::as_select(), Coupon::as_select()))
        .load(conn)
        .await
}

/// Locks user coupon `id` until the transaction ends and reads its terms. Only the user
/// coupon's row is locked (`FOR UPDATE OF`, which diesel's query builder cannot express): locking
/// the coupon's row too would queue every order and every issue of a popular coupon behind
/// each other.
pub async fn lock_for_order(conn: &mut AsyncPgConnection, id: i64) -> QueryResult<Option<Held>> {
    shared::db::cached(
        diesel::sql_query(
            "SELECT uc.id, uc.coupon_id, uc.user_id, uc.status, uc.order_id, uc.used_at, \
                uc.created_at, c.discount_type, c.discount_value, c.expires_at, \
                coalesce(c.expires_at <= now(), false) AS expired \
         FROM user_coupons uc JOIN coupons c ON c.id = uc.coupon_id \
         WHERE uc.id = $1 \
         FOR UPDATE OF uc",
        )
        .bind::<diesel::sql_types::BigInt, _>(id),
    )
    .get_result(conn)
    .await
    .optional()
}

/// Marks user coupon `id` used by `order_id` if it is `AVAILABLE`; whether it was.
pub async fn mark_used(conn: &mut AsyncPgConnection, id: i64, order_id: i64) -> QueryResult<bool> {
    let updated = shared::db::cached(
        diesel::update(
            user_coupons::table
                .filter(user_coupons::id.eq(id))
                .filter(user_coupons::status.eq(CouponStatus::Available)),
        )
        .set((
            user_coupons::status.eq(CouponStatus::Used),
            user_coupons::order_id.eq(order_id),
            user_coupons::used_at.eq(now),
        )),
    )
    .execute(conn)
    .await?;
    Ok(updated == 1)
}

/// Makes user coupon `id` `AVAILABLE` again if `order_id` is the order using it; whether it was.
pub async fn release(conn: &mut AsyncPgConnection, id: i64, order_id: i64) -> QueryResult<bool> {
    let updated = shared::db::cached(
        diesel::update(
            user_coupons::table
                .filter(user_coupons::id.eq(id))
                .filter(user_coupons::status.eq(CouponStatus::Used))
                .filter(user_coupons::order_id.eq(order_id)),
        )
        .set((
            user_coupons::status.eq(CouponStatus::Available),
            user_coupons::order_id.eq(None::<i64>),
            user_coupons::used_at.eq(None::<DateTime<Utc>>),
        )),
    )
    .execute(conn)
    .await?;
    Ok(updated == 1)
}

/// The usage of `kind` by `order_id`, if any.
pub async fn usage(
    conn: &mut AsyncPgConnection,
    order_id: i64,
    kind: UsageKind,
) -> QueryResult<Option<Usage>> {
    coupon_usages::table
        .filter(coupon_usages::order_id.eq(order_id))
        .filter(coupon_usages::kind.eq(kind))
        .select(Usage::as_select())
        .first(conn)
        .await
        .optional()
}

/// Records one use or restoration.
pub async fn record_usage(
    conn: &mut AsyncPgConnection,
    user_coupon_id: i64,
    order_id: i64,
    kind: UsageKind,
    discount_amount: Decimal,
) -> QueryResult<()> {
    diesel::insert_into(coupon_usages::table)
        .values((
            coupon_usages::user_coupon_id.eq(user_coupon_id),
            coupon_usages::order_id.eq(order_id),
            coupon_usages::kind.eq(kind),
            coupon_usages::discount_amount.eq(discount_amount),
        ))
        .execute(conn)
        .await?;
    Ok(())
}
