//! `outbox-relay`: settings from the command line and environment (`--help` lists them), then
//! the relay until SIGTERM or Ctrl-C.

use clap::Parser;
use outbox_relay::config::RelayCli;
use shared::shutdown::Shutdown;

fn main() -> anyhow::Result<()> {
    shared::runtime::run(relay())
}

async fn relay() -> anyhow::Result<()> {
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
