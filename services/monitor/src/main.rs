//! `monitor-service`: settings from the command line and environment (`--help` lists them),
//! then the saga monitor until SIGTERM or Ctrl-C.

use monitor_service::MonitorArgs;
use monitor_service::admin::AdminSettings;

fn main() -> anyhow::Result<()> {
    shared::runtime::run(shared::service::serve(
        monitor_service::NAME,
        monitor_service::DEFAULT_PORT,
        env!("CARGO_PKG_VERSION"),
        async |settings, args: MonitorArgs| {
            let admin = AdminSettings::from_args(args.admin, &settings.amqp);
            monitor_service::build_with(settings, admin, args.retention.retention).await
        },
    ))
}
