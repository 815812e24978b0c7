//! `sagactl gateway config`: the API gateway's nginx configuration for given service instances,
//! rendered from `deploy/gateway/nginx.conf.template` (compiled in). One public port routes
//! every public path to its service's instances; operator endpoints stay off it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use shared::config::parse_duration;

pub mod contract;
pub mod nginx;
pub mod page;

const TEMPLATE: &str = include_str!("../../deploy/gateway/nginx.conf.template");
const DEFAULT_RUNTIME_DIR: &str = "/tmp/saga-gateway";

/// Which public paths go to which service: (service, path prefixes).
pub const ROUTES: [(&str, &[&str]); 5] = [
    ("order", &["orders"]),
    ("product", &["products"]),
    ("coupon", &["coupons", "user-coupons", "users"]),
    ("balance", &["balances"]),
    ("monitor", &["sagas"]),
];

#[derive(Debug, Args)]
pub struct GatewayArgs {
    #[command(subcommand)]
    command: GatewayCommand,
}

#[derive(Debug, Subcommand)]
enum GatewayCommand {
    /// Prints (or writes) the nginx configuration of the gateway.
    Config(ConfigArgs),
}

/// `gateway config`: the gateway's settings, where the services are, where to write.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    #[command(flatten)]
    pub settings: Settings,
    #[command(flatten)]
    pub instances: Instances,
    /// Write the configuration here instead of printing it.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Every service's instances, each a `host:port` list.
#[derive(Debug, Clone, Args)]
pub struct Instances {
    #[arg(
        long,
        env = "GATEWAY_ORDER",
        default_value = "127.0.0.1:8081",
        value_delimiter = ','
    )]
    pub order: Vec<String>,
    #[arg(
        long,
        env = "GATEWAY_PRODUCT",
        default_value = "127.0.0.1:8082",
        value_delimiter = ','
    )]
    pub product: Vec<String>,
    #[arg(
        long,
        env = "GATEWAY_COUPON",
        default_value = "127.0.0.1:8083",
        value_delimiter = ','
    )]
    pub coupon: Vec<String>,
    #[arg(
        long,
        env = "GATEWAY_BALANCE",
        default_value = "127.0.0.1:8084",
        value_delimiter = ','
    )]
    pub balance: Vec<String>,
    #[arg(
        long,
        env = "GATEWAY_MONITOR",
        default_value = "127.0.0.1:8085",
        value_delimiter = ','
    )]
    pub monitor: Vec<String>,
}

impl Instances {
    /// `instances(service)` for each service of [`ROUTES`].
    pub fn from_fn(mut instances: impl FnMut(&str) -> Vec<String>) -> Self {
        Self {
            order: instances("order"),
            product: instances("product"),
            coupon: instances("coupon"),
            balance: instances("balance"),
            monitor: instances("monitor"),
        }
    }

    /// The instances of `service` (one of [`ROUTES`]).
    fn of(&self, service: &str) -> &[String] {
        match service {
            "order" => &self.order,
            "product" => &self.product,
            "coupon" => &self.coupon,
            "balance" => &self.balance,
            _ => &self.monitor,
        }
    }
}

/// How the gateway listens, limits, times out and logs, wherever the services are.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// Where the gateway listens.
    #[arg(long, env = "GATEWAY_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Requests per second per client address before a 429.
    #[arg(long, env = "GATEWAY_RATE_LIMIT", default_value_t = 100)]
    pub rate: u32,
    /// Requests a client may send at once above the rate (at least 1).
    #[arg(long, env = "GATEWAY_BURST", default_value_t = 200)]
    pub burst: u32,
    /// Largest request body (nginx size: 64k, 1m).
    #[arg(long, env = "GATEWAY_BODY_LIMIT", default_value = "64k")]
    pub body_limit: String,
    /// How long an upstream may take to answer, but for `wait_ms` long polls on /orders.
    #[arg(long, env = "GATEWAY_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// How long /orders may take: above the longest `wait_ms` the order service allows (30 s).
    #[arg(long, env = "GATEWAY_LONG_POLL_TIMEOUT", default_value = "35s", value_parser = parse_duration)]
    pub long_poll_timeout: Duration,
    #[arg(long, env = "GATEWAY_CONNECT_TIMEOUT", default_value = "2s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// nginx's pid file and temporary files [default: /tmp/saga-gateway; `sagactl up`: a new
    /// temporary directory, removed when it stops]
    #[arg(long, env = "GATEWAY_RUNTIME_DIR")]
    pub runtime_dir: Option<PathBuf>,
    /// The JSON access log (a file, or /dev/stdout).
    #[arg(long, env = "GATEWAY_ACCESS_LOG", default_value = "/dev/stdout")]
    pub access_log: String,
    /// nginx's own error log.
    #[arg(long, env = "GATEWAY_ERROR_LOG", default_value = "stderr")]
    pub error_log: String,
}

impl Settings {
    /// The settings the `GATEWAY_*` variables give, defaults for the rest: how `sagactl up`
    /// configures its gateway, whose upstreams it knows itself.
    pub fn from_env() -> anyhow::Result<Self> {
        #[derive(Debug, clap::Parser)]
        #[command(name = "sagactl up (gateway)")]
        struct FromEnv {
            #[command(flatten)]
            settings: Settings,
        }
        let parsed = <FromEnv as clap::Parser>::try_parse_from(["sagactl up (gateway)"])
            .map_err(|err| anyhow::anyhow!("the GATEWAY_* variables: {err}"))?;
        Ok(parsed.settings)
    }

