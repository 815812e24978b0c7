//! The admin API: dead-letter operations over HTTP, behind a bearer token.
//!
//! Off unless `ADMIN_TOKEN` is set (the routes do not exist then). A missing or wrong token is
//! a 401 that does not say which; the token is compared in constant time and never logged.
//! Replays and purges are written to the audit trail like the CLI's.

use std::path::PathBuf;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use shared::config::AmqpSettings;
use shared::db::PgPool;
use shared::dlq::ops::ReplayOptions;
use shared::dlq::{Filter, Operator};
use shared::http::{ApiError, ValidJson};

use crate::audit;

/// The admin API's settings.
#[derive(Clone)]
pub struct AdminSettings {
    /// `ADMIN_TOKEN`.
    pub token: String,
    pub amqp: AmqpSettings,
    /// `DLQ_CONSUMERS`: the consumers whose dead-letter queues exist.
    pub consumers: Vec<String>,
    /// `ADMIN_PURGE_DIR`: where purged messages are written.
    pub purge_dir: PathBuf,
}

impl std::fmt::Debug for AdminSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminSettings")
            .field("token", &"<redacted>")
            .field("consumers", &self.consumers)
            .finish()
    }
}

/// The default consumers: the four services and the monitor.
pub const DEFAULT_CONSUMERS: &str = "order,product,coupon,balance,monitor";

/// The admin API's options.
#[derive(Clone, clap::Args)]
pub struct AdminArgs {
    /// Bearer token of the admin API (dead-letter operations); unset = the API is off.
    #[arg(long = "admin-token", env = "ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Consumers whose dead-letter queues the admin API looks at (comma-separated).
    #[arg(long = "dlq-consumers", env = "DLQ_CONSUMERS", default_value = DEFAULT_CONSUMERS)]
    pub consumers: String,
    /// Where the admin API writes purged messages (default: the system temp directory).
    #[arg(long = "admin-purge-dir", env = "ADMIN_PURGE_DIR")]
    pub purge_dir: Option<PathBuf>,
}

impl std::fmt::Debug for AdminArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminArgs")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("consumers", &self.consumers)
            .finish()
    }
}

impl AdminSettings {
    /// `None` when no token is given: the admin API is off.
    pub fn from_args(args: AdminArgs, amqp: &AmqpSettings) -> Option<Self> {
        let token = args.token.filter(|token| !token.trim().is_empty())?;
        Some(Self {
            token,
            amqp: amqp.clone(),
            consumers: consumers_from(&args.consumers),
            purge_dir: args.purge_dir.unwrap_or_else(std::env::temp_dir),
        })
    }

    /// As [`Self::from_args`], from the environment alone.
    pub fn from_env(amqp: &AmqpSettings) -> anyhow::Result<Option<Self>> {
        Ok(Self::from_args(
            shared::config::from_env::<AdminArgs>()?,
            amqp,
        ))
    }
}

pub fn consumers_from(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(str::to_owned)
        .collect()
}

pub fn configure(cfg: &mut web::ServiceConfig, settings: AdminSettings) {
    cfg.app_data(web::Data::new(settings))
        .route("/admin/dlq", web::get().to(list))
        .route("/admin/dlq/replay", web::post().to(replay))
        .route("/admin/dlq/purge", web::post().to(purge))
        .route("/admin/dlq/{event_id}", web::get().to(show));
}

fn authorize(request: &HttpRequest, settings: &AdminSettings) -> Result<(), ApiError> {
    let presented = request
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or_default();
    if constant_time_eq(presented.as_bytes(), settings.token.as_bytes()) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, byte) in b.iter().enumerate() {
        diff |= usize::from(a.get(i).copied().unwrap_or(0) ^ byte);
    }
    diff == 0
}

async fn operator(settings: &AdminSettings) -> Result<Operator, ApiError> {
    Operator::connect(
        &settings.amqp.url,
        &settings.amqp.prefix,
        settings.consumers.clone(),
    )
    .await
    .map_err(ApiError::Unavailable)
}

fn actor(request: &HttpRequest) -> String {
    let peer = request
        .peer_addr()
        .map(|addr| addr.to_string())
        .unwrap_or_else(|| "?".into());
    format!("admin-api {peer}")
}

