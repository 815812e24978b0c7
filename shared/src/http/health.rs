//! `GET /health` (the process answers) and `GET /ready` (database and broker reachable, else 503).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix_web::{HttpResponse, web};
use diesel_async::RunQueryDsl;
use serde_json::json;

use crate::db::PgPool;

/// What readiness checks: the pool answers `SELECT 1`, and every consumer holds a broker session.
#[derive(Clone)]
pub struct Readiness {
    pub pool: PgPool,
    pub broker_connected: Vec<Arc<AtomicBool>>,
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/health", web::get().to(health))
        .route("/ready", web::get().to(ready));
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

async fn ready(readiness: web::Data<Readiness>) -> HttpResponse {
    let database = tokio::time::timeout(Duration::from_secs(2), async {
        let mut conn = readiness.pool.get().await.ok()?;
        diesel::sql_query("SELECT 1").execute(&mut conn).await.ok()
    })
    .await
    .ok()
    .flatten()
    .is_some();
    let broker = readiness
        .broker_connected
        .iter()
        .all(|flag| AtomicBool::load(flag, Ordering::SeqCst));
    let body = json!({
        "status": if database && broker { "ready" } else { "not_ready" },
        "database": database,
        "broker": broker,
    });
    if database && broker {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
