//! HTTP: a saga's timeline, and sagas by state (stuck ones above all).

use std::time::Duration;

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shared::db::PgPool;
use shared::http::ApiError;

use crate::sagas;
use crate::store::{self, StoredEvent};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/sagas", web::get().to(list))
        .route("/sagas/{order_id}", web::get().to(timeline));
}

#[derive(Debug, Serialize)]
struct Step {
    #[serde(flatten)]
    event: StoredEvent,
    /// Milliseconds since the previous event of this saga (0 for the first).
    since_previous_ms: f64,
    /// The W3C trace id, from the event's traceparent.
    trace_id: Option<String>,
}

#[derive(Debug, Serialize)]
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

#[derive(Debug, Deserialize)]
struct ListQuery {
    /// `stuck` (unfinished and idle), or one of the states.
    state: Option<String>,
    /// Idle for at least this long: `500ms`, `30s`, `5m`; default 30s for `stuck`, 0 otherwise.
    older_than: Option<String>,
    limit: Option<i64>,
}

async fn list(
    pool: web::Data<PgPool>,
    query: web::Query<ListQuery>,
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
    Ok(HttpResponse::Ok().json(serde_json::json!({ "state": state, "older_than_seconds": older_than.as_secs_f64(), "sagas": sagas })))
}

/// Beyond any saga's life, and within what the database's interval arithmetic takes.
const MAX_AGE: Duration = Duration::from_secs(365 * 24 * 3600);