/// The list filter as a query string: lists are comma-separated (a query string has no arrays).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    queue: Option<String>,
    event_type: Option<String>,
    order_id: Option<i64>,
    reason: Option<String>,
    since: Option<chrono::DateTime<chrono::Utc>>,
    until: Option<chrono::DateTime<chrono::Utc>>,
    id: Option<String>,
}

impl From<ListQuery> for Filter {
    fn from(query: ListQuery) -> Self {
        let list = |value: Option<String>| value.map(|v| consumers_from(&v)).unwrap_or_default();
        Filter {
            queues: list(query.queue),
            event_type: query.event_type,
            order_id: query.order_id,
            reason: query.reason,
            since: query.since,
            until: query.until,
            ids: list(query.id),
        }
    }
}

async fn list(
    request: HttpRequest,
    settings: web::Data<AdminSettings>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    authorize(&request, &settings)?;
    let filter: Filter = query.into_inner().into();
    let listings = operator(&settings)
        .await?
        .list(&filter)
        .await
        .map_err(ApiError::Internal)?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "queues": listings })))
}

async fn show(
    request: HttpRequest,
    settings: web::Data<AdminSettings>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    authorize(&request, &settings)?;
    let found = operator(&settings)
        .await?
        .show(&path)
        .await
        .map_err(ApiError::Internal)?;
    found
        .map(|letter| HttpResponse::Ok().json(letter))
        .ok_or(ApiError::NotFound {
            what: "dead letter",
        })
}

/// A replay or purge request: the filter, plus the explicit consent an unfiltered one needs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Operation {
    #[serde(default)]
    filter: Filter,
    /// Required to act on every dead letter (an empty filter).
    #[serde(default)]
    all: bool,
    #[serde(default)]
    dry_run: bool,
    rate: Option<f64>,
    /// Purge only: must be true.
    #[serde(default)]
    confirm: bool,
}

impl Operation {
    fn check(&self) -> Result<(), ApiError> {
        if self.filter.is_everything() && !self.all {
            return Err(ApiError::validation(
                "all",
                "an empty filter selects every dead letter: set all=true",
            ));
        }
        if self
            .rate
            .is_some_and(|rate| !(rate > 0.0 && rate.is_finite()))
        {
            return Err(ApiError::validation(
                "rate",
                "must be a positive number of messages per second",
            ));
        }
        Ok(())
    }
}

async fn replay(
    request: HttpRequest,
    settings: web::Data<AdminSettings>,
    pool: web::Data<PgPool>,
    ValidJson(operation): ValidJson<Operation>,
) -> Result<HttpResponse, ApiError> {
    authorize(&request, &settings)?;
    operation.check()?;
    let options = ReplayOptions {
        dry_run: operation.dry_run,
        rate: operation.rate,
    };
    let outcome = operator(&settings)
        .await?
        .replay(&operation.filter, options, &|_| {})
        .await;
    finish(
        &pool,
        &actor(&request),
        "replay",
        &operation.filter,
        outcome,
    )
    .await
}

async fn purge(
    request: HttpRequest,
    settings: web::Data<AdminSettings>,
    pool: web::Data<PgPool>,
    ValidJson(operation): ValidJson<Operation>,
) -> Result<HttpResponse, ApiError> {
    authorize(&request, &settings)?;
    operation.check()?;
    if !operation.confirm {
        return Err(ApiError::validation(
            "confirm",
            "a purge deletes messages: set confirm=true",
        ));
    }
    let dump = settings.purge_dir.join(format!(
        "dlq-purge-{}.jsonl",
        chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ")
    ));
    let outcome = operator(&settings)
        .await?
        .purge(&operation.filter, &dump)
        .await;
    finish(&pool, &actor(&request), "purge", &operation.filter, outcome).await
}

async fn finish(
    pool: &PgPool,
    actor: &str,
    operation: &str,
    filter: &Filter,
    outcome: anyhow::Result<shared::dlq::OperationReport>,
) -> Result<HttpResponse, ApiError> {
    let entry = audit::Entry {
        actor,
        operation,
        filter,
        report: outcome.as_ref().map_err(|err| format!("{err:#}")),
    };
    let mut conn = pool.get().await?;
    audit::record(&mut conn, &entry).await?;
    let report = outcome.map_err(ApiError::Internal)?;
    Ok(HttpResponse::Ok().json(report))
}
