//! The skeleton every service shares: settings, database preparation, and one process that
//! supervises its HTTP server and consumers until shutdown.
//!
//! A service supplies its migrations, its event handlers and its routes;
//! [`Application::build`] creates and migrates the database, binds the listener (port 0 picks a
//! free one and [`Application::port`] reports it), and [`Application::run`] serves until the
//! shutdown signal, then stops the server gracefully and drains the consumers.

use std::future::Future;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use diesel_migrations::EmbeddedMigrations;
use futures_util::future::BoxFuture;
use tokio::task::JoinSet;

use clap::{Args, FromArgMatches};

use crate::config::{
    AmqpSettings, ConsumerSettings, DatabaseSettings, InboxSettings, PgServer, PoolSettings,
};
use crate::consumer::{Consumer, Handlers};
use crate::db::{
    OUTBOX_MIGRATIONS, PgPool, build_pool, create_database_if_missing, redact, run_migrations,
};
use crate::http::health::Readiness;
use crate::http::openapi::Routes;
use crate::seal::{KeySettings, Keyring};
use crate::shutdown::Shutdown;

/// Everything a service is configured with.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    /// The service's name: its consumer (queue) name and the prefix of its variables.
    pub name: String,
    /// The interface to listen on.
    pub host: String,
    /// The HTTP port; 0 picks a free one.
    pub port: u16,
    /// actix worker threads (0 = one per core).
    pub http_workers: usize,
    /// The service's own database and its pool.
    pub database: DatabaseSettings,
    pub amqp: AmqpSettings,
    pub consumer: ConsumerSettings,
    /// How long inbox claims are kept, and how often the expired ones are deleted.
    pub inbox: InboxSettings,
    /// This service's signing key, the producers' verification keys and the data keys.
    pub keys: Keyring,
}

/// The options every service shares; the port and database URL are per service and added to
/// the command by [`ServiceSettings::command`], since their variables carry the service's name.
#[derive(Debug, Clone, clap::Args)]
struct CommonArgs {
    /// Interface to listen on.
    #[arg(
        id = "http_host",
        value_name = "HOST",
        long = "http-host",
        env = "HTTP_HOST",
        default_value = "127.0.0.1"
    )]
    host: String,
    /// actix worker threads (0 = one per core). One by default, like the async runtime
    /// (shared::runtime): an HTTP worker serves many connections at once.
    #[arg(
        long = "http-workers",
        value_name = "N",
        env = "HTTP_WORKERS",
        default_value_t = 1
    )]
    http_workers: usize,
    #[command(flatten)]
    pool: PoolSettings,
    #[command(flatten)]
    server: PgServer,
    #[command(flatten)]
    amqp: AmqpSettings,
    #[command(flatten)]
    consumer: ConsumerSettings,
    #[command(flatten)]
    inbox: InboxSettings,
    #[command(flatten)]
    keys: KeySettings,
}

impl ServiceSettings {
    /// The command line of service `name` (`order`, `product`, ...): the shared options plus
    /// `--port` (`{NAME}_PORT`) and `--database-url` (`{NAME}_DATABASE_URL`), upper-cased so that
    /// all services can share one shell environment. A binary adds its own options to it.
    pub fn command(name: &str, default_port: u16) -> clap::Command {
        let upper = name.to_uppercase();
        let command = clap::Command::new(format!("{name}-service"))
            .arg(
                clap::Arg::new("service_port")
                    .long("port")
                    .env(format!("{upper}_PORT"))
                    .default_value(default_port.to_string())
                    .value_name("PORT")
                    .value_parser(clap::value_parser!(u16))
                    .help("HTTP port; 0 picks a free one"),
            )
            .arg(
                clap::Arg::new("service_database_url")
                    .long("database-url")
                    .env(format!("{upper}_DATABASE_URL"))
                    .hide_env_values(true)
                    .value_name("URL")
                    .help(format!(
                        "The service's own database (created if missing); default: database \
                         saga_{name} on the server the PG* options or DATABASE_BASE_URL name"
                    )),
            );
        // Set last: clap takes an `Args` struct's doc comment for the command's about.
        CommonArgs::augment_args(command).about(about(name))
    }

    /// The settings of service `name` from parsed `matches` of [`Self::command`].
    pub fn from_matches(name: &str, matches: &clap::ArgMatches) -> anyhow::Result<Self> {
        Self::parse(name, matches, false)
    }

