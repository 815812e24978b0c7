//! `balance-service`: settings from the command line and environment (`--help` lists them),
//! then the service until SIGTERM or Ctrl-C.

use shared::service::NoOptions;

fn main() -> anyhow::Result<()> {
    shared::runtime::run(shared::service::serve(
        balance_service::NAME,
        balance_service::DEFAULT_PORT,
        env!("CARGO_PKG_VERSION"),
        async |settings, _: NoOptions| balance_service::build(settings).await,
    ))
}
