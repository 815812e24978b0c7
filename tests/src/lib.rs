//! Test support shared by every crate's integration tests.
//!
//! Each test gets its own freshly migrated PostgreSQL database ([`TestDb`]) and its own AMQP
//! name prefix ([`TestAmqp`]), both removed when dropped, so tests run in parallel against the
//! one local server and broker without seeing each other. [`TcpProxy`] sits between a client and
//! the broker and can cut every connection on command. [`eventually`] waits for a condition
//! with a deadline instead of sleeping. [`clients`] are typed HTTP clients for the services.
//! [`keys`] seals and opens events with the development key set every service under test uses.
//! [`pki`] makes the certificates of the TLS tests. [`otlp`] is a collector that keeps and
//! decodes the spans it is sent.
//! [`broker`] sets up least-privilege broker identities in a vhost of a test's own.
//! [`cluster`] runs a three-node RabbitMQ cluster of a test's own, whose nodes it can kill.
//! [`TestAmqp::park_next_as_dead_letter`] dead-letters a queued message as a consumer would.
//! [`promql`] finds the selectors of a PromQL expression, for the alert and dashboard checks.

mod amqp;
pub mod binary;
pub mod broker;
pub mod clients;
pub mod cluster;
mod db;
mod dead_letters;
pub mod effects;
pub mod keys;
pub mod otlp;
pub mod pki;
mod private_pg;
pub mod promql;
mod proxy;
pub mod service;
mod wait;

pub use amqp::{TestAmqp, amqp_url};
pub use db::{TestDb, server_url};
pub use private_pg::PrivatePostgres;
pub use proxy::TcpProxy;
pub use wait::{eventually, eventually_async};

/// Logs from the code under test, shown for failing tests (`RUST_LOG` applies).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// A short random name part, lowercase alphanumeric.
pub fn unique_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}
