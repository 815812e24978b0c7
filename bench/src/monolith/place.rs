//! `POST /orders` of the monolith: validate, then insert the order, reserve and price the stock,
//! use the coupon, take the payment and complete the order, all in one transaction. A business
//! refusal (no stock, bad coupon, too little balance) rolls everything back and records the
//! order `FAILED` with the same reason code the saga would give it; there is nothing to
//! compensate, which is the whole point of the reference.

use std::collections::BTreeMap;

use actix_web::{HttpResponse, web};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use rust_decimal::Decimal;
use serde::Serialize;
use shared::db::PgPool;
use shared::events::{FailureReason, PricedItem};
use shared::http::{ApiError, ValidJson};
use shared::money;

use order_service::domain::{NewOrder, OrderRequest, OrderStatus};

#[derive(Debug, Serialize)]
struct Placed {
    order_id: i64,
    status: OrderStatus,
}

/// Why the order transaction did not commit.
enum Abort {
    /// A business rule refused the order: it is recorded FAILED in a transaction of its own.
    Refused(FailureReason),
    Error(ApiError),
}

impl From<diesel::result::Error> for Abort {
    fn from(err: diesel::result::Error) -> Self {
        Self::Error(err.into())
    }
}

pub async fn place(
    pool: web::Data<PgPool>,
    ValidJson(body): ValidJson<OrderRequest>,
) -> Result<HttpResponse, ApiError> {
    let order = body.validate()?;
    let mut conn = pool.get().await?;
    let outcome = conn
        .transaction(async |tx| complete_in_one_transaction(tx, &order).await)
        .await;
    let (order_id, status) = match outcome {
        Ok(id) => (id, OrderStatus::Completed),
        Err(Abort::Error(err)) => return Err(err),
        Err(Abort::Refused(reason)) => {
            let id = conn
                .transaction(async |tx| -> Result<i64, ApiError> {
                    let id = order_service::repo::insert(tx, &order, None, &untraced()).await?;
                    order_service::repo::fail(tx, id, &reason).await?;
                    Ok(id)
                })
                .await?;
            (id, OrderStatus::Failed)
        }
    };
    Ok(HttpResponse::Created().json(Placed { order_id, status }))
}

/// The reference ends every order in its request: the deadline is never reached.
fn untraced() -> order_service::repo::SagaStart {
    order_service::repo::SagaStart::now(Default::default(), None)
}

async fn complete_in_one_transaction(
    tx: &mut AsyncPgConnection,
    order: &NewOrder,
) -> Result<i64, Abort> {
    let id = order_service::repo::insert(tx, order, None, &untraced()).await?;
    let (items, total) = reserve_stock(tx, order, id).await?;
    let discount = use_coupon(tx, order, id, total).await?;
    let paid = money::normalize(total - discount);
    pay(tx, order.user_id, id, paid).await?;
    order_service::repo::complete(tx, id, &items, total, discount, paid)
        .await?
        .ok_or_else(|| Abort::Error(ApiError::Internal(anyhow::anyhow!("order {id} vanished"))))?;
    Ok(id)
}

/// The product step: lock in id order, check, price, take the stock, write the ledger.
async fn reserve_stock(
    tx: &mut AsyncPgConnection,
    order: &NewOrder,
    order_id: i64,
) -> Result<(Vec<PricedItem>, Decimal), Abort> {
    use product_service::{repo, saga};
    let wanted = saga::quantities(&order.items)
        .map_err(|err| Abort::Error(ApiError::validation("items", err.to_string())))?;
    let ids: Vec<i64> = wanted.keys().copied().collect();
    let products: BTreeMap<i64, repo::Product> = repo::lock(tx, &ids)
        .await?
        .into_iter()
        .map(|product| (product.id, product))
        .collect();
    saga::check(&wanted, &products).map_err(Abort::Refused)?;
    let (items, total) = saga::price(&order.items, &products).map_err(Abort::Refused)?;
    if let Err(product_id) = repo::reserve(tx, order_id, &wanted).await? {
        return Err(Abort::Error(ApiError::Internal(anyhow::anyhow!(
            "stock of product {product_id} changed under its lock"
        ))));
    }
    Ok((items, total))
}

/// The coupon step: the discount it gives, zero without a coupon.
async fn use_coupon(
    tx: &mut AsyncPgConnection,
    order: &NewOrder,
    order_id: i64,
    total: Decimal,
) -> Result<Decimal, Abort> {
    use coupon_service::{repo, saga};
    let Some(user_coupon_id) = order.user_coupon_id else {
        return Ok(Decimal::ZERO);
    };
    let Some(held) = repo::lock_for_order(tx, user_coupon_id).await? else {
        return Err(Abort::Refused(FailureReason::new(
            "coupon_not_found",
            format!("user coupon {user_coupon_id} does not exist"),
        )));
    };
    if let Some(reason) = saga::refusal(&held, order.user_id) {
        return Err(Abort::Refused(reason));
    }
    let terms = &held.terms;
    let discount = saga::discount(terms.discount_type, terms.discount_value, total);
    if !repo::mark_used(tx, user_coupon_id, order_id).await? {
        return Err(Abort::Error(ApiError::Internal(anyhow::anyhow!(
            "user coupon {user_coupon_id} changed under its lock"
        ))));
    }
    repo::record_usage(tx, user_coupon_id, order_id, repo::UsageKind::Use, discount).await?;
    Ok(discount)
}

/// The balance step: debit if the balance covers it, write the history.
async fn pay(
    tx: &mut AsyncPgConnection,
    user_id: i64,
    order_id: i64,
    amount: Decimal,
) -> Result<(), Abort> {
    use balance_service::repo;
    let after = if amount.is_zero() {
        Some(repo::balance(tx, user_id).await?)
    } else {
        repo::debit(tx, user_id, amount).await?
    };
    let Some(after) = after else {
        return Err(Abort::Refused(FailureReason::new(
            "insufficient_balance",
            format!("user {user_id} needs {amount}"),
        )));
    };
    repo::record(
        tx,
        user_id,
        repo::LedgerKind::Payment,
        amount,
        Some(order_id),
        after,
    )
    .await?;
    Ok(())
}
