//! `monitor-service`: settings from the command line and environment (`--help` lists them),
//! then the saga monitor until SIGTERM or Ctrl-C.

use monitor_service::admin::{AdminArgs, AdminSettings};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shared::service::serve(
        monitor_service::NAME,
        monitor_service::DEFAULT_PORT,
        env!("CARGO_PKG_VERSION"),
        async |settings, admin: AdminArgs| {
            let admin = AdminSettings::from_args(admin, &settings.amqp);
            monitor_service::build_with_admin(settings, admin).await
        },
    )
    .await
}
