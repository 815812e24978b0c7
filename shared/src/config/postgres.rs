//! The PostgreSQL server the service databases live on, and the pool settings every service
//! shares. The server is named once (the libpq `PG*` variables or one base URL) and each
//! service's database URL derives from it.

use std::time::Duration;

use clap::Args;

use super::{from_env, parse_duration};
use crate::db::redact;

/// The PostgreSQL server the service databases live on, named once so that the database URLs of
/// every service derive from it instead of repeating credentials. Either a base URL, or the
/// standard libpq variables.
#[derive(Clone, Args)]
pub struct PgServer {
    /// Base URL of the server, without a database name (`postgres://user:password@host:5432`,
    /// query parameters allowed); each service appends its database. Overrides the `PG*`
    /// options.
    #[arg(
        id = "database_base_url",
        long = "database-base-url",
        env = "DATABASE_BASE_URL",
        hide_env_values = true
    )]
    pub base_url: Option<String>,
    /// Base URL of the PostgreSQL server itself, without a database name, for the connections
    /// that need a session of their own: LISTEN and migrations (a session advisory lock). Set
    /// it when the other URLs point at a transaction-pooling PgBouncer; default: the same server
    /// as the pooled connections.
    #[arg(
        id = "database_direct_url",
        value_name = "URL",
        long = "database-direct-url",
        env = "DATABASE_DIRECT_URL",
        hide_env_values = true
    )]
    pub direct_base_url: Option<String>,
    /// Server host (a path for a Unix socket directory).
    #[arg(
        id = "pg_host",
        long = "pg-host",
        env = "PGHOST",
        default_value = "127.0.0.1"
    )]
    pub host: String,
    /// Server port.
    #[arg(
        id = "pg_port",
        long = "pg-port",
        env = "PGPORT",
        default_value_t = 5432
    )]
    pub port: u16,
    /// Role to connect as.
    #[arg(
        id = "pg_user",
        long = "pg-user",
        env = "PGUSER",
        default_value = "postgres"
    )]
    pub user: String,
    /// Password of the role (none by default).
    #[arg(
        id = "pg_password",
        long = "pg-password",
        env = "PGPASSWORD",
        hide_env_values = true
    )]
    pub password: Option<String>,
    /// TLS to the server, as libpq's `sslmode`: disable, allow, prefer (the default: TLS when
    /// the server offers it), require (TLS, certificate checked only given a root certificate),
    /// verify-ca (chain checked), verify-full (chain and host name checked).
    #[arg(
        id = "pg_sslmode",
        value_name = "MODE",
        long = "pg-sslmode",
        env = "PGSSLMODE"
    )]
    pub sslmode: Option<String>,
    /// PEM file of the root certificate(s) the server's certificate must chain to (verify-ca,
    /// verify-full; with require it turns checking on).
    #[arg(
        id = "pg_sslrootcert",
        value_name = "FILE",
        long = "pg-sslrootcert",
        env = "PGSSLROOTCERT"
    )]
    pub sslrootcert: Option<String>,
}

impl std::fmt::Debug for PgServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgServer")
            .field("url", &redact(&self.database_url("")))
            .finish()
    }
}

impl Default for PgServer {
    fn default() -> Self {
        Self {
            base_url: None,
            direct_base_url: None,
            host: "127.0.0.1".into(),
            port: 5432,
            user: "postgres".into(),
            password: None,
            sslmode: None,
            sslrootcert: None,
        }
    }
}

impl PgServer {
    /// The URL of `database` on this server.
    pub fn database_url(&self, database: &str) -> String {
        if let Some(base) = &self.base_url {
            let (server, query) = match base.split_once('?') {
                Some((server, query)) => (server, format!("?{query}")),
                None => (base.as_str(), String::new()),
            };
            return format!("{}/{database}{query}", server.trim_end_matches('/'));
        }
        let credentials = match &self.password {
            Some(password) => format!("{}:{}", encode(&self.user), encode(password)),
            None => encode(&self.user),
        };
        let params: Vec<String> = [
            ("sslmode", &self.sslmode),
            ("sslrootcert", &self.sslrootcert),
        ]
        .into_iter()
        .filter_map(|(key, value)| value.as_deref().map(|v| format!("{key}={}", encode(v))))
        .collect();
        let query = match params.is_empty() {
            true => String::new(),
            false => format!("?{}", params.join("&")),
        };
        let host = encode(&self.host);
        format!(
            "postgres://{credentials}@{host}:{}/{database}{query}",
            self.port
        )
    }

    /// The database of service `name`: `saga_{name}`.
    pub fn service_database_url(&self, name: &str) -> String {
        self.database_url(&format!("saga_{name}"))
    }

