//! HTTP: place, read (with a long poll), list and cancel orders.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use diesel_async::AsyncConnection;
use serde::Serialize;
use shared::db::PgPool;
use shared::envelope::Envelope;
use shared::events::{
    BalanceRestorationRequested, FailureReason, OrderCommand, OrderProcessingStarted, PricedItem,
};
use shared::http::openapi::{BodyRefusals, NotFound, Refusals, Routes};
use shared::http::{ApiError, ErrorBody, ValidJson};
use shared::outbox::enqueue_event;
use shared::seal::Keyring;
use utoipa::ToSchema;

use crate::deadline::SagaDeadline;
use crate::domain::{self, NewOrder, OrderRequest, OrderStatus};
use crate::repo::{self, SagaStart};
use crate::waiters::Waiters;

mod read;

/// The longest a `wait_ms` long poll holds a request.
pub const MAX_WAIT: Duration = Duration::from_secs(30);

pub fn configure(routes: &mut Routes<'_>, waiters: Arc<Waiters>, deadline: SagaDeadline) {
    configure_reads(routes, waiters);
    routes.app_data(web::Data::new(deadline));
    routes
        .route(__path_place, place)
        .route(__path_cancel, cancel);
}

/// `GET /orders` and `GET /orders/{id}` alone, for a front that places orders its own way (the
/// benchmark's single-database reference).
pub fn configure_reads(routes: &mut Routes<'_>, waiters: Arc<Waiters>) {
    routes.app_data(web::Data::from(waiters));
    read::configure(routes);
}

/// An order accepted, or its state when a request is replayed or cancelled.
#[derive(Debug, Serialize, ToSchema)]
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

/// Place an order: its saga starts, and the answer comes before it ends.
///
/// Poll `GET /orders/{id}?wait_ms=` for the outcome. With an `Idempotency-Key`, the same
/// request sent again answers 200 with the first order instead of placing another.
#[utoipa::path(
    post,
    path = "/orders",
    tag = "orders",
    params(
        ("Idempotency-Key" = Option<String>, Header,
            description = "1 to 200 visible characters; the same key with the same request \
            replays the first answer."),
        ("traceparent" = Option<String>, Header,
            description = "W3C trace context; the saga's events join this trace."),
    ),
    request_body = OrderRequest,
    responses(
        (status = 202, description = "Accepted: the saga started.", body = Accepted),
        (status = 200, description = "Replayed: this Idempotency-Key placed this order.",
            body = Accepted),
        (status = 409, description = "`idempotency_key_reused`: the key was used for another \
            request.", body = ErrorBody),
        BodyRefusals,
    )
)]
async fn place(
    pool: web::Data<PgPool>,
    keys: web::Data<Keyring>,
    deadline: web::Data<SagaDeadline>,
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
    let saga = SagaStart::now(**deadline, Some(traceparent_of(&request)));
    let trace_id = saga
        .traceparent
        .as_deref()
        .and_then(shared::telemetry::trace_id)
        .map(str::to_owned);
    let mut conn = pool.get().await?;
    let placed = match insert_or_replay(&mut conn, &keys, &order, key.as_deref(), &saga).await {
        // Two requests raced with one key: the loser reads the winner's order.
        Err(ApiError::Conflict {
            code: "conflict", ..
        }) if key.is_some() => {
            insert_or_replay(&mut conn, &keys, &order, key.as_deref(), &saga).await?
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

/// The trace context a request's events carry: with span export, the request's own server span
/// (in the caller's trace if it sent one), so that the saga's spans descend from it; without,
/// the caller's W3C trace context if it sent one, else a new trace. Either way every saga's
/// (and every cancellation's) events and log lines share one trace id.
fn traceparent_of(request: &HttpRequest) -> String {
    shared::telemetry::current_traceparent().unwrap_or_else(|| {
        request
            .headers()
            .get("traceparent")
            .and_then(|value| value.to_str().ok())
            .filter(|value| shared::telemetry::is_traceparent(value))
            .map_or_else(shared::telemetry::new_traceparent, str::to_owned)
    })
}

/// One transaction: replay an Idempotency-Key, or insert the order with its saga's first event.
async fn insert_or_replay(
    conn: &mut diesel_async::AsyncPgConnection,
    keys: &Keyring,
    order: &NewOrder,
    key: Option<&str>,
    saga: &SagaStart,
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
        let id = repo::insert(tx, order, key.map(|key| (key, fingerprint.as_str())), saga).await?;
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
            .with_traceparent(saga.traceparent.clone());
        enqueue_event::<OrderProcessingStarted>(tx, keys, envelope).await?;
        Ok(Placed::New(id))
    })
    .await
}

/// Cancel a completed order: it is refunded, its stock and coupon given back.
// `COMPLETED` → `CANCELLING`, and the refund request that starts the compensation.
#[utoipa::path(
    post,
    path = "/orders/{id}/cancel",
    tag = "orders",
    params(("id" = i64, Path, description = "The order's id.")),
    responses(
        (status = 202, description = "Cancelling: the refund started.", body = Accepted),
        NotFound,
        (status = 409, description = "`not_cancellable`: only a COMPLETED order can be \
            cancelled.", body = ErrorBody),
        Refusals,
    )
)]
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
