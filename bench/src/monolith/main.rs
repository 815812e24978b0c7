//! `saga-monolith`: the saga benchmark's reference, the single-database application the design
//! starts from (docs/design.md#the-problem). The same order flow as the four services, written
//! with the same repository and rule functions, but as ONE local transaction in ONE database: no
//! outbox, no inbox, no broker, no relay.
//! Behind the same HTTP front (actix-web, the shared extractors, error bodies and metrics
//! middleware, the services' own product, coupon, balance and order-read routes), so that the
//! benchmark's ratio between the two is the price of distribution and nothing else.
//!
//! - [`schema`]: the four services' migrations applied to one database.
//! - [`place`]: `POST /orders` as one transaction.
//!
//! Settings: `MONOLITH_DATABASE_URL` (`postgres://postgres@127.0.0.1:5432/saga_monolith`,
//! created if missing), `MONOLITH_PORT` (8090), and the services' `HTTP_HOST`, `HTTP_WORKERS`,
//! `DB_POOL_SIZE`, `DB_POOL_TIMEOUT`.

mod place;
mod schema;

use std::sync::Arc;

use actix_web::{App, HttpServer, web};
use shared::config::{DatabaseSettings, env_or, env_parse};
use shared::db::{build_pool, create_database_if_missing};
use shared::http::health::Readiness;
use shared::http::metrics::ServiceName;
use shared::shutdown::Shutdown;

const NAME: &str = "monolith";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    bench::command_line::parse(
        "saga-monolith",
        "The order flow as one transaction in one database, behind the services' HTTP front",
    );
    shared::telemetry::init(NAME);
    let database = DatabaseSettings::from_env(env_or(
        "MONOLITH_DATABASE_URL",
        "postgres://postgres@127.0.0.1:5432/saga_monolith",
    ))?;
    let host = env_or("HTTP_HOST", "127.0.0.1");
    let port: u16 = env_parse("MONOLITH_PORT", 8090)?;
    let workers: usize = env_parse("HTTP_WORKERS", 0)?;

    create_database_if_missing(&database.url).await?;
    schema::apply(&database.url).await?;
    let pool = build_pool(&database)?;

    shared::metrics::install();
    shared::metrics::describe_common();
    let readiness = web::Data::new(Readiness {
        pool: pool.clone(),
        broker_connected: Vec::new(),
    });
    let pool_data = web::Data::new(pool);
    let service_name = web::Data::new(ServiceName(NAME.to_owned()));
    // Orders are terminal when POST answers, so no listener ever needs to wake a waiter.
    let waiters = Arc::new(order_service::waiters::Waiters::default());
    let (listener, port) = shared::http::bind(&host, port)?;
    let mut server = HttpServer::new(move || {
        App::new()
            .wrap(actix_web::middleware::from_fn(shared::http::metrics::track))
            // The services' HTTP front to the last layer, so that a comparison is fair.
            .wrap(actix_web::middleware::from_fn(
                shared::telemetry::http::trace,
            ))
            .app_data(service_name.clone())
            .route("/metrics", web::get().to(shared::http::metrics::render))
            .app_data(pool_data.clone())
            .app_data(readiness.clone())
            .configure(shared::http::configure_extractors)
            .configure(shared::http::health::configure)
            // Before the mounted routes: their `/orders` resource answers 405 to any method it
            // does not take, so this one must be matched first.
            .route("/orders", web::post().to(place::place))
            .configure(|cfg| {
                shared::http::openapi::mount(cfg, |routes| {
                    product_service::routes::configure(routes);
                    coupon_service::routes::configure(routes);
                    balance_service::routes::configure(routes);
                    order_service::routes::configure_reads(routes, waiters.clone());
                })
            })
    })
    .disable_signals()
    .shutdown_timeout(10);
    if workers > 0 {
        server = server.workers(workers);
    }
    let server = server.listen(listener)?.run();
    tracing::info!(port, "monolith listening");
    let handle = server.handle();
    let running = tokio::spawn(server);
    Shutdown::from_os_signals().wait().await;
    handle.stop(true).await;
    let _ = running.await;
    shared::telemetry::shutdown();
    Ok(())
}
