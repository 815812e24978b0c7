//! The outbox relay against a real PostgreSQL and a real RabbitMQ, including the failures that
//! lose messages elsewhere: a crash between confirm and mark, two relays on one table, a cut
//! broker connection, killed database sessions, unroutable messages.

// The tests live in `tests/relay/` (no `main.rs` there, so cargo builds no second target).
#[path = "relay/command_line.rs"]
mod command_line;
#[path = "relay/faults.rs"]
mod faults;
#[path = "relay/lifecycle.rs"]
mod lifecycle;
#[path = "relay/order.rs"]
mod order;
#[path = "relay/publish.rs"]
mod publish;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use diesel_async::{AsyncConnection, RunQueryDsl};
use outbox_relay::RelaySettings;
use shared::amqp::headers;
use shared::config::AmqpSettings;
use shared::consumer::{Consumer, Handlers};
use shared::envelope::{Envelope, SagaEvent};
use shared::outbox::{self, OutboxMessage};
use shared::shutdown::{Shutdown, ShutdownTrigger};
use testkit::effects::{
    Ping, Recorder, RunningConsumer, count, create_effects_table, double_effects, effect_count,
    enqueue_pings, fast_consumer_settings, unpublished,
};
use testkit::{TcpProxy, TestAmqp, TestDb, eventually_async, init_tracing};
use tokio::process::{Child, Command};

const DEADLINE: Duration = Duration::from_secs(30);
/// Long enough that only a notification (or a reconnect's catch-up) can explain a publish.
const POLL_NEVER: Duration = Duration::from_secs(600);

fn relay_settings(db: &TestDb, amqp: AmqpSettings) -> RelaySettings {
    let mut settings = RelaySettings::new(vec![db.url.clone()], amqp);
    settings.poll_interval = POLL_NEVER;
    settings.max_backoff = Duration::from_millis(500);
    settings
}

/// The relay running inside the test process.
struct InProcessRelay {
    trigger: ShutdownTrigger,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl InProcessRelay {
    fn start(settings: RelaySettings) -> Self {
        let (trigger, shutdown) = Shutdown::new();
        let task = tokio::spawn(outbox_relay::run(settings, shutdown));
        Self { trigger, task }
    }

    async fn stop(self) {
        self.trigger.trigger();
        self.task.await.expect("relay task").expect("relay run");
    }
}

/// The real `outbox-relay` binary, killed if the test ends first.
fn spawn_relay(db: &TestDb, amqp: &TestAmqp, extra: &[(&str, &str)]) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_outbox-relay"));
    command
        .env("RELAY_DATABASE_URLS", &db.url)
        .env("AMQP_URL", &amqp.url)
        .env("AMQP_PREFIX", &amqp.prefix)
        .env("RELAY_POLL_INTERVAL", "10m")
        .env("RELAY_MAX_BACKOFF", "500ms")
        .env("RELAY_METRICS_PORT", "0")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for (key, value) in extra {
        command.env(key, value);
    }
    command.spawn().expect("spawn outbox-relay")
}

fn pings_consumer(amqp: &AmqpSettings, db: &TestDb) -> Consumer {
    Consumer::new(
        "pings",
        amqp,
        db.pool.clone(),
        fast_consumer_settings(),
        Handlers::new().on::<Ping>(Recorder::default()),
        testkit::keys::reader(),
    )
}

fn broker_addr() -> SocketAddr {
    let url = testkit::amqp_url();
    let host_port = url
        .rsplit_once('@')
        .map_or(url.as_str(), |(_, rest)| rest)
        .trim_start_matches("amqp://")
        .split('/')
        .next()
        .unwrap_or("127.0.0.1:5672")
        .to_owned();
    host_port
        .parse()
        .expect("AMQP_URL host:port must be an IP address and port for the proxy")
}

async fn wait_until_published(db: &TestDb) {
    eventually_async(DEADLINE, "every outbox row published", || async {
        (unpublished(db).await == 0).then_some(())
    })
    .await;
}
