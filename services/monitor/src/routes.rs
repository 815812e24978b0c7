//! HTTP: a saga's timeline.

use actix_web::{HttpResponse, web};
use serde::Serialize;
use shared::db::PgPool;
use shared::http::ApiError;

use crate::store::{self, StoredEvent};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/sagas/{order_id}", web::get().to(timeline));
}

#[derive(Debug, Serialize)]
struct Timeline {
    order_id: i64,
    events: Vec<StoredEvent>,
}

async fn timeline(pool: web::Data<PgPool>, path: web::Path<i64>) -> Result<HttpResponse, ApiError> {
    let order_id = path.into_inner();
    let mut conn = pool.get().await?;
    let events = store::timeline(&mut conn, order_id).await?;
    if events.is_empty() {
        return Err(ApiError::NotFound { what: "saga" });
    }
    Ok(HttpResponse::Ok().json(Timeline { order_id, events }))
}
