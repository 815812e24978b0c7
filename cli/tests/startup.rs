//! Starting services the way a deployment does: several replicas at the same moment on a
//! database that does not exist yet, and a service whose database an administrator created for
//! a role that may not create databases; and `sagactl`'s own command line
//! (`startup/command_line.rs`).

#![allow(clippy::unwrap_used)] // a panic is the failure report

#[path = "startup/command_line.rs"]
mod command_line;
mod system;

use diesel_async::RunQueryDsl;
use futures_util::future::join_all;
use shared::config::DatabaseSettings;
use system::{SERVICES, build};
use testkit::clients::ProductClient;
use testkit::service::{TestApp, service_settings};
use testkit::{TestAmqp, TestDb, init_tracing, server_url, unique_suffix};

const REPLICAS: usize = 5;

#[tokio::test]
async fn five_replicas_of_each_service_start_at_once_on_fresh_databases_and_all_become_ready() {
    init_tracing();
    let amqp = TestAmqp::new().await;
    for name in SERVICES {
        let db = TestDb::uncreated();
        let mut settings = service_settings(name, &db, &amqp);
        // 25 replicas share the test server with every other test: keep each one small.
        settings.database.pool_size = 2;
        let apps = join_all((0..REPLICAS).map(|_| build(name, &settings))).await;
        let apps: Vec<TestApp> = apps.into_iter().map(TestApp::start).collect();
        join_all(apps.iter().map(TestApp::wait_ready)).await;
        join_all(apps.into_iter().map(TestApp::stop)).await;
    }
}

#[tokio::test]
async fn a_service_whose_database_exists_needs_no_createdb_right() {
    init_tracing();
    let role = format!("svc_{}", unique_suffix());
    let db = TestDb::uncreated();
    let mut admin = shared::db::connect(&format!("{}/postgres", server_url()))
        .await
        .unwrap();
    for statement in [
        format!("CREATE ROLE {role} LOGIN NOCREATEDB NOSUPERUSER PASSWORD 'pw with @ and :'"),
        format!("CREATE DATABASE \"{}\" OWNER {role}", db.name),
    ] {
        diesel::sql_query(statement)
            .execute(&mut admin)
            .await
            .unwrap();
    }
    let amqp = TestAmqp::new().await;
    let mut settings = service_settings(system::PRODUCT, &db, &amqp);
    // A password with characters that must be percent-encoded in a URL.
    let host = server_url()
        .rsplit_once('@')
        .map(|(_, host)| host.to_owned())
        .unwrap();
    let url = format!(
        "postgres://{role}:pw%20with%20%40%20and%20%3A@{host}/{}",
        db.name
    );
    settings.database = DatabaseSettings::with_url(url);
    let app = TestApp::start(build(system::PRODUCT, &settings).await);
    app.wait_ready().await;
    ProductClient::new(&app)
        .create_product("Desk", "10", 1)
        .await;
    app.stop().await;
    drop(db);
    diesel::sql_query(format!("DROP ROLE IF EXISTS {role}"))
        .execute(&mut admin)
        .await
        .unwrap();
}
