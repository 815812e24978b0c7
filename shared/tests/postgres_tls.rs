//! PostgreSQL over TLS, against a real server: a private cluster ([`cluster`]) that refuses
//! connections without TLS and checks SCRAM passwords. Every `sslmode` from `disable` to
//! `verify-full` behaves as libpq's does, and the pool, the migrations, database creation and
//! LISTEN all go through the one connect function. Also what a connection keeps: statements
//! kept prepared ([`cached`]).

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

// The harness lives in `tests/postgres_tls/` (no `main.rs` there, so cargo builds no second target).
#[path = "postgres_tls/cached.rs"]
mod cached;
#[path = "postgres_tls/cluster.rs"]
mod cluster;

use std::time::Duration;

use cluster::{Cluster, PASSWORD, ROLE, encode};
use diesel::sql_types::Bool;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use shared::config::{DatabaseSettings, PgServer};
use shared::db::{self, OUTBOX_MIGRATIONS};
use shared::notify::{self, Signal};
use shared::shutdown::Shutdown;
use tokio::sync::mpsc;

#[derive(diesel::QueryableByName)]
struct Encrypted {
    #[diesel(sql_type = Bool)]
    ssl: bool,
}

async fn encrypted(conn: &mut AsyncPgConnection) -> bool {
    diesel::sql_query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .get_result::<Encrypted>(conn)
        .await
        .expect("pg_stat_ssl has the session")
        .ssl
}

/// Connects to `url` and reports whether the session is encrypted.
async fn connects_encrypted(url: &str) -> bool {
    let mut conn = db::connect(url)
        .await
        .unwrap_or_else(|err| panic!("{} does not connect: {err}", db::redact(url)));
    encrypted(&mut conn).await
}

/// The error connecting to `url`, which must fail.
async fn refusal(url: &str) -> String {
    match db::connect(url).await {
        Ok(_) => panic!("{} connected", db::redact(url)),
        Err(err) => err.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_sslmode_is_honoured() {
    let pg = Cluster::start().await;
    let ip = "127.0.0.1";
    let (ca, other) = (Some(pg.ca.as_path()), Some(pg.other_ca.as_path()));

    let err = refusal(&pg.url(ip, "postgres", "disable", None)).await;
    assert!(
        err.contains("pg_hba.conf rejects") && err.contains("no encryption"),
        "{err}"
    );
    for mode in ["allow", "prefer", "require"] {
        assert!(
            connects_encrypted(&pg.url(ip, "postgres", mode, None)).await,
            "{mode}"
        );
    }
    let unspecified = PgServer {
        sslmode: None,
        ..pg.server(ip, PASSWORD, "")
    };
    assert!(
        connects_encrypted(&unspecified.database_url("postgres")).await,
        "prefer"
    );

    // With a root certificate, `require` verifies as `verify-ca` does.
    assert!(connects_encrypted(&pg.url(ip, "postgres", "require", ca)).await);
    let err = refusal(&pg.url(ip, "postgres", "require", other)).await;
    assert!(err.contains("UnknownIssuer"), "{err}");

    assert!(connects_encrypted(&pg.url(ip, "postgres", "verify-full", ca)).await);
    let err = refusal(&pg.url(ip, "postgres", "verify-full", other)).await;
    assert!(err.contains("UnknownIssuer"), "{err}");
    // The certificate names 127.0.0.1 only.
    let err = refusal(&pg.url("localhost", "postgres", "verify-full", ca)).await;
    assert!(err.contains("not valid for name \"localhost\""), "{err}");
    let err = refusal(&pg.url(ip, "postgres", "verify-full", None)).await;
    assert!(err.contains("PGSSLROOTCERT"), "{err}");

    assert!(connects_encrypted(&pg.url("localhost", "postgres", "verify-ca", ca)).await);
    let err = refusal(&pg.url("localhost", "postgres", "verify-ca", other)).await;
    assert!(err.contains("UnknownIssuer"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_fails_without_showing_it() {
    let pg = Cluster::start().await;
    let wrong = "Wr0ng:p@ss/w%rd";
    let url = pg.url_with_password("127.0.0.1", "postgres", "verify-full", Some(&pg.ca), wrong);
    let err = refusal(&url).await;
    assert!(err.contains("password authentication failed"), "{err}");
    let migrations = db::run_migrations(&url, OUTBOX_MIGRATIONS)
        .await
        .expect_err("migrations with a wrong password");
    let shown = format!("{migrations:#} {migrations:?}");
    for secret in [wrong, "Wr0ng%3Ap%40ss%2Fw%25rd", PASSWORD] {
        assert!(!err.contains(secret) && !shown.contains(secret), "{shown}");
    }
    assert!(shown.contains("password authentication failed"), "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pool_migrations_and_listen_work_over_tls() {
    let pg = Cluster::start().await;
    let url = pg
        .server("127.0.0.1", PASSWORD, "require")
        .database_url("saga_tls");
    db::create_database_if_missing(&url).await.unwrap();
    db::create_database_if_missing(&url).await.unwrap();
    db::run_migrations(&url, OUTBOX_MIGRATIONS).await.unwrap();

    // The same database from a base URL that asks for full verification.
    let base = PgServer {
        base_url: Some(format!(
            "postgres://{ROLE}:{}@127.0.0.1:{}?sslmode=verify-full&sslrootcert={}",
            encode(PASSWORD),
            pg.port,
            encode(&pg.ca.to_string_lossy())
        )),
        ..PgServer::default()
    };
    let verified = base.database_url("saga_tls");
    assert!(
        verified.contains("/saga_tls?sslmode=verify-full"),
        "{}",
        db::redact(&verified)
    );
    db::run_migrations(&verified, OUTBOX_MIGRATIONS)
        .await
        .unwrap();

    let pool = db::build_pool(&DatabaseSettings::with_url(verified.clone())).unwrap();
    let mut conn = pool.get().await.unwrap();
    assert!(encrypted(&mut conn).await);
    let outbox = diesel::sql_query("SELECT id FROM outbox")
        .execute(&mut conn)
        .await;
    assert_eq!(outbox, Ok(0), "the migrations made the outbox");

    let (trigger, shutdown) = Shutdown::new();
    let (tx, mut rx) = mpsc::channel(8);
    let listener = tokio::spawn(notify::listen(
        verified,
        "saga_tls_test",
        tx,
        Duration::from_secs(30),
        shutdown,
    ));
    let next = async |rx: &mut mpsc::Receiver<Signal>| {
        tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .expect("a signal within 30s")
    };
    assert_eq!(next(&mut rx).await, Some(Signal::Reconnected));
    diesel::sql_query("NOTIFY saga_tls_test, 'over tls'")
        .execute(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        next(&mut rx).await,
        Some(Signal::Notified("over tls".into()))
    );
    trigger.trigger();
    tokio::time::timeout(Duration::from_secs(30), listener)
        .await
        .expect("the listener stops on shutdown")
        .unwrap();
}
