//! `monitor-service`: loads settings, builds the service and runs it until SIGTERM or Ctrl-C.

use shared::service::ServiceSettings;
use shared::shutdown::Shutdown;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shared::telemetry::init(monitor_service::NAME);
    let settings = ServiceSettings::from_env(monitor_service::NAME, monitor_service::DEFAULT_PORT)?;
    let app = monitor_service::build(&settings).await?;
    tracing::info!(port = app.port(), "monitor service listening");
    app.run(Shutdown::from_os_signals()).await
}
