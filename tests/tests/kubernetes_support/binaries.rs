//! The binaries a Deployment may run, as each one's `main` builds its command line: the
//! variables it accepts, the port its probes must reach and what its pod must hold.

use std::collections::BTreeMap;

use clap::{Args, CommandFactory};
use shared::service::{NoOptions, ServiceSettings};

use super::Source;

/// The path of every readiness probe of a service, and of every liveness probe.
pub const READY: &str = "/ready";
pub const HEALTH: &str = "/health";

/// Variables read outside the command line: the log format and filter, and the standard
/// OpenTelemetry ones (`shared::telemetry`), and the runtime's threads (`shared::runtime`, read
/// before the command line is).
const TELEMETRY: [&str; 3] = ["LOG_FORMAT", "RUST_LOG", shared::runtime::WORKER_THREADS];
const TELEMETRY_PREFIX: &str = "OTEL_";

/// A binary a Deployment may run, as its `main` builds its command line.
pub struct Binary {
    command: clap::Command,
    /// The variable of the port its probes must reach.
    pub port_variable: String,
    /// Its readiness path: the relay serves no `/ready` (its probes explain why).
    pub readiness: &'static str,
    /// Whether it takes event keys, and holds a signing key (a producer of events).
    pub keys: bool,
    pub signs: bool,
}

fn service<A: Args>(name: &str, port: u16) -> (String, Binary) {
    let binary = Binary {
        // What `shared::service::serve` parses.
        command: A::augment_args(ServiceSettings::command(name, port)),
        port_variable: format!("{}_PORT", name.to_uppercase()),
        readiness: READY,
        keys: true,
        signs: shared::events::PRODUCERS.contains(&name),
    };
    (format!("{name}-service"), binary)
}

pub fn binaries() -> BTreeMap<String, Binary> {
    use monitor_service::admin::AdminArgs;
    let relay = Binary {
        command: outbox_relay::config::RelayCli::command(),
        port_variable: "RELAY_METRICS_PORT".into(),
        readiness: HEALTH,
        keys: false,
        signs: false,
    };
    BTreeMap::from([
        service::<NoOptions>(order_service::NAME, order_service::DEFAULT_PORT),
        service::<NoOptions>(product_service::NAME, product_service::DEFAULT_PORT),
        service::<NoOptions>(coupon_service::NAME, coupon_service::DEFAULT_PORT),
        service::<NoOptions>(balance_service::NAME, balance_service::DEFAULT_PORT),
        service::<AdminArgs>(monitor_service::NAME, monitor_service::DEFAULT_PORT),
        ("outbox-relay".to_owned(), relay),
    ])
}

impl Binary {
    pub fn accepts(&self, variable: &str) -> bool {
        TELEMETRY.contains(&variable)
            || variable.starts_with(TELEMETRY_PREFIX)
            || self
                .command
                .get_arguments()
                .any(|arg| arg.get_env().is_some_and(|env| env == variable))
    }

    /// The port it listens on given `environment`: the variable's value, else its default.
    pub fn port(&self, environment: &BTreeMap<String, Source>) -> u64 {
        if let Some(source) = environment.get(&self.port_variable) {
            let Source::Plain(value) = source else {
                panic!("{} from a Secret", self.port_variable)
            };
            return value.parse().unwrap();
        }
        let arg = self.command.get_arguments().find(|arg| {
            arg.get_env()
                .is_some_and(|env| env == self.port_variable.as_str())
        });
        let default = arg.unwrap().get_default_values()[0].to_str().unwrap();
        default.parse().unwrap()
    }
}
