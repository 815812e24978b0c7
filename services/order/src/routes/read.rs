//! HTTP reads: an order (with the `wait_ms` long poll) and a user's orders.

use std::time::Duration;

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use shared::db::PgPool;
use shared::http::openapi::{NotFound, Refusals, Routes};
use shared::http::page::PageQuery;
use shared::http::{ApiError, ValidQuery};
use shared::money;
use utoipa::ToSchema;

use super::{MAX_WAIT, order_id};
use crate::domain::OrderStatus;
use crate::repo::{self, ItemRow, OrderRow};
use crate::waiters::Waiters;

pub(super) fn configure(routes: &mut Routes<'_>) {
    routes.route(__path_list, list).route(__path_show, show);
}

/// One line of an order.
#[derive(Debug, Serialize, ToSchema)]
struct ItemView {
    product_id: i64,
    quantity: i32,
    /// The price the stock step charged, once it ran.
    #[schema(value_type = Option<money::Amount>)]
    unit_price: Option<Decimal>,
}

/// An order and where its saga is.
#[derive(Debug, Serialize, ToSchema)]
struct OrderView {
    order_id: i64,
    user_id: i64,
    status: OrderStatus,
    items: Vec<ItemView>,
    user_coupon_id: Option<i64>,
    #[schema(value_type = Option<money::Amount>)]
    total_amount: Option<Decimal>,
    #[schema(value_type = Option<money::Amount>)]
    discount_amount: Option<Decimal>,
    #[schema(value_type = Option<money::Amount>)]
    paid_amount: Option<Decimal>,
    /// Why a `FAILED` order failed, in words.
    failure_reason: Option<String>,
    /// Why a `FAILED` order failed: `insufficient_stock`, `insufficient_balance`, ...
    failure_code: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    /// When a `PENDING` order is given up on: it then ends `FAILED` with code `timeout`.
    deadline_at: DateTime<Utc>,
}

fn view(order: OrderRow, items: &[ItemRow]) -> OrderView {
    OrderView {
        order_id: order.id,
        user_id: order.user_id,
        status: order.status,
        items: items
            .iter()
            .filter(|item| item.order_id == order.id)
            .map(|item| ItemView {
                product_id: item.product_id,
                quantity: item.quantity,
                unit_price: item.unit_price.map(money::normalize),
            })
            .collect(),
        user_coupon_id: order.user_coupon_id,
        total_amount: order.total_amount.map(money::normalize),
        discount_amount: order.discount_amount.map(money::normalize),
        paid_amount: order.paid_amount.map(money::normalize),
        failure_reason: order.failure_reason,
        failure_code: order.failure_code,
        created_at: order.created_at,
        updated_at: order.updated_at,
        deadline_at: order.deadline_at,
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ShowQuery {
    /// Hold the request until the order is terminal (`COMPLETED`, `FAILED`, `CANCELLED`) or
    /// this many milliseconds passed (at most 30000).
    #[param(minimum = 0)]
    wait_ms: Option<i64>,
}

/// Read an order; with `wait_ms`, wait for its saga to end first.
#[utoipa::path(
    get,
    path = "/orders/{id}",
    tag = "orders",
    params(("id" = i64, Path, description = "The order's id."), ShowQuery),
    responses(
        (status = 200, description = "The order.", body = OrderView),
        NotFound,
        Refusals,
    )
)]
async fn show(
    pool: web::Data<PgPool>,
    waiters: web::Data<Waiters>,
    path: web::Path<i64>,
    query: ValidQuery<ShowQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = order_id(path.into_inner())?;
    let wait = match query.0.wait_ms {
        None => Duration::ZERO,
        Some(ms) if ms < 0 => return Err(ApiError::validation("wait_ms", "must not be negative")),
        Some(ms) => Duration::from_millis(ms.unsigned_abs()).min(MAX_WAIT),
    };
    let deadline = tokio::time::Instant::now() + wait;
    let parked = waiters.park(id);
    let order = loop {
        // Armed before reading, so a change committed between the read and the wait wakes us.
        let notified = parked.notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let order = read(&pool, id)
            .await?
            .ok_or(ApiError::NotFound { what: "order" })?;
        if order.0.status.is_terminal() || tokio::time::Instant::now() >= deadline {
            break order;
        }
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep_until(deadline) => {}
        }
    };
    drop(parked);
    Ok(HttpResponse::Ok().json(view(order.0, &order.1)))
}

async fn read(pool: &PgPool, id: i64) -> Result<Option<(OrderRow, Vec<ItemRow>)>, ApiError> {
    let mut conn = pool.get().await?;
    let Some(order) = repo::find(&mut conn, id).await? else {
        return Ok(None);
    };
    let items = repo::items(&mut conn, &[id]).await?;
    Ok(Some((order, items)))
}

/// Spelled out rather than `#[serde(flatten)]`ing a `PageQuery`: flattening loses the
/// query string's number parsing.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Whose orders.
    #[param(required = true, minimum = 1)]
    user_id: Option<i64>,
    /// The page, from 1.
    #[param(minimum = 1, default = 1)]
    page: Option<i64>,
    /// Orders per page.
    #[param(minimum = 1, maximum = 100, default = 20)]
    page_size: Option<i64>,
}

/// A page of a user's orders, newest first.
#[derive(Debug, Serialize, ToSchema)]
struct OrderPage {
    orders: Vec<OrderView>,
    page: i64,
    page_size: i64,
    has_more: bool,
}

/// List a user's orders, newest first.
#[utoipa::path(
    get,
    path = "/orders",
    tag = "orders",
    params(ListQuery),
    responses(
        (status = 200, description = "A page of orders.", body = OrderPage),
        Refusals,
    )
)]
async fn list(
    pool: web::Data<PgPool>,
    query: ValidQuery<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let user_id = query
        .user_id
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::validation("user_id", "a positive user_id is required"))?;
    let page = PageQuery {
        page: query.page,
        page_size: query.page_size,
    }
    .page()?;
    let mut conn = pool.get().await?;
    let mut orders =
        repo::list_for_user(&mut conn, user_id, page.offset(), page.fetch_limit()).await?;
    let has_more = page.trim(&mut orders);
    let ids: Vec<i64> = orders.iter().map(|order| order.id).collect();
    let items = repo::items(&mut conn, &ids).await?;
    Ok(HttpResponse::Ok().json(OrderPage {
        orders: orders
            .into_iter()
            .map(|order| view(order, &items))
            .collect(),
        page: page.page,
        page_size: page.page_size,
        has_more,
    }))
}
