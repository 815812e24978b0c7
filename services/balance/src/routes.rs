//! HTTP: charge a balance, read it, read its history.

use actix_web::{HttpResponse, web};
use diesel_async::AsyncConnection;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use shared::db::PgPool;
use shared::http::page::PageQuery;
use shared::http::{ApiError, ValidJson};
use shared::money;

use crate::repo;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/balances/{user_id}/charge", web::post().to(charge))
        .route("/balances/{user_id}", web::get().to(show))
        .route("/balances/{user_id}/history", web::get().to(history));
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChargeRequest {
    #[serde(deserialize_with = "money::deserialize")]
    amount: Decimal,
}

#[derive(Debug, Serialize)]
struct BalanceView {
    user_id: i64,
    balance: Decimal,
}

#[derive(Debug, Serialize)]
struct HistoryView {
    kind: repo::LedgerKind,
    amount: Decimal,
    order_id: Option<i64>,
    balance_after: Decimal,
    created_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Serialize)]
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
            let after = repo::credit(tx, user_id, amount).await?;
            repo::record(tx, user_id, repo::LedgerKind::Charge, amount, None, after).await?;
            Ok::<_, diesel::result::Error>(after)
        })
        .await?;
    Ok(HttpResponse::Ok().json(BalanceView {
        user_id,
        balance: money::normalize(balance),
    }))
}

async fn show(pool: web::Data<PgPool>, path: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    let user_id = user_id(path.into_inner())?;
    let mut conn = pool.get().await?;
    let balance = repo::balance(&mut conn, user_id).await?;
    Ok(HttpResponse::Ok().json(BalanceView {
        user_id,
        balance: money::normalize(balance),
    }))
}

async fn history(
    pool: web::Data<PgPool>,
    path: web::Path<i64>,
    query: web::Query<PageQuery>,
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
