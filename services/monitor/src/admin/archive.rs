//! The archive of purged dead letters over HTTP: list it, and restore from it into the
//! dead-letter queues (audited like a replay or purge). Both on [`shared::dlq`], as the rest.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use shared::db::PgPool;
use shared::dlq::{self, Action, ArchiveQuery, Filter};
use shared::http::openapi::{BodyRefusals, Refusals};
use shared::http::{ApiError, ValidJson, ValidQuery};

use super::{AdminRefusals, AdminSettings, ListQuery, authorize, operator, run};

/// Archived messages a list answers at most.
const MAX_LIMIT: usize = 1_000;

/// The list filter, plus which archived messages and how many.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct ArchiveListQuery {
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
    /// Also the messages restored already (default: only those in the archive alone).
    #[serde(default)]
    restored: bool,
    /// At most this many, newest purge first (default 100, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// The archived messages.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(super) struct ArchivedMessages {
    messages: Vec<dlq::Archived>,
}

/// List the archive of purged dead letters, newest purge first.
#[utoipa::path(
    get,
    path = "/admin/dlq/archive",
    tag = "admin",
    security(("admin_token" = [])),
    params(ArchiveListQuery),
    responses(
        (status = 200, description = "The matching archived messages (bodies as they were \
            on the queue, decrypted with the monitor's keys).", body = ArchivedMessages),
        AdminRefusals,
        Refusals,
    )
)]
pub(super) async fn list(
    request: HttpRequest,
    settings: web::Data<AdminSettings>,
    pool: web::Data<PgPool>,
    query: ValidQuery<ArchiveListQuery>,
) -> Result<HttpResponse, ApiError> {
    authorize(&request, &settings)?;
    let query = query.into_inner();
    let limit = query.limit.unwrap_or(100);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::validation("limit", "must be from 1 to 1000"));
    }
    let restored = query.restored;
    let filter = ListQuery {
        queue: query.queue,
        event_type: query.event_type,
        order_id: query.order_id,
        reason: query.reason,
        since: query.since,
        until: query.until,
        id: query.id,
        group: query.group,
    }
    .filter()?;
    let mut conn = pool.get().await?;
    let archived = operator(&settings)
        .await?
        .archived(
            &mut conn,
            &ArchiveQuery {
                filter,
                restored,
                limit,
            },
        )
        .await
        .map_err(ApiError::Internal)?;
    Ok(HttpResponse::Ok().json(ArchivedMessages { messages: archived }))
}

/// A restore request body: the filter, plus the consent an unfiltered one needs.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Restoration {
    #[serde(default)]
    filter: Filter,
    /// Required to restore every archived message (an empty filter).
    #[serde(default)]
    all: bool,
}

/// Restore archived messages into the dead-letter queues they were purged from (each once),
/// from where they can be replayed.
#[utoipa::path(
    post,
    path = "/admin/dlq/archive/restore",
    tag = "admin",
    security(("admin_token" = [])),
    request_body = Restoration,
    responses(
        (status = 200, description = "What was restored.", body = dlq::OperationReport),
        AdminRefusals,
        BodyRefusals,
    )
)]
pub(super) async fn restore(
    request: HttpRequest,
    settings: web::Data<AdminSettings>,
    pool: web::Data<PgPool>,
    ValidJson(body): ValidJson<Restoration>,
) -> Result<HttpResponse, ApiError> {
    authorize(&request, &settings)?;
    run(
        &request,
        &settings,
        &pool,
        body.filter,
        body.all,
        Action::Restore,
    )
    .await
}
