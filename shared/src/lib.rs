//! The messaging core every service and the outbox relay stand on.
//!
//! - [`envelope`]: the wire format of one event and the [`envelope::SagaEvent`] trait.
//! - [`events`]: the typed saga events of the order choreography.
//! - [`outbox`]: enqueue events inside the caller's transaction (never publish directly).
//! - [`closed_sagas`]: sagas a participant closed at their deadline; later steps are refused.
//! - [`inbox`]: claim a message id inside the caller's transaction to drop duplicates.
//! - [`housekeeping`]: delete on a timer what need not be kept forever (expired inbox claims).
//! - [`amqp`]: broker connection, the header vocabulary and the queue topology.
//! - [`broker`]: least-privilege broker identities: permissions, definitions, setup.
//! - [`consumer`]: the runtime that turns deliveries into handler calls in one transaction.
//! - [`db`]: connection pools and the embedded migrations runner.
//! - [`dlq`]: list, show, replay and purge dead letters without losing one.
//! - [`http`]: the error body, a field-naming JSON extractor, health and readiness, pagination.
//! - [`money`]: two-decimal amounts that accept strings or numbers and never pass through floats.
//! - [`seal`]: sign and encrypt events at the producer, verify and decrypt them at consumers.
//! - [`notify`]: LISTEN with reconnect, for commit-time wake-ups.
//! - [`service`]: runs a service's HTTP server and consumers side by side until shutdown.
//! - [`config`]: settings from environment variables with working local defaults.
//! - [`telemetry`]: tracing setup (the metrics exporter hooks in here later).
//! - [`tls`]: certificates and keys from PEM files, for every TLS connection.
//! - [`shutdown`]: the shutdown signal passed to every long-running loop.
//! - [`backoff`]: the one exponential backoff used by every retry loop.
//! - [`error`]: the error policy.
//! - [`text_enum`]: closed sets of values stored as text, spelled once.

pub mod amqp;
pub mod backoff;
pub mod broker;
pub mod closed_sagas;
pub mod config;
pub mod consumer;
pub mod db;
pub mod dlq;
pub mod envelope;
pub mod error;
pub mod events;
pub mod housekeeping;
pub mod http;
pub mod inbox;
pub mod metrics;
pub mod money;
pub mod notify;
pub mod outbox;
pub mod runtime;
pub mod schema;
pub mod seal;
pub mod service;
pub mod shutdown;
pub mod telemetry;
pub mod text_enum;
pub mod tls;
