//! `sagactl`: operate the saga system.
//!
//! - `sagactl up [--seed] [--no-gateway]`: the whole system in one process against the local
//!   PostgreSQL and RabbitMQ: the four services, the saga monitor and the outbox relay, and the
//!   API gateway (an nginx child process) in front of them.
//! - `sagactl seed`: demo products, a coupon and charged users, through the services' own APIs.
//! - `sagactl dlq list|show|replay|purge`: dead-letter operations, audited.
//! - `sagactl gateway config`: the API gateway's nginx configuration, with the API contract
//!   (`openapi.json`) and its page beside it.
//! - `sagactl broker setup|definitions`: least-privilege broker identities.
//! - `sagactl outbox pending`: unpublished outbox rows older than a threshold.
//! - `sagactl keys generate`: a new event key set (signing, verification and data keys).
//! - `sagactl verify`: the invariants of docs/invariants.md, checked across all databases.

mod broker;
mod dlq;
mod gateway;
mod keys;
mod outbox;
mod seed;
mod up;
mod verify;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "sagactl", version, about = "Operate the order saga system")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every service and the relay in this process until Ctrl-C, and the API gateway (nginx,
    /// when installed) in front of them. Databases are created and migrated and the broker
    /// topology declared on the way up. The gateway takes the GATEWAY_* variables of `sagactl
    /// gateway config` (docs/gateway.md) but for the upstreams, which are the services started
    /// here; NGINX names its binary.
    Up(up::UpArgs),
    /// Create demo products, a coupon and charged users through the running services.
    Seed(seed::Targets),
    /// Dead-letter queues: list, show, replay, purge.
    Dlq(dlq::DlqArgs),
    /// The API gateway (nginx) in front of the services.
    Gateway(gateway::GatewayArgs),
    /// Broker identities: set them up through the management API, or print their definitions.
    Broker(broker::BrokerArgs),
    /// The outbox as the relay sees it.
    Outbox(outbox::OutboxArgs),
    /// Event keys: generate a new key set.
    Keys(keys::KeysArgs),
    /// Check the saga invariants across the service databases; non-zero exit on a violation.
    Verify(verify::VerifyArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    shared::telemetry::init("sagactl");
    let outcome = match Cli::parse().command {
        Command::Up(args) => up::run(args).await,
        Command::Seed(targets) => seed::run(&targets).await.map(|_| ()),
        Command::Dlq(args) => dlq::run(args).await,
        Command::Gateway(args) => gateway::run(args),
        Command::Broker(args) => broker::run(args).await,
        Command::Outbox(args) => outbox::run(args).await,
        Command::Keys(args) => keys::run(args),
        Command::Verify(args) => verify::run(args).await,
    };
    // `up` runs the whole system in this process: its last spans leave now.
    shared::telemetry::shutdown();
    outcome
}