    /// The settings of service `name` from the environment alone (several services in one
    /// process, as `sagactl up` runs them for development): with the development key set when
    /// the environment names no event keys.
    pub fn from_env(name: &str, default_port: u16) -> anyhow::Result<Self> {
        crate::config::refuse_renamed_variables()?;
        let matches = Self::command(name, default_port)
            .no_binary_name(true)
            .try_get_matches_from(Vec::<String>::new())?;
        Self::parse(name, &matches, true)
    }

    fn parse(name: &str, matches: &clap::ArgMatches, dev_keys: bool) -> anyhow::Result<Self> {
        let common = CommonArgs::from_arg_matches(matches)?;
        let url = matches
            .get_one::<String>("service_database_url")
            .filter(|url| !url.trim().is_empty())
            .cloned()
            .unwrap_or_else(|| common.server.service_database_url(name));
        let direct_url = common.server.direct_url(&url)?;
        let consumer = common.consumer.validated()?;
        let keys = if dev_keys && common.keys.is_empty() {
            KeySettings::dev()
        } else {
            common.keys
        };
        Ok(Self {
            name: name.to_owned(),
            host: common.host,
            port: matches
                .get_one::<u16>("service_port")
                .copied()
                .unwrap_or_default(),
            http_workers: common.http_workers,
            database: DatabaseSettings::new(url, &common.pool).with_direct_url(direct_url),
            amqp: common.amqp,
            inbox: common.inbox.validated(&consumer)?,
            consumer,
            keys: keys.load(Some(name)).context("event keys")?,
        })
    }
}

/// Options a service binary adds to the shared ones; `NoOptions` for none.
#[derive(Debug, Clone, clap::Args)]
pub struct NoOptions {}

fn about(name: &str) -> String {
    format!("The {name} service of the order saga system")
}

/// The whole `main` of a service binary: parses the command line and environment (answering
/// `--help` and `--version` without starting anything), sets up telemetry, builds the service
/// with `build` and serves until SIGTERM or Ctrl-C; then exports the spans still buffered.
pub async fn serve<A: Args + FromArgMatches>(
    name: &str,
    default_port: u16,
    version: &'static str,
    build: impl AsyncFnOnce(&ServiceSettings, A) -> anyhow::Result<Application>,
) -> anyhow::Result<()> {
    let command = A::augment_args(ServiceSettings::command(name, default_port))
        .about(about(name))
        .version(version);
    let matches = command.get_matches();
    crate::config::refuse_renamed_variables()?;
    crate::telemetry::init(name);
    let settings = ServiceSettings::from_matches(name, &matches)?;
    let options = A::from_arg_matches(&matches)?;
    let app = build(&settings, options).await?;
    tracing::info!(port = app.port(), service = name, "listening");
    let outcome = app.run(Shutdown::from_os_signals()).await;
    crate::telemetry::shutdown();
    outcome
}

/// Creates the database if missing and runs the outbox/inbox migrations, then the service's,
/// on the direct URL (the migration lock is a session's); the pool opens after, on `url`.
pub async fn prepare_database(
    settings: &DatabaseSettings,
    migrations: EmbeddedMigrations,
) -> anyhow::Result<PgPool> {
    let direct = &settings.direct_url;
    create_database_if_missing(direct).await?;
    run_migrations(direct, OUTBOX_MIGRATIONS).await?;
    run_migrations(direct, migrations)
        .await
        .with_context(|| format!("migrating {}", redact(direct)))?;
    build_pool(settings)
}

/// A background task of a service, started with the shutdown signal it must honour.
type Task = Box<dyn FnOnce(Shutdown) -> BoxFuture<'static, ()> + Send>;

/// A built service, bound and ready to run.
pub struct Application {
    port: u16,
    server: Server,
    consumers: Vec<Consumer>,
    tasks: Vec<Task>,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("port", &self.port)
            .finish()
    }
}

