//! The one way every component opens a PostgreSQL connection: [`connect`].
//!
//! tokio-postgres understands only `sslmode=disable|prefer|require` and no `sslrootcert`, so
//! both are taken out of the URL here, and TLS is set up as libpq would (see [`super::tls`]).
//! Like libpq, `PGSSLMODE` and `PGSSLROOTCERT` stand in for the parameters a URL does not give;
//! without either, the mode is `prefer`.

use std::path::PathBuf;
use std::str::FromStr;

use diesel::{ConnectionError, ConnectionResult};
use diesel_async::AsyncPgConnection;
use tokio_postgres::config::Host;

use super::tls::{self, SslMode};

/// Opens a connection to `url` (`postgres://user:password@host:port/db?params`, or libpq's
/// `key=value` form), encrypted and verified as its `sslmode` and root certificate
/// (`sslrootcert=<PEM file>` or `PGSSLROOTCERT`) say. Unix-socket hosts never use TLS.
///
/// Errors never contain the password (nor the URL: callers name it with [`super::redact`]).
pub async fn connect(url: &str) -> ConnectionResult<AsyncPgConnection> {
    Target::parse(url, &Defaults::from_env())?.connect().await
}

/// The values `PGSSLMODE` and `PGSSLROOTCERT` give, for what a URL leaves out.
#[derive(Debug, Default, Clone)]
pub(super) struct Defaults {
    pub sslmode: Option<String>,
    pub sslrootcert: Option<PathBuf>,
}

impl Defaults {
    fn from_env() -> Self {
        let set = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
        Self {
            sslmode: set("PGSSLMODE").map(|mode| mode.to_string_lossy().into_owned()),
            sslrootcert: set("PGSSLROOTCERT").map(PathBuf::from),
        }
    }
}

/// Where to connect and how, the TLS parameters resolved.
#[derive(Debug)]
pub(super) struct Target {
    pub config: tokio_postgres::Config,
    pub mode: SslMode,
    pub root_cert: Option<PathBuf>,
}

impl Target {
    /// `url` without its TLS parameters, parsed by tokio-postgres, and those parameters.
    pub fn parse(url: &str, defaults: &Defaults) -> ConnectionResult<Self> {
        let invalid = ConnectionError::InvalidConnectionUrl;
        let (rest, given) = take_tls_params(url).map_err(invalid)?;
        let mode = match given.sslmode.or_else(|| defaults.sslmode.clone()) {
            Some(text) => SslMode::parse(&text).map_err(invalid)?,
            None => SslMode::Prefer,
        };
        let mut config = tokio_postgres::Config::from_str(&rest)
            .map_err(|err| invalid(format!("invalid database URL: {}", with_causes(&err))))?;
        let unix_only = !config.get_hosts().is_empty()
            && config
                .get_hosts()
                .iter()
                .all(|host| !matches!(host, Host::Tcp(_)));
        // libpq ignores sslmode on Unix sockets; the server offers no TLS there.
        let mode = if unix_only { SslMode::Disable } else { mode };
        config.ssl_mode(mode.negotiation());
        Ok(Self {
            config,
            mode,
            root_cert: given.sslrootcert.or_else(|| defaults.sslrootcert.clone()),
        })
    }

    async fn connect(self) -> ConnectionResult<AsyncPgConnection> {
        let failed = |err: tokio_postgres::Error| ConnectionError::BadConnection(with_causes(&err));
        match tls::client_config(self.mode, self.root_cert.as_deref())
            .map_err(ConnectionError::BadConnection)?
        {
            Some(tls) => {
                let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls);
                let (client, connection) = self.config.connect(tls).await.map_err(failed)?;
                AsyncPgConnection::try_from_client_and_connection(client, connection).await
            }
            None => {
                let (client, connection) = self
                    .config
                    .connect(tokio_postgres::NoTls)
                    .await
                    .map_err(failed)?;
                AsyncPgConnection::try_from_client_and_connection(client, connection).await
            }
        }
    }
}

/// `err` and its causes: tokio-postgres shows only its kind (`db error`) and keeps the server's
/// message as the cause.
fn with_causes(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(err) = cause {
        text.push_str(&format!(": {err}"));
        cause = err.source();
    }
    text
}

/// `sslmode` and `sslrootcert` as a URL gives them.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct TlsParams {
    pub sslmode: Option<String>,
    pub sslrootcert: Option<PathBuf>,
}

