//! The product service: what is for sale, at what price, and how many are left.
//!
//! - [`routes`]: `POST /products`, `GET /products`, `GET /products/{id}`,
//!   `POST /products/{id}/stock`.
//! - [`saga`]: step 2 of the order saga (reserve and price), and the restoration of the stock
//!   when a later step fails.
//! - [`repo`]: the SQL, on a caller's connection so it composes inside one transaction.
//! - [`schema`]: diesel tables (see `migrations/product` for the why).
//!
//! Every change to a stock level writes a `stock_movements` row in the same transaction, so each
//! unit is traceable to an adjustment or an order.

pub mod repo;
pub mod routes;
pub mod saga;
pub mod schema;

use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use shared::service::{Application, ServiceSettings, prepare_database};

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/product");
pub const NAME: &str = "product";
pub const DEFAULT_PORT: u16 = 8082;

/// The service's OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    shared::http::openapi::document(NAME, routes::configure)
}

/// Prepares the database and binds the service.
pub async fn build(settings: &ServiceSettings) -> anyhow::Result<Application> {
    let pool = prepare_database(&settings.database, MIGRATIONS).await?;
    shared::closed_sagas::describe(
        NAME,
        <shared::events::OrderProcessingStarted as shared::envelope::SagaEvent>::TYPE,
    );
    Application::build(
        settings,
        pool,
        saga::handlers(&settings.keys),
        routes::configure,
    )
}
