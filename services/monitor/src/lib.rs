//! The saga monitor: every saga event, recorded once, in an append-only event store.
//!
//! - [`store`]: the catch-all consumer that appends each event, and the timeline query.
//! - [`routes`]: `GET /sagas/{order_id}`, the ordered timeline of one saga.
//! - [`admin`]: dead-letter operations over HTTP, behind a bearer token (off without one); the
//!   operations and their audit trail are `shared::dlq`'s, the `dlq_audit` table is in this
//!   service's database.
//! - [`sagas`]: per-saga state derived from the events; the monitor's gauges and histograms.
//! - [`retention`]: deletes ended sagas past `MONITOR_RETENTION` (off by default).

pub mod admin;
pub mod retention;
pub mod routes;
pub mod sagas;
pub mod store;

use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use shared::consumer::Handlers;
use shared::service::{Application, ServiceSettings, prepare_database};

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/monitor");
pub const NAME: &str = "monitor";
pub const DEFAULT_PORT: u16 = 8085;

/// Events applied in one transaction at most, when that many are waiting.
pub const BATCH: usize = 32;

/// The monitor's own options, besides the ones every service takes.
#[derive(Debug, Clone, clap::Args)]
pub struct MonitorArgs {
    #[command(flatten)]
    pub admin: admin::AdminArgs,
    #[command(flatten)]
    pub retention: retention::RetentionArgs,
}

/// The OpenAPI document of the public routes (the one a running monitor serves adds the admin
/// API when it is on).
pub fn openapi() -> utoipa::openapi::OpenApi {
    shared::http::openapi::document(NAME, routes::configure)
}

/// Prepares the database and binds the service, its options from the environment: the admin
/// API is on if `ADMIN_TOKEN` is set, retention if `MONITOR_RETENTION` is.
pub async fn build(settings: &ServiceSettings) -> anyhow::Result<Application> {
    let args = shared::config::from_env::<MonitorArgs>()?;
    let admin = admin::AdminSettings::from_args(args.admin, &settings.amqp);
    build_with(settings, admin, args.retention.retention).await
}

/// As [`build`], with the admin API configured explicitly (`None` = off) and no retention.
pub async fn build_with_admin(
    settings: &ServiceSettings,
    admin: Option<admin::AdminSettings>,
) -> anyhow::Result<Application> {
    build_with(settings, admin, None).await
}

/// As [`build`], with the admin API (`None` = off) and the event store's retention (`None` =
/// keep everything) given.
pub async fn build_with(
    settings: &ServiceSettings,
    admin: Option<admin::AdminSettings>,
    retention: Option<std::time::Duration>,
) -> anyhow::Result<Application> {
    let pool = prepare_database(&settings.database, MIGRATIONS).await?;
    let admin = admin.map(|admin| admin::AdminSettings {
        keys: Some(settings.keys.clone()),
        ..admin
    });
    sagas::describe();
    let gauge_pool = pool.clone();
    let retention_pool = pool.clone();
    let every = settings.inbox.cleanup_interval;
    let routes = move |routes: &mut shared::http::openapi::Routes<'_>| {
        routes::configure(routes);
        if let Some(admin) = admin.clone() {
            admin::configure(routes, admin);
        }
    };
    Ok(Application::build(
        settings,
        pool,
        // Every saga event reaches the monitor, five per order: batching them is what keeps the
        // observer from costing as much as the saga. Safe: its only shared rows are keyed by
        // saga, which batches lock in saga order. The event store is keyed by event id and
        // skips an id it has, so it deduplicates without an inbox claim.
        Handlers::new()
            .on_any(store::Record)
            .batched(BATCH)
            .self_deduplicating(),
        routes,
    )?
    .with_task(move |shutdown| {
        sagas::gauges(gauge_pool, std::time::Duration::from_secs(5), shutdown)
    })
    .with_task(move |shutdown| async move {
        if let Some(retention) = retention {
            retention::run(retention_pool, retention, every, shutdown).await
        }
    }))
}
