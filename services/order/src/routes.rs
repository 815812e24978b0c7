//! HTTP: place, read (with a long poll), list and cancel orders.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Utc};
use diesel_async::AsyncConnection;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use shared::db::PgPool;
use shared::envelope::Envelope;
use shared::events::{
    BalanceRestorationRequested, FailureReason, OrderCommand, OrderProcessingStarted, PricedItem,
};
use shared::http::page::PageQuery;
use shared::http::{ApiError, ValidJson};
use shared::money;
use shared::outbox::enqueue_event;
use shared::seal::Keyring;

use crate::domain::{self, NewOrder, OrderRequest, OrderStatus};
use crate::repo::{self, ItemRow, OrderRow};
use crate::waiters::Waiters;

/// The longest a `wait_ms` long poll holds a request.
pub const MAX_WAIT: Duration = Duration::from_secs(30);

pub fn configure(cfg: &mut web::ServiceConfig, waiters: Arc<Waiters>) {
    configure_reads(cfg, waiters);
    cfg.route("/orders", web::post().to(place))
        .route("/orders/{id}/cancel", web::post().to(cancel));
}

/// `GET /orders` and `GET /orders/{id}` alone, for a front that places orders its own way (the
/// benchmark's single-database reference).
pub fn configure_reads(cfg: &mut web::ServiceConfig, waiters: Arc<Waiters>) {
    cfg.app_data(web::Data::from(waiters))
        .route("/orders", web::get().to(list))
        .route("/orders/{id}", web::get().to(show));
}

#[derive(Debug, Serialize)]
struct ItemView {
    product_id: i64,
    quantity: i32,
    unit_price: Option<Decimal>,
}

#[derive(Debug, Serialize)]
struct OrderView {
    order_id: i64,
    user_id: i64,
    status: OrderStatus,
    items: Vec<ItemView>,
    user_coupon_id: Option<i64>,
    total_amount: Option<Decimal>,
    discount_amount: Option<Decimal>,
    paid_amount: Option<Decimal>,
    failure_reason: Option<String>,
    failure_code: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
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
    }
}

#[derive(Debug, Serialize)]
struct Accepted {
    order_id: i64,
    status: OrderStatus,
}

fn order_id(raw: i64) -> Result<i64, ApiError> {
    if raw > 0 {
        Ok(raw)
    } else {
        Err(ApiError::NotFound { what: "order" })
    }
}

/// What `POST /orders` did.
enum Placed {
    New(i64),
    /// The Idempotency-Key was used before with the same request.
    Replayed(i64, OrderStatus),
}

async fn place(
    pool: web::Data<PgPool>,
    keys: web::Data<Keyring>,
    request: HttpRequest,
    ValidJson(body): ValidJson<OrderRequest>,
) -> Result<HttpResponse, ApiError> {
    let order = body.validate()?;
    let key = match request.headers().get("Idempotency-Key") {
        Some(value) => Some(domain::idempotency_key(value.to_str().map_err(|_| {
            ApiError::validation("Idempotency-Key", "must be visible ASCII")
        })?)?),
        None => None,
    };
    let traceparent = Some(traceparent_of(&request));
    let trace_id = traceparent
        .as_deref()
        .and_then(shared::telemetry::trace_id)
        .map(str::to_owned);
    let mut conn = pool.get().await?;
    let placed = match insert_or_replay(
        &mut conn,
        &keys,
        &order,
        key.as_deref(),
        traceparent.clone(),
    )
    .await
    {
        // Two requests raced with one key: the loser reads the winner's order.
        Err(ApiError::Conflict {
            code: "conflict", ..
        }) if key.is_some() => {
            insert_or_replay(&mut conn, &keys, &order, key.as_deref(), traceparent).await?
        }
        other => other?,
    };
    Ok(match placed {
        Placed::New(id) => {
            crate::metrics::started();
            tracing::info!(
                order_id = id,
                trace_id = trace_id.as_deref().unwrap_or(""),
                "order accepted"
            );
            HttpResponse::Accepted().json(Accepted {
                order_id: id,
                status: OrderStatus::Pending,
            })
        }
        Placed::Replayed(id, status) => HttpResponse::Ok().json(Accepted {
            order_id: id,
            status,
        }),
    })
}

/// The trace a request's events belong to: the caller's W3C trace context if it sent one, else
/// a new trace, so that every saga's (and every cancellation's) events and log lines share one
/// trace id.
fn traceparent_of(request: &HttpRequest) -> String {
    request
        .headers()
        .get("traceparent")
        .and_then(|value| value.to_str().ok())
        .filter(|value| shared::telemetry::is_traceparent(value))
        .map_or_else(shared::telemetry::new_traceparent, str::to_owned)
}

