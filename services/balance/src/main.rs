//! `balance-service`: loads settings, builds the service and runs it until SIGTERM or Ctrl-C.

use shared::service::ServiceSettings;
use shared::shutdown::Shutdown;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shared::telemetry::init(balance_service::NAME);
    let settings = ServiceSettings::from_env(balance_service::NAME, balance_service::DEFAULT_PORT)?;
    let app = balance_service::build(&settings).await?;
    tracing::info!(port = app.port(), "balance service listening");
    app.run(Shutdown::from_os_signals()).await
}
