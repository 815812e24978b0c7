//! `outbox-relay`: loads settings, runs the relay until SIGTERM or Ctrl-C.

use outbox_relay::RelaySettings;
use shared::shutdown::Shutdown;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shared::telemetry::init("outbox-relay");
    let settings = RelaySettings::from_env()?;
    let shutdown = Shutdown::from_os_signals();
    outbox_relay::run(settings, shutdown).await?;
    tracing::info!("outbox relay stopped");
    Ok(())
}
