//! `product-service`: loads settings, builds the service and runs it until SIGTERM or Ctrl-C.

use shared::service::ServiceSettings;
use shared::shutdown::Shutdown;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shared::telemetry::init(product_service::NAME);
    let settings = ServiceSettings::from_env(product_service::NAME, product_service::DEFAULT_PORT)?;
    let app = product_service::build(&settings).await?;
    tracing::info!(port = app.port(), "product service listening");
    app.run(Shutdown::from_os_signals()).await
}
