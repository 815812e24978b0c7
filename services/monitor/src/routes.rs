//! HTTP: a saga's timeline, and sagas by state (stuck ones above all).

use std::time::Duration;

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shared::db::PgPool;
use shared::http::openapi::{NotFound, Refusals, Routes};
use shared::http::{ApiError, ValidQuery};
use utoipa::ToSchema;

use crate::sagas;
use crate::store::{self, StoredEvent};

pub fn configure(routes: &mut Routes<'_>) {
    routes
        .route(__path_list, list)
        .route(__path_timeline, timeline);
}

/// One event of a saga's timeline.
#[derive(Debug, Serialize, ToSchema)]
struct Step {
    #[serde(flatten)]
    event: StoredEvent,
    /// Milliseconds since the previous event of this saga (0 for the first).
    since_previous_ms: f64,
    /// The W3C trace id, from the event's traceparent.
    trace_id: Option<String>,
}

/// A saga's events in the order they occurred.
#[derive(Debug, Serialize, ToSchema)]
struct Timeline {
    order_id: i64,
    started_at: DateTime<Utc>,
    last_event_at: DateTime<Utc>,
    duration_ms: f64,
    events: Vec<Step>,
}

fn millis(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_microseconds().unwrap_or(0) as f64 / 1000.0
}

/// Read a saga's timeline: every event, with the time between them.
#[utoipa::path(
    get,
    path = "/sagas/{order_id}",
    tag = "sagas",
    params(("order_id" = i64, Path, description = "The saga's order id.")),
    responses(
        (status = 200, description = "The timeline.", body = Timeline),
        NotFound,
        Refusals,
    )
)]
async fn timeline(pool: web::Data<PgPool>, path: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    let order_id = path.into_inner();
    let mut conn = pool.get().await?;
    let events = store::timeline(&mut conn, order_id).await?;
    let (Some(first), Some(last)) = (events.first(), events.last()) else {
        return Err(ApiError::NotFound { what: "saga" });
    };
    let (started_at, last_event_at) = (first.occurred_at, last.occurred_at);
    let mut previous = started_at;
    let steps = events
        .into_iter()
        .map(|event| {
            let since_previous_ms = millis(previous, event.occurred_at);
            previous = event.occurred_at;
            let trace_id = event
                .traceparent
                .as_deref()
                .and_then(|tp| tp.split('-').nth(1))
                .map(str::to_owned);
            Step {
                event,
                since_previous_ms,
                trace_id,
            }
        })
        .collect();
    Ok(HttpResponse::Ok().json(Timeline {
        order_id,
        started_at,
        last_event_at,
        duration_ms: millis(started_at, last_event_at),
        events: steps,
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// `stuck` (unfinished and idle, the default), or one of the states: `in_flight`,
    /// `cancelling`, `completed`, `failed`, `cancelled`.
    #[param(pattern = "^(stuck|in_flight|cancelling|completed|failed|cancelled)$")]
    state: Option<String>,
    /// Idle for at least this long: `500ms`, `30s`, `5m`, `2h`, at most `365d`; default 30s
    /// for `stuck`, 0 otherwise.
    older_than: Option<String>,
    /// The most sagas listed.
    #[param(minimum = 1, maximum = 1000, default = 100)]
    limit: Option<i64>,
}

/// Sagas in a state, idlest first.
#[derive(Debug, Serialize, ToSchema)]
struct SagaList {
    state: String,
    older_than_seconds: f64,
    sagas: Vec<sagas::SagaSummary>,
}

/// List sagas by state: by default the stuck ones (unfinished, idle for 30 s or more).
#[utoipa::path(
    get,
    path = "/sagas",
    tag = "sagas",
    params(ListQuery),
    responses(
        (status = 200, description = "The sagas, idlest first.", body = SagaList),
        Refusals,
    )
)]
async fn list(
    pool: web::Data<PgPool>,
    query: ValidQuery<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let state = query.state.as_deref().unwrap_or("stuck");
    let states: Vec<&str> = match state {
        "stuck" => vec!["in_flight", "cancelling"],
        other if sagas::STATES.contains(&other) => vec![other],
        _ => {
            return Err(ApiError::validation(
                "state",
                format!("one of stuck, {}", sagas::STATES.join(", ")),
            ));
        }
    };
    let default_age = if state == "stuck" { "30s" } else { "0s" };
    let older_than =
        shared::config::parse_duration(query.older_than.as_deref().unwrap_or(default_age))
            .ok()
            .filter(|age| *age <= MAX_AGE)
            .ok_or_else(|| {
                ApiError::validation(
                    "older_than",
                    "a duration like 500ms, 30s, 5m or 2h, at most 365d",
                )
            })?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::validation("limit", "must be 1..=1000"));
    }
    let mut conn = pool.get().await?;
    let sagas = sagas::idle(&mut conn, &states, older_than, limit).await?;
    Ok(HttpResponse::Ok().json(SagaList {
        state: state.to_owned(),
        older_than_seconds: older_than.as_secs_f64(),
        sagas,
    }))
}

/// Beyond any saga's life, and within what the database's interval arithmetic takes.
const MAX_AGE: Duration = Duration::from_secs(365 * 24 * 3600);
