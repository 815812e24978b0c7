//! The TLS options of the broker connection, used with an `amqps://` URL: the CA that signed
//! the broker's certificate and, for brokers that require one, a client certificate and key.
//! Only paths live here; the files are read at each connect (so a renewed certificate is picked
//! up by the next reconnect) and their contents never reach `Debug` output or a log.

use std::path::PathBuf;

use clap::Args;

/// TLS towards the broker (`amqps://` URLs only).
#[derive(Debug, Clone, Default, PartialEq, Eq, Args)]
pub struct AmqpTls {
    /// PEM file of the CA certificate(s) that the broker's certificate must chain to, trusted in
    /// addition to the system's trust store. The broker's host name is always checked.
    #[arg(
        id = "amqp_tls_ca",
        value_name = "PEM",
        long = "amqp-tls-ca",
        env = "AMQP_TLS_CA",
        global = true
    )]
    pub ca: Option<PathBuf>,
    /// PEM file of the client certificate (and its chain) shown to a broker that verifies peers
    /// (mutual TLS); needs `AMQP_TLS_CLIENT_KEY`.
    #[arg(
        id = "amqp_tls_client_cert",
        value_name = "PEM",
        long = "amqp-tls-client-cert",
        env = "AMQP_TLS_CLIENT_CERT",
        requires = "amqp_tls_client_key",
        global = true
    )]
    pub client_cert: Option<PathBuf>,
    /// PEM file of the private key of `AMQP_TLS_CLIENT_CERT`.
    #[arg(
        id = "amqp_tls_client_key",
        value_name = "PEM",
        long = "amqp-tls-client-key",
        env = "AMQP_TLS_CLIENT_KEY",
        requires = "amqp_tls_client_cert",
        global = true
    )]
    pub client_key: Option<PathBuf>,
}

impl AmqpTls {
    /// The options from the environment alone (`AMQP_TLS_CA`, `AMQP_TLS_CLIENT_CERT`,
    /// `AMQP_TLS_CLIENT_KEY`); an empty variable counts as unset.
    pub fn from_env() -> Self {
        let path = |name: &str| {
            std::env::var_os(name)
                .filter(|value| !value.is_empty())
                .map(PathBuf::from)
        };
        Self {
            ca: path("AMQP_TLS_CA"),
            client_cert: path("AMQP_TLS_CLIENT_CERT"),
            client_key: path("AMQP_TLS_CLIENT_KEY"),
        }
    }

    /// Whether any option is given.
    pub fn is_set(&self) -> bool {
        self.ca.is_some() || self.client_cert.is_some() || self.client_key.is_some()
    }
}

#[cfg(test)]
mod tests {
    use clap::FromArgMatches;

    use super::*;

    fn parse(args: &[&str]) -> Result<AmqpTls, clap::Error> {
        let command = AmqpTls::augment_args(clap::Command::new("t").no_binary_name(true));
        let matches = command.try_get_matches_from(args)?;
        AmqpTls::from_arg_matches(&matches)
    }

    #[test]
    fn a_client_certificate_comes_with_its_key() {
        assert_eq!(parse(&[]).unwrap(), AmqpTls::default());
        let both = parse(&[
            "--amqp-tls-ca=/ca.pem",
            "--amqp-tls-client-cert=/c.pem",
            "--amqp-tls-client-key=/k.pem",
        ])
        .unwrap();
        assert_eq!(both.client_key, Some(PathBuf::from("/k.pem")));
        assert!(both.is_set());
        let err = parse(&["--amqp-tls-client-cert=/c.pem"]).unwrap_err();
        assert!(err.to_string().contains("--amqp-tls-client-key"), "{err}");
    }
}