    /// [`Self::runtime_dir`] or its default.
    pub fn runtime_dir(&self) -> PathBuf {
        self.runtime_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_RUNTIME_DIR))
    }
}

pub fn run(args: GatewayArgs) -> anyhow::Result<()> {
    let GatewayCommand::Config(config) = args.command;
    let text = render(&config.settings, &config.instances)?;
    write_contract(&config.settings.runtime_dir())?;
    match &config.out {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
        }
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

/// Writes the API contract (`openapi.json`) and its page (`api.html`) into `runtime_dir`,
/// where the configuration serves them from (`/openapi.json`, `/docs`). A directory others may
/// write to is refused, and each file is written new and renamed into place, so a file or
/// link someone else put there is replaced, never written through.
pub fn write_contract(runtime_dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(runtime_dir)
        .with_context(|| format!("creating {}", runtime_dir.display()))?;
    let mode = std::fs::metadata(runtime_dir)?.permissions().mode();
    if mode & 0o022 != 0 {
        bail!(
            "{} may be written by other users (mode {:o}): choose another GATEWAY_RUNTIME_DIR",
            runtime_dir.display(),
            mode & 0o777
        );
    }
    let document = contract::document()?;
    for (name, content) in [
        ("openapi.json", serde_json::to_vec_pretty(&document)?),
        ("api.html", page::render(&document).into_bytes()),
    ] {
        let file = runtime_dir.join(name);
        let fresh = runtime_dir.join(format!(".{name}.{}", std::process::id()));
        let _ = std::fs::remove_file(&fresh);
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&fresh)
            .with_context(|| format!("creating {}", fresh.display()))?;
        std::io::Write::write_all(&mut out, &content)
            .with_context(|| format!("writing {}", fresh.display()))?;
        std::fs::rename(&fresh, &file).with_context(|| format!("writing {}", file.display()))?;
    }
    Ok(())
}

/// The configuration for `instances`; refuses a value that could break out of its place in it.
pub fn render(args: &Settings, instances: &Instances) -> anyhow::Result<String> {
    let mut upstreams = String::new();
    for (service, _) in ROUTES {
        let servers = instances.of(service);
        if servers.is_empty() {
            bail!("the {service} service needs at least one instance");
        }
        upstreams.push_str(&format!("    upstream {service} {{\n"));
        for server in servers.iter() {
            let server = plain("instance", server.trim())?;
            // Passive health check: 3 failures take an instance out for 10 s.
            upstreams.push_str(&format!(
                "        server {server} max_fails=3 fail_timeout=10s;\n"
            ));
        }
        upstreams.push_str("        keepalive 16;\n    }\n");
    }
    let mut locations = String::new();
    for (service, prefixes) in ROUTES {
        for prefix in prefixes {
            let timeout = if service == "order" {
                format!(
                    "\n            proxy_read_timeout {};",
                    ms(args.long_poll_timeout)
                )
            } else {
                String::new()
            };
            locations.push_str(&format!(
                "        location ~ ^/{prefix}(/|$) {{\n            proxy_pass http://{service};{timeout}\n        }}\n"
            ));
        }
    }
    let runtime_dir = args.runtime_dir().display().to_string();
    let values = [
        ("{{UPSTREAMS}}", upstreams),
        ("{{LOCATIONS}}", locations),
        (
            "{{LISTEN}}",
            plain("listen address", &args.listen)?.to_owned(),
        ),
        ("{{RATE}}", args.rate.max(1).to_string()),
        ("{{BURST}}", args.burst.max(1).to_string()),
        (
            "{{BODY_LIMIT}}",
            plain("body limit", &args.body_limit)?.to_owned(),
        ),
        ("{{TIMEOUT}}", ms(args.timeout)),
        ("{{CONNECT_TIMEOUT}}", ms(args.connect_timeout)),
        (
            "{{RUNTIME_DIR}}",
            path("runtime directory", &runtime_dir)?.to_owned(),
        ),
        (
            "{{ACCESS_LOG}}",
            path("access log", &args.access_log)?.to_owned(),
        ),
        (
            "{{ERROR_LOG}}",
            path("error log", &args.error_log)?.to_owned(),
        ),
    ];
    let mut text = TEMPLATE.to_owned();
    for (placeholder, value) in values {
        text = text.replace(placeholder, &value);
    }
    Ok(text)
}

/// A duration as nginx reads it.
fn ms(duration: Duration) -> String {
    format!("{}ms", duration.as_millis().max(1))
}

/// `value` if it is a host:port, size or similar: letters, digits and `.:-[]`.
fn plain<'a>(what: &str, value: &'a str) -> anyhow::Result<&'a str> {
    let ok = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".:-[]_".contains(c));
    if !ok {
        bail!("invalid {what} {value:?}: only letters, digits and . : - [ ] _");
    }
    Ok(value)
}

/// `value` if it is a path nginx can take unquoted.
fn path<'a>(what: &str, value: &'a str) -> anyhow::Result<&'a str> {
    let ok = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c));
    if !ok {
        bail!("invalid {what} {value:?}: only letters, digits and / . _ -");
    }
    Ok(value)
}
