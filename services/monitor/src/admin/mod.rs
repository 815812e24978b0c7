//! The admin API: dead-letter operations over HTTP, behind a bearer token.
//!
//! Off unless `ADMIN_TOKEN` is set (the routes do not exist then). A missing or wrong token is
//! a 401 that does not say which; the token is compared in constant time and never logged, and
//! each client may make `ADMIN_RATE_LIMIT` admin requests a minute ([`auth`]).
//!
//! A thin adapter over [`shared::dlq`], which owns the operations, their guard and their audit
//! (the same as `sagactl dlq`'s): a route builds the request, calls the operation and renders
//! its result as JSON.

mod auth;

use std::num::NonZeroU32;
use std::path::PathBuf;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use shared::config::AmqpSettings;
use shared::db::PgPool;
use shared::dlq::{
    self, Action, AuditError, AuditTrail, DEFAULT_CONSUMERS, Filter, OperationError, Operator,
    Refusal, ReplayOptions, Request, consumers_from,
};
use shared::http::{ApiError, ValidJson};
use shared::seal::Keyring;

pub use auth::{AdminToken, RateLimit};

/// The admin API's settings.
#[derive(Clone)]
pub struct AdminSettings {
    /// `ADMIN_TOKEN`.
    pub token: AdminToken,
    /// `ADMIN_RATE_LIMIT`: admin requests per client and minute.
    pub rate_limit: RateLimit,
    /// The broker whose dead-letter queues are operated on.
    pub amqp: AmqpSettings,
    /// `DLQ_CONSUMERS`: the consumers whose dead-letter queues exist.
    pub consumers: Vec<String>,
    /// `ADMIN_PURGE_DIR`: where purged messages are written.
    pub purge_dir: PathBuf,
    /// The monitor's keys: list and show decrypt with them (replays send the sealed bytes).
    pub keys: Option<Keyring>,
}

impl std::fmt::Debug for AdminSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminSettings")
            .field("token", &self.token)
            .field("consumers", &self.consumers)
            .finish()
    }
}

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
    /// Admin requests each client may make per minute (a burst of as many), against token
    /// guessing; past it, 429 with Retry-After.
    #[arg(
        long = "admin-rate-limit",
        env = "ADMIN_RATE_LIMIT",
        value_name = "PER_MINUTE",
        default_value = "60"
    )]
    pub rate_limit: NonZeroU32,
    /// The broker identity the admin API operates dead letters as: the operator's, since the
    /// monitor's own consumer identity may not read dead-letter queues (default: `AMQP_URL`).
    #[arg(
        id = "admin_amqp_url",
        long = "admin-amqp-url",
        env = "ADMIN_AMQP_URL",
        hide_env_values = true
    )]
    pub amqp_url: Option<String>,
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
        let token = AdminToken::new(args.token?)?;
        let mut amqp = amqp.clone();
        if let Some(url) = args.amqp_url.filter(|url| !url.trim().is_empty()) {
            amqp.url = url;
        }
        Some(Self {
            token,
            rate_limit: RateLimit::per_minute(args.rate_limit),
            amqp,
            consumers: consumers_from(&args.consumers),
            purge_dir: args.purge_dir.unwrap_or_else(std::env::temp_dir),
            keys: None,
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

/// Mounts the admin routes (`/admin/dlq...`) with `settings`.
pub fn configure(cfg: &mut web::ServiceConfig, settings: AdminSettings) {
    cfg.app_data(web::Data::new(settings))
        .route("/admin/dlq", web::get().to(list))
        .route("/admin/dlq/replay", web::post().to(replay))
        .route("/admin/dlq/purge", web::post().to(purge))
        .route("/admin/dlq/{event_id}", web::get().to(show));
}

fn authorize(request: &HttpRequest, settings: &AdminSettings) -> Result<(), ApiError> {
    auth::authorize(request, &settings.token, &settings.rate_limit)
}

async fn operator(settings: &AdminSettings) -> Result<Operator, ApiError> {
    Operator::connect(&settings.amqp, settings.consumers.clone())
        .await
        .map(|operator| operator.with_keys(settings.keys.clone()))
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

/// A replay or purge request body: the filter, plus the explicit consent an unfiltered one
/// needs. One shape for both routes; each reads the fields it uses.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Operation {
    #[serde(default)]
    filter: Filter,
    /// Required to act on every dead letter (an empty filter).
    #[serde(default)]
    all: bool,
    /// Replay only (a purge refuses it).
    #[serde(default)]
    dry_run: bool,
    /// Replay only: messages per second.
    rate: Option<f64>,
    /// Purge only: must be true.
    #[serde(default)]
    confirm: bool,
}

async fn replay(
    request: HttpRequest,
    settings: web::Data<AdminSettings>,
    pool: web::Data<PgPool>,
    ValidJson(body): ValidJson<Operation>,
) -> Result<HttpResponse, ApiError> {
    authorize(&request, &settings)?;
    let action = Action::Replay(ReplayOptions {
        dry_run: body.dry_run,
        rate: body.rate,
    });
    run(&request, &settings, &pool, body, action).await
}

async fn purge(
    request: HttpRequest,
    settings: web::Data<AdminSettings>,
    pool: web::Data<PgPool>,
    ValidJson(body): ValidJson<Operation>,
) -> Result<HttpResponse, ApiError> {
    authorize(&request, &settings)?;
    // A purge cannot be rehearsed: taken as a real one, a dry run would delete what its caller
    // meant only to look at.
    if body.dry_run {
        return Err(ApiError::validation(
            "dry_run",
            "a purge has no dry run: GET /admin/dlq lists what it would remove",
        ));
    }
    let dump = settings.purge_dir.join(format!(
        "dlq-purge-{}.jsonl",
        chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ")
    ));
    let action = Action::Purge {
        dump,
        confirmed: body.confirm,
    };
    run(&request, &settings, &pool, body, action).await
}

/// The one operation for an authorized request; the report is the response body.
async fn run(
    request: &HttpRequest,
    settings: &AdminSettings,
    pool: &PgPool,
    body: Operation,
    action: Action,
) -> Result<HttpResponse, ApiError> {
    let operation = Request {
        actor: actor(request),
        filter: body.filter,
        all: body.all,
        action,
    };
    // Refused before connecting: a request that cannot run costs no broker connection.
    operation.check().map_err(refused)?;
    let report = dlq::execute(
        &operator(settings).await?,
        AuditTrail::Pool(pool),
        &operation,
        &|_| {},
    )
    .await
    .map_err(|err| match err {
        OperationError::Refused(refusal) => refused(refusal),
        OperationError::Audit(AuditError::Pool(err)) => err.into(),
        OperationError::Audit(AuditError::Query(err)) => err.into(),
        OperationError::Failed(err) => ApiError::Internal(err),
    })?;
    Ok(HttpResponse::Ok().json(report))
}

/// The guard's refusal as a 422 naming the body field to set.
fn refused(refusal: Refusal) -> ApiError {
    let message = match refusal {
        Refusal::Unfiltered => "an empty filter selects every dead letter: set all=true",
        Refusal::Rate => "must be a positive number of messages per second",
        Refusal::Unconfirmed => "a purge deletes messages: set confirm=true",
    };
    ApiError::validation(refusal.field(), message)
}
