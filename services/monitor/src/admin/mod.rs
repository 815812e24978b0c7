//! The admin API: dead-letter operations over HTTP, behind a bearer token.
//!
//! Off unless `ADMIN_TOKEN` is set (the routes do not exist then). A missing or wrong token is
//! a 401 that does not say which; the token is compared in constant time and never logged, and
//! each client may make `ADMIN_RATE_LIMIT` admin requests a minute ([`auth`]).
//!
//! - [`archive`]: the archive of purged dead letters: list, restore.
//!
//! A thin adapter over [`shared::dlq`], which owns the operations, their guard and their audit
//! (the same as `sagactl dlq`'s): a route builds the request, calls the operation and renders
//! its result as JSON.

mod archive;
mod auth;
mod settings;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use shared::db::PgPool;
use shared::dlq::{
    self, Action, AuditError, AuditTrail, Filter, OperationError, Operator, Refusal, ReplayOptions,
    Request, consumers_from,
};
use shared::http::openapi::{BodyRefusals, NotFound, Refusals, Routes};
use shared::http::{ApiError, ValidJson, ValidQuery};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

pub use auth::{AdminToken, RateLimit};
pub use settings::{AdminArgs, AdminSettings};

/// Mounts the admin routes (`/admin/dlq...`) with `settings`.
pub fn configure(routes: &mut Routes<'_>, settings: AdminSettings) {
    routes
        .security_scheme(
            "admin_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        )
        .app_data(web::Data::new(settings))
        .route(__path_list, list)
        .route(__path_summary, summary)
        .route(__path_replay, replay)
        .route(__path_purge, purge)
        .route(archive::__path_list, archive::list)
        .route(archive::__path_restore, archive::restore)
        .route(__path_show, show);
}

shared::error_responses! {
    /// What every admin route may answer besides its own.
    AdminRefusals {
        401 => "A missing or wrong bearer token.",
        429 => "Too many admin requests from this client; `Retry-After` says when to try again.",
    }
}

/// The dead-letter queues and what matched.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
struct DeadLetters {
    queues: Vec<dlq::Listing>,
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
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// Consumers (`order`, ...) or dead-letter queue names, comma-separated.
    queue: Option<String>,
    event_type: Option<String>,
    order_id: Option<i64>,
    /// A case-insensitive part of the reason or the error.
    reason: Option<String>,
    /// Dead-lettered at or after.
    since: Option<chrono::DateTime<chrono::Utc>>,
    /// Dead-lettered before.
    until: Option<chrono::DateTime<chrono::Utc>>,
    /// Event ids, comma-separated.
    id: Option<String>,
    /// A group id, as the summary shows it.
    group: Option<String>,
}

impl ListQuery {
    /// The filter, once its group id has the shape of one (else a 422 naming `group`).
    fn filter(self) -> Result<Filter, ApiError> {
        let list = |value: Option<String>| value.map(|v| consumers_from(&v)).unwrap_or_default();
        let filter = Filter {
            queues: list(self.queue),
            event_type: self.event_type,
            order_id: self.order_id,
            reason: self.reason,
            since: self.since,
            until: self.until,
            ids: list(self.id),
            group: self.group,
        };
        // A list has no consent to give: the guard's selection rule is for moving things.
        match dlq::guard::selection(&filter, true) {
            Err(Refusal::Group) => Err(ApiError::validation("group", GROUP_SHAPE)),
            _ => Ok(filter),
        }
    }
}

/// What a malformed group id is told.
const GROUP_SHAPE: &str = "a group id is the 10 hex digits the summary shows";

/// List dead letters, by queue.
#[utoipa::path(
    get,
    path = "/admin/dlq",
    tag = "admin",
    security(("admin_token" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "Every dead-letter queue and its matching messages.",
            body = DeadLetters),
        AdminRefusals,
        Refusals,
    )
)]
async fn list(
    request: HttpRequest,
    settings: web::Data<AdminSettings>,
    query: ValidQuery<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    authorize(&request, &settings)?;
    let filter = query.into_inner().filter()?;
    let listings = operator(&settings)
        .await?
        .list(&filter)
        .await
        .map_err(ApiError::Internal)?;
    Ok(HttpResponse::Ok().json(DeadLetters { queues: listings }))
}