/// `url` without `sslmode` and `sslrootcert`, and their values (percent-decoded in a URL's
/// query; unquoted in the `key=value` form).
pub(super) fn take_tls_params(url: &str) -> Result<(String, TlsParams), String> {
    let is_url = url.starts_with("postgres://") || url.starts_with("postgresql://");
    let mut params = TlsParams::default();
    let mut take = |key: &str, value: String| match key {
        "sslmode" => {
            params.sslmode = Some(value);
            true
        }
        "sslrootcert" => {
            params.sslrootcert = Some(PathBuf::from(value));
            true
        }
        _ => false,
    };
    let rest = if is_url {
        let Some((base, query)) = url.split_once('?') else {
            return Ok((url.to_owned(), params));
        };
        let mut kept = Vec::new();
        for pair in query.split('&') {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decoded = percent_encoding::percent_decode_str(value)
                .decode_utf8()
                .map_err(|_| format!("the value of {key} is not UTF-8"))?;
            if !take(key, decoded.into_owned()) {
                kept.push(pair);
            }
        }
        match kept.is_empty() {
            true => base.to_owned(),
            false => format!("{base}?{}", kept.join("&")),
        }
    } else {
        let kept: Vec<&str> = url
            .split(' ')
            .filter(|token| {
                let Some((key, value)) = token.split_once('=') else {
                    return true;
                };
                !take(key, value.trim_matches('\'').to_owned())
            })
            .collect();
        kept.join(" ")
    };
    Ok((rest, params))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_params_are_taken_out_of_urls() {
        let (rest, params) = take_tls_params(
            "postgres://u:p%26w@h:5432/db?application_name=x&sslmode=verify-full\
             &sslrootcert=%2Ftmp%2Fca%20dir%2Froot.crt&connect_timeout=5",
        )
        .unwrap();
        assert_eq!(
            rest,
            "postgres://u:p%26w@h:5432/db?application_name=x&connect_timeout=5"
        );
        assert_eq!(params.sslmode.as_deref(), Some("verify-full"));
        assert_eq!(
            params.sslrootcert,
            Some(PathBuf::from("/tmp/ca dir/root.crt"))
        );
        let (rest, params) = take_tls_params("postgres://u@h/db?sslmode=require").unwrap();
        assert_eq!(rest, "postgres://u@h/db");
        assert_eq!(params.sslmode.as_deref(), Some("require"));
        let (rest, params) = take_tls_params("postgres://u@h/db").unwrap();
        assert_eq!(
            (rest.as_str(), params),
            ("postgres://u@h/db", TlsParams::default())
        );
        let (rest, params) =
            take_tls_params("host=h user=u sslmode=verify-ca sslrootcert='/r.crt' dbname=d")
                .unwrap();
        assert_eq!(rest, "host=h user=u dbname=d");
        assert_eq!(params.sslmode.as_deref(), Some("verify-ca"));
        assert_eq!(params.sslrootcert, Some(PathBuf::from("/r.crt")));
    }

    #[test]
    fn the_url_wins_over_the_environment_and_prefer_is_the_default() {
        let env = Defaults {
            sslmode: Some("require".into()),
            sslrootcert: Some("/env/root.crt".into()),
        };
        let target = Target::parse("postgres://u@h/db?sslmode=disable", &env).unwrap();
        assert_eq!(target.mode, SslMode::Disable);
        assert_eq!(target.root_cert, Some(PathBuf::from("/env/root.crt")));
        let target = Target::parse("postgres://u@h/db?sslrootcert=/url.crt", &env).unwrap();
        assert_eq!(target.mode, SslMode::Require);
        assert_eq!(target.root_cert, Some(PathBuf::from("/url.crt")));
        let target = Target::parse("postgres://u@h/db", &Defaults::default()).unwrap();
        assert_eq!(target.mode, SslMode::Prefer);
        assert_eq!(target.root_cert, None);
        let unix = Target::parse("postgres://u@%2Frun%2Fpg/db?sslmode=require", &env).unwrap();
        assert_eq!(
            unix.mode,
            SslMode::Disable,
            "TLS is never tried on a Unix socket"
        );
    }

    #[test]
    fn bad_parameters_name_the_problem_not_the_password() {
        let err = Target::parse(
            "postgres://u:s3cret@h/db?sslmode=verify",
            &Defaults::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("verify-full") && !err.contains("s3cret"),
            "{err}"
        );
        let err = Target::parse("postgres://u:s3cret@h:port/db", &Defaults::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid") && !err.contains("s3cret"), "{err}");
    }
}