/// One transaction: replay an Idempotency-Key, or insert the order with its saga's first event.
async fn insert_or_replay(
    conn: &mut diesel_async::AsyncPgConnection,
    keys: &Keyring,
    order: &NewOrder,
    key: Option<&str>,
    traceparent: Option<String>,
) -> Result<Placed, ApiError> {
    let fingerprint = order.fingerprint();
    conn.transaction(async |tx| {
        if let Some(key) = key
            && let Some((id, request, status)) = repo::find_by_key(tx, order.user_id, key).await?
        {
            return if request.as_deref() == Some(fingerprint.as_str()) {
                Ok(Placed::Replayed(id, status))
            } else {
                Err(ApiError::conflict(
                    "idempotency_key_reused",
                    "this Idempotency-Key was used for a different request",
                ))
            };
        }
        let id = repo::insert(tx, order, key.map(|key| (key, fingerprint.as_str()))).await?;
        let started = OrderProcessingStarted {
            command: OrderCommand {
                order_id: id,
                user_id: order.user_id,
                items: order.items.clone(),
                user_coupon_id: order.user_coupon_id,
            },
        };
        let envelope = Envelope::new(&started, Some(id))
            .map_err(|err| ApiError::Internal(err.into()))?
            .with_traceparent(traceparent);
        enqueue_event::<OrderProcessingStarted>(tx, keys, envelope).await?;
        Ok(Placed::New(id))
    })
    .await
}

#[derive(Debug, Deserialize)]
struct ShowQuery {
    wait_ms: Option<i64>,
}

async fn show(
    pool: web::Data<PgPool>,
    waiters: web::Data<Waiters>,
    path: web::Path<i64>,
    query: web::Query<ShowQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = order_id(path.into_inner())?;
    let wait = match query.wait_ms {
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
#[derive(Debug, Deserialize)]
struct ListQuery {
    user_id: Option<i64>,
    page: Option<i64>,
    page_size: Option<i64>,
}

#[derive(Debug, Serialize)]
struct OrderPage {
    orders: Vec<OrderView>,
    page: i64,
    page_size: i64,
    has_more: bool,
}

async fn list(
    pool: web::Data<PgPool>,
    query: web::Query<ListQuery>,
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

/// `COMPLETED` → `CANCELLING`, and the refund request that starts the compensation.
async fn cancel(
    pool: web::Data<PgPool>,
    keys: web::Data<Keyring>,
    request: HttpRequest,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let id = order_id(path.into_inner())?;
    let traceparent = traceparent_of(&request);
    let mut conn = pool.get().await?;
    conn.transaction(async |tx| {
        let order = repo::lock(tx, id)
            .await?
            .ok_or(ApiError::NotFound { what: "order" })?;
        if order.status != OrderStatus::Completed {
            return Err(ApiError::conflict(
                "not_cancellable",
                format!(
                    "only a COMPLETED order can be cancelled; this one is {}",
                    order.status
                ),
            ));
        }
        let items = repo::items(tx, &[id]).await?;
        repo::transition(tx, id, OrderStatus::Completed, OrderStatus::Cancelling).await?;
        let refund = BalanceRestorationRequested {
            command: OrderCommand {
                order_id: id,
                user_id: order.user_id,
                items: items
                    .iter()
                    .map(|item| shared::events::OrderLine {
                        product_id: item.product_id,
                        quantity: item.quantity,
                    })
                    .collect(),
                user_coupon_id: order.user_coupon_id,
            },
            items: items
                .iter()
                .map(|item| PricedItem {
                    product_id: item.product_id,
                    quantity: item.quantity,
                    unit_price: item.unit_price.unwrap_or_default(),
                })
                .collect(),
            paid_amount: order.paid_amount.unwrap_or_default(),
            reason: FailureReason::new("cancelled", "cancelled at the user's request"),
        };
        let envelope = Envelope::new(&refund, Some(id))
            .map_err(|err| ApiError::Internal(err.into()))?
            .with_traceparent(Some(traceparent.clone()));
        enqueue_event::<BalanceRestorationRequested>(tx, &keys, envelope).await?;
        Ok(())
    })
    .await?;
    Ok(HttpResponse::Accepted().json(Accepted {
        order_id: id,
        status: OrderStatus::Cancelling,
    }))
}
