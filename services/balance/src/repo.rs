//! Balance SQL. Every function takes the caller's connection so that a state change, its
//! history row, the inbox claim and the outbox rows share one transaction.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use rust_decimal::Decimal;

use crate::schema::{balance_history, balances};

shared::text_enum! {
    /// What moved a balance: a top-up, an order's payment, or its refund.
    pub enum LedgerKind {
        Charge => "CHARGE",
        Payment => "PAYMENT",
        Refund => "REFUND",
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = balance_history)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct HistoryEntry {
    pub id: i64,
    pub user_id: i64,
    pub kind: LedgerKind,
    pub amount: Decimal,
    pub order_id: Option<i64>,
    pub balance_after: Decimal,
    pub created_at: DateTime<Utc>,
}

/// The balance of `user_id`; zero for a user never charged.
pub async fn balance(conn: &mut AsyncPgConnection, user_id: i64) -> QueryResult<Decimal> {
    Ok(balances::table
        .find(user_id)
        .select(balances::balance)
        .first(conn)
        .await
        .optional()?
        .unwrap_or(Decimal::ZERO))
}

/// Locks the balance of `user_id` until the transaction ends and reads it; `None` for a user
/// never charged.
pub async fn lock(conn: &mut AsyncPgConnection, user_id: i64) -> QueryResult<Option<Decimal>> {
    balances::table
        .find(user_id)
        .for_update()
        .select(balances::balance)
        .first(conn)
        .await
        .optional()
}

/// Adds `amount` (creating the row for a new user); returns the new balance.
pub async fn credit(
    conn: &mut AsyncPgConnection,
    user_id: i64,
    amount: Decimal,
) -> QueryResult<Decimal> {
    shared::db::cached(
        diesel::insert_into(balances::table)
            .values((balances::user_id.eq(user_id), balances::balance.eq(amount)))
            .on_conflict(balances::user_id)
            .do_update()
            .set((
                balances::balance.eq(balances::balance + amount),
                balances::updated_at.eq(diesel::dsl::now),
            ))
            .returning(balances::balance),
    )
    .get_result(conn)
    .await
}

/// Adds a charge of `amount` unless the balance would pass `ceiling` (what the column holds, and
/// what an amount may be); `None` when it would. The sum is compared before it is stored, so
/// the refusal is a clear answer rather than the column's overflow error.
pub async fn charge(
    conn: &mut AsyncPgConnection,
    user_id: i64,
    amount: Decimal,
    ceiling: Decimal,
) -> QueryResult<Option<Decimal>> {
    #[derive(QueryableByName)]
    struct After {
        #[diesel(sql_type = diesel::sql_types::Numeric)]
        balance: Decimal,
    }
    let after: Option<After> = diesel::sql_query(
        "INSERT INTO balances (user_id, balance) VALUES ($1, $2) \
         ON CONFLICT (user_id) DO UPDATE \
             SET balance = balances.balance + EXCLUDED.balance, updated_at = now() \
             WHERE balances.balance + EXCLUDED.balance <= $3 \
         RETURNING balance",
    )
    .bind::<diesel::sql_types::BigInt, _>(user_id)
    .bind::<diesel::sql_types::Numeric, _>(amount)
    .bind::<diesel::sql_types::Numeric, _>(ceiling)
    .get_result(conn)
    .await
    .optional()?;
    Ok(after.map(|after| after.balance))
}

/// Subtracts `amount` only if the balance covers it (the conditional update is what keeps
/// concurrent payments from driving a balance negative); `None` when it does not.
pub async fn debit(
    conn: &mut AsyncPgConnection,
    user_id: i64,
    amount: Decimal,
) -> QueryResult<Option<Decimal>> {
    shared::db::cached(
        diesel::update(
            balances::table
                .filter(balances::user_id.eq(user_id))
                .filter(balances::balance.ge(amount)),
        )
        .set((
            balances::balance.eq(balances::balance - amount),
            balances::updated_at.eq(diesel::dsl::now),
        ))
        .returning(balances::balance),
    )
    .get_result(conn)
    .await
    .optional()
}

/// Records one movement.
pub async fn record(
    conn: &mut AsyncPgConnection,
    user_id: i64,
    kind: LedgerKind,
    amount: Decimal,
    order_id: Option<i64>,
    balance_after: Decimal,
) -> QueryResult<()> {
    diesel::insert_into(balance_history::table)
        .values((
            balance_history::user_id.eq(user_id),
            balance_history::kind.eq(kind),
            balance_history::amount.eq(amount),
            balance_history::order_id.eq(order_id),
            balance_history::balance_after.eq(balance_after),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// The movement of `kind` for `order_id`, if any.
pub async fn order_entry(
    conn: &mut AsyncPgConnection,
    order_id: i64,
    kind: LedgerKind,
) -> QueryResult<Option<HistoryEntry>> {
    balance_history::table
        .filter(balance_history::order_id.eq(order_id))
        .filter(balance_history::kind.eq(kind))
        .select(HistoryEntry::as_select())
        .first(conn)
        .await
        .optional()
}

/// A page of `user_id`'s history, newest first (`limit` rows from `offset`).
pub async fn history(
    conn: &mut AsyncPgConnection,
    user_id: i64,
    offset: i64,
    limit: i64,
) -> QueryResult<Vec<HistoryEntry>> {
    balance_history::table
        .filter(balance_history::user_id.eq(user_id))
        .order(balance_history::id.desc())
        .offset(offset)
        .limit(limit)
        .select(HistoryEntry::as_select())
        .load(conn)
        .await
}