/// Group dead letters by queue, event type and error class, with counts and first and last
/// seen.
#[utoipa::path(
    get,
    path = "/admin/dlq/summary",
    tag = "admin",
    security(("admin_token" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "The matching dead letters' groups, largest first.",
            body = dlq::Summary),
        AdminRefusals,
        Refusals,
    )
)]
async fn summary(
    request: HttpRequest,
    settings: web::Data<AdminSettings>,
    query: ValidQuery<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    authorize(&request, &settings)?;
    let filter = query.into_inner().filter()?;
    let summary = operator(&settings)
        .await?
        .summary(&filter)
        .await
        .map_err(ApiError::Internal)?;
    Ok(HttpResponse::Ok().json(summary))
}

/// Read one dead letter (decrypted, with the monitor's keys).
#[utoipa::path(
    get,
    path = "/admin/dlq/{event_id}",
    tag = "admin",
    security(("admin_token" = [])),
    params(("event_id" = String, Path, description = "The event id (AMQP message id).")),
    responses(
        (status = 200, description = "The dead letter.", body = dlq::DeadLetter),
        NotFound,
        AdminRefusals,
        Refusals,
    )
)]
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
#[derive(Debug, Deserialize, utoipa::ToSchema)]
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
    #[schema(exclusive_minimum = 0)]
    rate: Option<f64>,
    /// Purge only: must be true.
    #[serde(default)]
    confirm: bool,
}

/// Replay dead letters to the queues they came from.
#[utoipa::path(
    post,
    path = "/admin/dlq/replay",
    tag = "admin",
    security(("admin_token" = [])),
    request_body = Operation,
    responses(
        (status = 200, description = "What was replayed (or would be, in a dry run).",
            body = dlq::OperationReport),
        AdminRefusals,
        BodyRefusals,
    )
)]
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
    run(&request, &settings, &pool, body.filter, body.all, action).await
}

/// Purge dead letters, keeping them in the archive (and in a file on the monitor's host) first.
#[utoipa::path(
    post,
    path = "/admin/dlq/purge",
    tag = "admin",
    security(("admin_token" = [])),
    request_body = Operation,
    responses(
        (status = 200, description = "What was purged, and where it was kept.",
            body = dlq::OperationReport),
        AdminRefusals,
        BodyRefusals,
    )
)]
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
        dump: Some(dump),
        confirmed: body.confirm,
    };
    run(&request, &settings, &pool, body.filter, body.all, action).await
}

/// The one operation for an authorized request; the report is the response body.
async fn run(
    request: &HttpRequest,
    settings: &AdminSettings,
    pool: &PgPool,
    filter: Filter,
    all: bool,
    action: Action,
) -> Result<HttpResponse, ApiError> {
    let operation = Request {
        actor: actor(request),
        filter,
        all,
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
        OperationError::EmptyGroup { operation, .. } => ApiError::validation(
            "filter.group",
            format!(
                "selects nothing to {operation} (handled already, or not this group?): \
                 GET /admin/dlq/summary lists the groups there are"
            ),
        ),
    })?;
    Ok(HttpResponse::Ok().json(report))
}

/// The guard's refusal as a 422 naming the body field to set.
fn refused(refusal: Refusal) -> ApiError {
    let message = match refusal {
        Refusal::Unfiltered => "an empty filter selects every dead letter: set all=true",
        Refusal::Rate => "must be a positive number of messages per second",
        Refusal::Unconfirmed => "a purge deletes messages: set confirm=true",
        Refusal::Group => return ApiError::validation("filter.group", GROUP_SHAPE),
    };
    ApiError::validation(refusal.field(), message)
}
