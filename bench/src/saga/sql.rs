//! The few SQL reads the benchmark makes itself.

use diesel_async::{AsyncPgConnection, RunQueryDsl};

/// `SELECT version()`.
pub async fn server_version(url: &str) -> anyhow::Result<String> {
    use diesel_async::AsyncConnection;
    #[derive(diesel::QueryableByName)]
    struct Version {
        #[diesel(sql_type = diesel::sql_types::Text)]
        version: String,
    }
    let mut conn = AsyncPgConnection::establish(url).await?;
    let row: Version = diesel::sql_query("SELECT version() AS version")
        .get_result(&mut conn)
        .await?;
    Ok(row.version)
}

/// The server settings that move these figures, as `name=value` pairs.
pub async fn server_settings(url: &str) -> anyhow::Result<String> {
    use diesel_async::AsyncConnection;
    #[derive(diesel::QueryableByName)]
    struct Settings {
        #[diesel(sql_type = diesel::sql_types::Text)]
        settings: String,
    }
    let mut conn = AsyncPgConnection::establish(url).await?;
    let row: Settings = diesel::sql_query(
        "SELECT string_agg(name || '=' || setting || coalesce(unit, ''), ', ' ORDER BY name) \
         AS settings FROM pg_settings WHERE name IN ('autovacuum', 'synchronous_commit', \
         'shared_buffers', 'max_connections', 'wal_sync_method', 'fsync')",
    )
    .get_result(&mut conn)
    .await?;
    Ok(row.settings)
}
