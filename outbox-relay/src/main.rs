//! `outbox-relay`: settings from the command line and environment (`--help` lists them), then
//! the relay until SIGTERM or Ctrl-C.

use clap::Parser;
use outbox_relay::config::RelayCli;
use shared::shutdown::Shutdown;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = RelayCli::parse();
    shared::config::refuse_renamed_variables()?;
    shared::telemetry::init("outbox-relay");
    let settings = cli.settings()?;
    let shutdown = Shutdown::from_os_signals();
    let outcome = outbox_relay::run(settings, shutdown).await;
    tracing::info!("outbox relay stopped");
    shared::telemetry::shutdown();
    outcome
}
