//! `coupon-service`: loads settings, builds the service and runs it until SIGTERM or Ctrl-C.

use shared::service::ServiceSettings;
use shared::shutdown::Shutdown;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shared::telemetry::init(coupon_service::NAME);
    let settings = ServiceSettings::from_env(coupon_service::NAME, coupon_service::DEFAULT_PORT)?;
    let app = coupon_service::build(&settings).await?;
    tracing::info!(port = app.port(), "coupon service listening");
    app.run(Shutdown::from_os_signals()).await
}
