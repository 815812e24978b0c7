//! The coupon service: discount coupons, issued first come, first served, used by orders.
//!
//! - [`routes`]: `POST /coupons`, `GET /coupons/{id}`, `POST /coupons/{id}/issue`,
//!   `GET /user-coupons/{id}`, `GET /users/{user_id}/coupons`.
//! - [`saga`]: step 3 of the order saga (use the coupon), and its restoration when a later step
//!   fails or the order is refunded.
//! - [`repo`]: the SQL, on a caller's connection so it composes inside one transaction.
//! - [`schema`]: diesel tables (see `migrations/coupon` for the why).
//!
//! Issuing never exceeds a coupon's quantity because the count moves by a conditional update on
//! the coupon's row; every use and restoration writes a `coupon_usages` row in the same
//! transaction, at most one of each per order.

pub mod repo;
pub mod routes;
pub mod saga;
pub mod schema;

use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use shared::service::{Application, ServiceSettings, prepare_database};

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/coupon");
pub const NAME: &str = "coupon";
pub const DEFAULT_PORT: u16 = 8083;

/// The service's OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    shared::http::openapi::document(NAME, routes::configure)
}

/// Prepares the database and binds the service.
pub async fn build(settings: &ServiceSettings) -> anyhow::Result<Application> {
    let pool = prepare_database(&settings.database, MIGRATIONS).await?;
    shared::closed_sagas::describe(
        NAME,
        <shared::events::StockProcessed as shared::envelope::SagaEvent>::TYPE,
    );
    Application::build(
        settings,
        pool,
        saga::handlers(&settings.keys),
        routes::configure,
    )
}
