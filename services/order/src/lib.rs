//! The order service: accepts orders, starts their sagas, records how each one ends.
//!
//! - [`routes`]: `POST /orders`, `GET /orders/{id}` (with the `wait_ms` long poll),
//!   `GET /orders?user_id=`, `POST /orders/{id}/cancel`.
//! - [`deadline`]: `SAGA_DEADLINE`, and the sweep that ends orders past theirs.
//! - [`domain`]: the order request and its validation, statuses.
//! - [`metrics`]: sagas started, ended (by outcome and failure code), their duration, in flight.
//! - [`saga`]: the order's side of the choreography: completion, failure, cancellation.
//! - [`waiters`]: long-poll waiters, woken through LISTEN/NOTIFY so that a status change made
//!   by any instance wakes a waiter on every instance.
//! - [`repo`]: the SQL, on a caller's connection.
//! - [`schema`]: diesel tables (see `migrations/order` for the why).

pub mod deadline;
pub mod domain;
pub mod metrics;
pub mod repo;
pub mod routes;
pub mod saga;
pub mod schema;
pub mod waiters;

use std::sync::Arc;
use std::time::Duration;

use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use shared::service::{Application, ServiceSettings, prepare_database};

use crate::deadline::{DeadlineArgs, SagaDeadline};

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/order");
pub const NAME: &str = "order";
pub const DEFAULT_PORT: u16 = 8081;

/// The service's OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    shared::http::openapi::document(NAME, |routes| {
        routes::configure(
            routes,
            Arc::new(waiters::Waiters::default()),
            SagaDeadline::default(),
        )
    })
}

/// The service's own settings, beside those every service has.
#[derive(Debug, Clone, clap::Args)]
pub struct OrderArgs {
    #[command(flatten)]
    pub deadline: DeadlineArgs,
}

impl OrderArgs {
    /// The settings from the environment alone (`sagactl up`, which has no order flags).
    pub fn from_env() -> anyhow::Result<Self> {
        use clap::{Args, FromArgMatches};
        let matches = Self::augment_args(clap::Command::new(NAME)).try_get_matches_from([NAME])?;
        Ok(Self::from_arg_matches(&matches)?)
    }
}

/// [`build_with`] the default deadline (tests, tools).
pub async fn build(settings: &ServiceSettings) -> anyhow::Result<Application> {
    build_with(
        settings,
        &OrderArgs {
            deadline: DeadlineArgs {
                deadline: SagaDeadline::default().duration(),
            },
        },
    )
    .await
}

/// Prepares the database and binds the service, with its status listener and deadline sweep.
pub async fn build_with(
    settings: &ServiceSettings,
    args: &OrderArgs,
) -> anyhow::Result<Application> {
    let deadline = SagaDeadline::new(
        args.deadline.deadline,
        shared::config::retry_ladder(&settings.consumer),
    )?;
    let pool = prepare_database(&settings.database, MIGRATIONS).await?;
    let waiters = Arc::new(waiters::Waiters::default());
    let routes = {
        let waiters = waiters.clone();
        move |routes: &mut shared::http::openapi::Routes<'_>| {
            routes::configure(routes, waiters.clone(), deadline)
        }
    };
    metrics::describe();
    // LISTEN needs a session of its own: never through a transaction-pooling PgBouncer.
    let url = settings.database.direct_url.clone();
    let in_flight_pool = pool.clone();
    let (sweep_pool, keys) = (pool.clone(), settings.keys.clone());
    Ok(
        Application::build(settings, pool, saga::handlers(&settings.keys), routes)?
            .with_task(move |shutdown| {
                waiters::listen(waiters, url, Duration::from_secs(30), shutdown)
            })
            .with_task(move |shutdown| {
                metrics::in_flight(in_flight_pool, Duration::from_secs(5), shutdown)
            })
            .with_task(move |shutdown| {
                deadline::sweep_until_shutdown(sweep_pool, keys, deadline, shutdown)
            }),
    )
}
