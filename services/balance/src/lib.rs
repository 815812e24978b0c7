//! The balance service: users' prepaid money.
//!
//! - [`routes`]: `POST /balances/{user_id}/charge`, `GET /balances/{user_id}`,
//!   `GET /balances/{user_id}/history`.
//! - [`saga`]: step 4 of the order saga (pay), and the refund of a cancelled order.
//! - [`repo`]: the SQL, on a caller's connection so it composes inside one transaction.
//! - [`schema`]: diesel tables (see `migrations/balance` for the why).
//!
//! Every change to a balance writes a `balance_history` row in the same transaction, so each
//! cent is traceable to a charge or an order.

pub mod repo;
pub mod routes;
pub mod saga;
pub mod schema;

use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use shared::service::{Application, ServiceSettings, prepare_database};

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/balance");
pub const NAME: &str = "balance";
pub const DEFAULT_PORT: u16 = 8084;

/// The service's OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    shared::http::openapi::document(NAME, routes::configure)
}

/// Prepares the database and binds the service.
pub async fn build(settings: &ServiceSettings) -> anyhow::Result<Application> {
    let pool = prepare_database(&settings.database, MIGRATIONS).await?;
    shared::closed_sagas::describe(
        NAME,
        <shared::events::CouponProcessed as shared::envelope::SagaEvent>::TYPE,
    );
    Application::build(
        settings,
        pool,
        saga::handlers(&settings.keys),
        routes::configure,
    )
}
