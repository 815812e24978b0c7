//! `order-service`: settings from the command line and environment (`--help` lists them),
//! then the service until SIGTERM or Ctrl-C.

use order_service::OrderArgs;

fn main() -> anyhow::Result<()> {
    shared::runtime::run(shared::service::serve(
        order_service::NAME,
        order_service::DEFAULT_PORT,
        env!("CARGO_PKG_VERSION"),
        async |settings, args: OrderArgs| order_service::build_with(settings, &args).await,
    ))
}