impl Application {
    /// Binds the listener and builds the server and the consumer. `pool` must be prepared
    /// ([`prepare_database`]); `routes` registers the service's own endpoints and app data, and
    /// makes its OpenAPI document.
    pub fn build<F>(
        settings: &ServiceSettings,
        pool: PgPool,
        handlers: Handlers,
        routes: F,
    ) -> anyhow::Result<Self>
    where
        F: Fn(&mut Routes<'_>) + Send + Clone + 'static,
    {
        let document = web::Bytes::from(
            serde_json::to_vec(&crate::http::openapi::document(
                &settings.name,
                routes.clone(),
            ))
            .context("serializing the OpenAPI document")?,
        );
        let cleanup = {
            let (pool, name, inbox) = (pool.clone(), settings.name.clone(), settings.inbox.clone());
            move |shutdown| crate::housekeeping::inbox_cleanup(pool, name, inbox, shutdown)
        };
        let consumer = Consumer::new(
            &settings.name,
            &settings.amqp,
            pool.clone(),
            settings.consumer.clone(),
            handlers,
            settings.keys.clone(),
        );
        let readiness = web::Data::new(Readiness {
            pool: pool.clone(),
            broker_connected: vec![consumer.connected_flag()],
        });
        let pool_data = web::Data::new(pool);
        let keys = web::Data::new(settings.keys.clone());
        crate::metrics::install();
        crate::metrics::describe_common();
        let service_name = web::Data::new(crate::http::metrics::ServiceName(settings.name.clone()));
        let (listener, port) = crate::http::bind(&settings.host, settings.port)?;
        let mut server = HttpServer::new(move || {
            App::new()
                .wrap(actix_web::middleware::from_fn(
                    crate::http::fallback::json_errors,
                ))
                .wrap(actix_web::middleware::from_fn(crate::http::metrics::track))
                .wrap(actix_web::middleware::from_fn(
                    crate::telemetry::http::trace,
                ))
                .app_data(service_name.clone())
                .route("/metrics", web::get().to(crate::http::metrics::render))
                .app_data(pool_data.clone())
                .app_data(keys.clone())
                .app_data(readiness.clone())
                .configure(crate::http::configure_extractors)
                .configure(crate::http::health::configure)
                .configure(|cfg| {
                    crate::http::openapi::serve(cfg, document.clone());
                    crate::http::openapi::mount(cfg, routes.clone());
                })
        })
        // Shutdown is ours to drive (SIGTERM and Ctrl-C reach the supervisor, not actix).
        .disable_signals()
        .shutdown_timeout(10);
        if settings.http_workers > 0 {
            server = server.workers(settings.http_workers);
        }
        let server = server.listen(listener)?.run();
        Ok(Self {
            port,
            server,
            consumers: vec![consumer],
            tasks: Vec::new(),
        }
        .with_task(crate::metrics::upkeep)
        .with_task(cleanup))
    }

    /// Adds a background task (a LISTEN loop, a timer) that runs next to the server and stops
    /// on the same shutdown signal.
    pub fn with_task<F, Fut>(mut self, task: F) -> Self
    where
        F: FnOnce(Shutdown) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.tasks
            .push(Box::new(move |shutdown| Box::pin(task(shutdown))));
        self
    }

    /// The port actually bound.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until `shutdown`.
    pub async fn run(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let tasks: Vec<_> = self
            .tasks
            .into_iter()
            .map(|task| tokio::spawn(task(shutdown.clone())))
            .collect();
        let outcome = run(self.server, self.consumers, shutdown).await;
        for task in tasks {
            // Tasks watch the same signal; one that panicked has nothing left to stop.
            task.abort();
            let _ = task.await;
        }
        outcome
    }
}

/// Runs `server` and `consumers` until `shutdown`; returns once all of them have stopped. A
/// consumer ending on its own (an error) stops the others too.
pub async fn run(
    server: Server,
    consumers: Vec<Consumer>,
    mut shutdown: Shutdown,
) -> anyhow::Result<()> {
    let handle = server.handle();
    let mut consumer_tasks = JoinSet::new();
    for consumer in consumers {
        consumer_tasks.spawn(consumer.run(shutdown.clone()));
    }
    let server_task = tokio::spawn(server);
    let outcome: anyhow::Result<()> = tokio::select! {
        _ = shutdown.wait() => Ok(()),
        Some(ended) = consumer_tasks.join_next() => match ended {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(err.context("a consumer failed")),
            Err(err) => Err(anyhow::Error::new(err).context("a consumer panicked")),
        },
    };
    // Stop taking requests, let in-flight ones finish.
    handle.stop(true).await;
    if let Ok(Err(err)) = server_task.await {
        tracing::warn!(error = %err, "HTTP server ended with an error");
    }
    // On shutdown the consumers drain; on an error path they are aborted instead (their
    // unacked deliveries go back to the queue).
    if shutdown.is_triggered() {
        while consumer_tasks.join_next().await.is_some() {}
    } else {
        consumer_tasks.shutdown().await;
    }
    outcome
}
