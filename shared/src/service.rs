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

use crate::config::{AmqpSettings, ConsumerSettings, DatabaseSettings, env_or, env_parse};
use crate::consumer::{Consumer, Handlers};
use crate::db::{
    OUTBOX_MIGRATIONS, PgPool, build_pool, create_database_if_missing, redact, run_migrations,
};
use crate::http::health::Readiness;
use crate::shutdown::Shutdown;

/// Everything a service reads from the environment.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    /// The service's name: its consumer (queue) name and the prefix of its variables.
    pub name: String,
    /// `HTTP_HOST`: the interface to listen on.
    pub host: String,
    /// `{NAME}_PORT`: 0 picks a free port.
    pub port: u16,
    /// `HTTP_WORKERS`: actix worker threads (0 = one per core).
    pub http_workers: usize,
    /// `{NAME}_DATABASE_URL` plus the shared `DB_POOL_*`.
    pub database: DatabaseSettings,
    pub amqp: AmqpSettings,
    pub consumer: ConsumerSettings,
}

impl ServiceSettings {
    /// Settings for `name` (`order`, `product`, ...), whose own variables are prefixed with the
    /// upper-cased name, so that all services can share one shell environment.
    pub fn from_env(name: &str, default_port: u16) -> anyhow::Result<Self> {
        let upper = name.to_uppercase();
        let database = DatabaseSettings::from_env(env_or(
            &format!("{upper}_DATABASE_URL"),
            &default_database_url(name),
        ))?;
        Ok(Self {
            name: name.to_owned(),
            host: env_or("HTTP_HOST", "127.0.0.1"),
            port: env_parse(&format!("{upper}_PORT"), default_port)?,
            http_workers: env_parse("HTTP_WORKERS", 0)?,
            database,
            amqp: AmqpSettings::from_env(),
            consumer: ConsumerSettings::from_env()?,
        })
    }
}

/// `postgres://postgres@127.0.0.1:5432/saga_{name}`.
pub fn default_database_url(name: &str) -> String {
    format!("postgres://postgres@127.0.0.1:5432/saga_{name}")
}

/// Creates the database if missing and runs the outbox/inbox migrations, then the service's.
pub async fn prepare_database(
    settings: &DatabaseSettings,
    migrations: EmbeddedMigrations,
) -> anyhow::Result<PgPool> {
    create_database_if_missing(&settings.url).await?;
    run_migrations(&settings.url, OUTBOX_MIGRATIONS).await?;
    run_migrations(&settings.url, migrations)
        .await
        .with_context(|| format!("migrating {}", redact(&settings.url)))?;
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
    /// ([`prepare_database`]); `routes` registers the service's own endpoints and app data.
    pub fn build<F>(
        settings: &ServiceSettings,
        pool: PgPool,
        handlers: Handlers,
        routes: F,
    ) -> anyhow::Result<Self>
    where
        F: Fn(&mut web::ServiceConfig) + Send + Clone + 'static,
    {
        let consumer = Consumer::new(
            &settings.name,
            &settings.amqp,
            pool.clone(),
            settings.consumer.clone(),
            handlers,
        );
        let readiness = web::Data::new(Readiness {
            pool: pool.clone(),
            broker_connected: vec![consumer.connected_flag()],
        });
        let pool_data = web::Data::new(pool);
        crate::metrics::install();
        crate::metrics::describe_common();
        let service_name = web::Data::new(crate::http::metrics::ServiceName(settings.name.clone()));
        let (listener, port) = crate::http::bind(&settings.host, settings.port)?;
        let mut server = HttpServer::new(move || {
            App::new()
                .wrap(actix_web::middleware::from_fn(crate::http::metrics::track))
                .app_data(service_name.clone())
                .route("/metrics", web::get().to(crate::http::metrics::render))
                .app_data(pool_data.clone())
                .app_data(readiness.clone())
                .configure(crate::http::configure_extractors)
                .configure(crate::http::health::configure)
                .configure(routes.clone())
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
        .with_task(crate::metrics::upkeep))
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
