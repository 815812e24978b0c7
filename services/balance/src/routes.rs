//! HTTP: charge a balance, read it, read its history.

use actix_web::{HttpResponse, web};
use diesel_async::AsyncConnection;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use shared::db::PgPool;
use shared::http::openapi::{BodyRefusals, Refusals, Routes};
use shared::http::page::PageQuery;
use shared::http::{ApiError, ValidJson, ValidQuery};
use shared::money;
use utoipa::ToSchema;

use crate::repo;

pub fn configure(routes: &mut Routes<'_>) {
    routes
        .route(__path_charge, charge)
        .route(__path_show, show)
        .route(__path_history, history);
}

/// Money added to a balance.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ChargeRequest {
    /// Greater than zero.
    #[serde(deserialize_with = "money::deserialize")]
    #[schema(value_type = money::AmountInput)]
    amount: Decimal,
}

/// A user's balance (0.00 for a user never charged).
#[derive(Debug, Serialize, ToSchema)]
struct BalanceView {
    user_id: i64,
    #[schema(value_type = money::Amount)]
    balance: Decimal,
}

/// One change of a balance.
#[derive(Debug, Serialize, ToSchema)]
struct HistoryView {
    kind: repo::LedgerKind,
    #[schema(value_type = money::Amount)]
    amount: Decimal,
    /// The order paid or refunded; none for a charge.
    order_id: Option<i64>,
    #[schema(value_type = money::Amount)]
    balance_after: Decimal,
    created_at: chrono::DateTime<chrono::Utc>,
}

/// A page of a balance's history, newest first.
#[derive(Debug, Serialize, ToSchema)]
struct HistoryPage {
    user_id: i64,
    entries: Vec<HistoryView>,
    page: i64,
    page_size: i64,
    has_more: bool,
}

fn user_id(raw: i64) -> Result<i64, ApiError> {
    shared::http::positive_id("user_id", raw)
}

fn charge_amount(amount: Decimal) -> Result<Decimal, ApiError> {
    let amount =
        money::validate(amount).map_err(|err| ApiError::validation("amount", err.to_string()))?;
    if amount.is_zero() {
        return Err(ApiError::validation("amount", "must be greater than zero"));
    }
    Ok(amount)
}

/// Charge (top up) a user's balance.
#[utoipa::path(
    post,
    path = "/balances/{user_id}/charge",
    tag = "balances",
    params(("user_id" = i64, Path, minimum = 1, description = "The user's id.")),
    request_body = ChargeRequest,
    responses(
        (status = 200, description = "The balance after the charge.", body = BalanceView),
        BodyRefusals,
    )
)]
async fn charge(
    pool: web::Data<PgPool>,
    path: web::Path<i64>,
    ValidJson(body): ValidJson<ChargeRequest>,
) -> Result<HttpResponse, ApiError> {
    let user_id = user_id(path.into_inner())?;
    let amount = charge_amount(body.amount)?;
    let mut conn = pool.get().await?;
    let balance = conn
        .transaction(async |tx| {
            let after = repo::charge(tx, user_id, amount, money::MAX)
                .await?
                .ok_or_else(|| {
                    ApiError::validation("amount", format!("the balance would pass {}", money::MAX))
                })?;
            repo::record(tx, user_id, repo::LedgerKind::Charge, amount, None, after).await?;
            Ok::<_, ApiError>(after)
        })
        .await?;
    Ok(HttpResponse::Ok().json(BalanceView {
        user_id,
        balance: money::normalize(balance),
    }))
}

/// Read a user's balance.
#[utoipa::path(
    get,
    path = "/balances/{user_id}",
    tag = "balances",
    params(("user_id" = i64, Path, minimum = 1, description = "The user's id.")),
    responses(
        (status = 200, description = "The balance.", body = BalanceView),
        Refusals,
    )
)]
async fn show(pool: web::Data<PgPool>, path: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    let user_id = user_id(path.into_inner())?;
    let mut conn = pool.get().await?;
    let balance = repo::balance(&mut conn, user_id).await?;
    Ok(HttpResponse::Ok().json(BalanceView {
        user_id,
        balance: money::normalize(balance),
    }))
}

/// Read a user's balance history, newest first.
#[utoipa::path(
    get,
    path = "/balances/{user_id}/history",
    tag = "balances",
    params(
        ("user_id" = i64, Path, minimum = 1, description = "The user's id."),
        PageQuery
    ),
    responses(
        (status = 200, description = "A page of the history.", body = HistoryPage),
        Refusals,
    )
)]
async fn history(
    pool: web::Data<PgPool>,
    path: web::Path<i64>,
    query: ValidQuery<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let user_id = user_id(path.into_inner())?;
    let page = query.into_inner().page()?;
    let mut conn = pool.get().await?;
    let mut rows = repo::history(&mut conn, user_id, page.offset(), page.fetch_limit()).await?;
    let has_more = page.trim(&mut rows);
    Ok(HttpResponse::Ok().json(HistoryPage {
        user_id,
        entries: rows
            .into_iter()
            .map(|row| HistoryView {
                kind: row.kind,
                amount: money::normalize(row.amount),
                order_id: row.order_id,
                balance_after: money::normalize(row.balance_after),
                created_at: row.created_at,
            })
            .collect(),
        page: page.page,
        page_size: page.page_size,
        has_more,
    }))
}