    /// The URL for a session of its own (LISTEN, migrations) on the database `pooled` names:
    /// that database on the direct server when one is set, else `pooled` itself.
    pub fn direct_url(&self, pooled: &str) -> anyhow::Result<String> {
        let Some(direct) = self
            .direct_base_url
            .as_deref()
            .filter(|u| !u.trim().is_empty())
        else {
            return Ok(pooled.to_owned());
        };
        let (_, database) = crate::db::split_database_url(pooled)?;
        let direct = Self {
            base_url: Some(direct.to_owned()),
            ..Self::default()
        };
        Ok(direct.database_url(&database))
    }
}

/// Percent-encodes everything but unreserved characters, for one URL component.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(char::from(byte))
            }
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

/// Pool settings every service shares.
#[derive(Debug, Clone, Args)]
pub struct PoolSettings {
    /// Connections in the service's database pool: the most it holds, whatever the load (its
    /// consumers, HTTP handlers and timers share them). Six per service keep one whole system
    /// under 50 connections (README, "Connection budget").
    #[arg(
        id = "db_pool_size",
        long = "db-pool-size",
        env = "DB_POOL_SIZE",
        default_value_t = DEFAULT_POOL_SIZE
    )]
    pub pool_size: usize,
    /// How long to wait for a pooled connection (to be created or freed) before failing; never
    /// forever, so a database outage answers 503 instead of hanging.
    #[arg(id = "db_pool_timeout", value_name = "DURATION", long = "db-pool-timeout", env = "DB_POOL_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub pool_timeout: Duration,
}

/// The default of `DB_POOL_SIZE`.
pub const DEFAULT_POOL_SIZE: usize = 6;

impl Default for PoolSettings {
    fn default() -> Self {
        Self {
            pool_size: DEFAULT_POOL_SIZE,
            pool_timeout: Duration::from_secs(5),
        }
    }
}

/// How to reach a service database.
#[derive(Clone)]
pub struct DatabaseSettings {
    /// The database URL.
    pub url: String,
    /// The same database for a session of its own (LISTEN, migrations): not through a
    /// transaction-pooling PgBouncer (`DATABASE_DIRECT_URL`). Usually `url`.
    pub direct_url: String,
    /// Connections in the pool.
    pub pool_size: usize,
    /// How long to wait for a connection before failing.
    pub pool_timeout: Duration,
}

impl std::fmt::Debug for DatabaseSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseSettings")
            .field("url", &redact(&self.url))
            .field("direct_url", &redact(&self.direct_url))
            .field("pool_size", &self.pool_size)
            .field("pool_timeout", &self.pool_timeout)
            .finish()
    }
}

impl DatabaseSettings {
    /// `url` with `pool`'s settings.
    pub fn new(url: impl Into<String>, pool: &PoolSettings) -> Self {
        let url = url.into();
        Self {
            direct_url: url.clone(),
            url,
            pool_size: pool.pool_size,
            pool_timeout: pool.pool_timeout,
        }
    }

    /// `self` with its sessions of their own on `direct_url`.
    pub fn with_direct_url(self, direct_url: String) -> Self {
        Self { direct_url, ..self }
    }

    /// `url` with the pool settings from the environment.
    pub fn from_env(url: String) -> anyhow::Result<Self> {
        Ok(Self::new(url, &from_env::<PoolSettings>()?))
    }

    /// `url` with the default pool settings.
    pub fn with_url(url: impl Into<String>) -> Self {
        Self::new(url, &PoolSettings::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_derive_from_one_server() {
        let server = PgServer {
            user: "saga app".into(),
            password: Some("p@ss:w/rd".into()),
            host: "db.internal".into(),
            port: 6432,
            sslmode: Some("verify-full".into()),
            sslrootcert: Some("/etc/ca.pem".into()),
            base_url: None,
            direct_base_url: None,
        };
        assert_eq!(
            server.service_database_url("order"),
            "postgres://saga%20app:p%40ss%3Aw%2Frd@db.internal:6432/saga_order?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem"
        );
        assert!(!format!("{server:?}").contains("p%40ss"), "{server:?}");
        let based = PgServer {
            base_url: Some("postgres://u:pw@h:5432/?application_name=x".into()),
            ..PgServer::default()
        };
        assert_eq!(
            based.database_url("saga_coupon"),
            "postgres://u:pw@h:5432/saga_coupon?application_name=x"
        );
        assert_eq!(
            PgServer::default().service_database_url("balance"),
            "postgres://postgres@127.0.0.1:5432/saga_balance"
        );
    }

    #[test]
    fn a_direct_url_names_the_pooled_database_on_the_direct_server() {
        let pooled = "postgres://app:pw@pgbouncer:6432/saga_order?sslmode=disable";
        assert_eq!(PgServer::default().direct_url(pooled).unwrap(), pooled);
        let server = PgServer {
            direct_base_url: Some("postgres://app:pw@db:5432?sslmode=require".into()),
            ..PgServer::default()
        };
        assert_eq!(
            server.direct_url(pooled).unwrap(),
            "postgres://app:pw@db:5432/saga_order?sslmode=require"
        );
        assert!(server.direct_url("postgres://pgbouncer:6432").is_err());
    }
}
