//! `order-service`: loads settings, builds the service and runs it until SIGTERM or Ctrl-C.

use shared::service::ServiceSettings;
use shared::shutdown::Shutdown;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shared::telemetry::init(order_service::NAME);
    let settings = ServiceSettings::from_env(order_service::NAME, order_service::DEFAULT_PORT)?;
    let app = order_service::build(&settings).await?;
    tracing::info!(port = app.port(), "order service listening");
    app.run(Shutdown::from_os_signals()).await
}
