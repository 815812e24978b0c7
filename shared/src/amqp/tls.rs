//! TLS towards the broker: what lapin gets for an `amqps://` URL.
//!
//! lapin (through tcp-stream and rustls-connector, on ring) verifies the broker's certificate
//! against the system's trust store (rustls-platform-verifier) plus the PEM certificates it is
//! given, and checks the URL's host name against it. It takes PEM text, not rustls types, so
//! the files are parsed here first with [`crate::tls`]: lapin would skip a certificate it cannot
//! parse without a word, and a CA file that silently adds nothing must fail instead.

use std::path::Path;

use anyhow::{Context, bail};
use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};

use crate::config::AmqpTls;

/// Whether `url` asks for TLS (`amqps://`).
pub fn is_amqps(url: &str) -> bool {
    url.trim_start()
        .get(..8)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("amqps://"))
}

/// The TLS configuration for `url`: `None` for a plain `amqp://` URL without TLS options.
/// TLS options with a plain URL are an error: the operator meant the traffic to be encrypted.
pub fn config(url: &str, tls: &AmqpTls) -> anyhow::Result<Option<OwnedTLSConfig>> {
    if !is_amqps(url) {
        if tls.is_set() {
            bail!("AMQP_TLS_* options are set but AMQP_URL is not amqps://");
        }
        return Ok(None);
    }
    let cert_chain = match &tls.ca {
        Some(ca) => Some(pem_text(ca, crate::tls::certificates).context("AMQP_TLS_CA")?),
        None => None,
    };
    let identity = match (&tls.client_cert, &tls.client_key) {
        (Some(cert), Some(key)) => Some(OwnedIdentity::PKCS8 {
            pem: pem_text(cert, crate::tls::certificates)
                .context("AMQP_TLS_CLIENT_CERT")?
                .into_bytes(),
            key: pem_text(key, crate::tls::private_key)
                .context("AMQP_TLS_CLIENT_KEY")?
                .into_bytes(),
        }),
        (None, None) => None,
        _ => bail!("AMQP_TLS_CLIENT_CERT and AMQP_TLS_CLIENT_KEY go together"),
    };
    Ok(Some(OwnedTLSConfig {
        identity,
        cert_chain,
    }))
}

/// The text of the PEM file at `path`, once `parse` accepted it.
fn pem_text<T>(path: &Path, parse: fn(&Path) -> Result<T, String>) -> anyhow::Result<String> {
    parse(path).map_err(anyhow::Error::msg)?;
    let bytes = crate::tls::read(path).map_err(anyhow::Error::msg)?;
    String::from_utf8(bytes).map_err(|_| anyhow::anyhow!("{} is not PEM text", path.display()))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn plain_urls_stay_plain_and_tls_options_need_amqps() {
        assert!(is_amqps("amqps://u:p@h:5671/v") && is_amqps(" AMQPS://h"));
        assert!(!is_amqps("amqp://u:p@h:5672/v") && !is_amqps("amqps"));
        let none = AmqpTls::default();
        assert!(config("amqp://h", &none).unwrap().is_none());
        let ca = AmqpTls {
            ca: Some(PathBuf::from("/ca.pem")),
            ..AmqpTls::default()
        };
        let err = config("amqp://h", &ca).unwrap_err().to_string();
        assert!(err.contains("not amqps://"), "{err}");
        // Without options: the system's trust store alone.
        let system = config("amqps://h", &none).unwrap().unwrap();
        assert_eq!(system, OwnedTLSConfig::default());
    }

    #[test]
    fn unreadable_files_are_named() {
        let missing = AmqpTls {
            ca: Some(PathBuf::from("/nonexistent/ca.pem")),
            ..AmqpTls::default()
        };
        let err = format!("{:#}", config("amqps://h", &missing).unwrap_err());
        assert!(
            err.contains("AMQP_TLS_CA") && err.contains("/nonexistent/ca.pem"),
            "{err}"
        );
        let half = AmqpTls {
            client_cert: Some(PathBuf::from("/c.pem")),
            ..AmqpTls::default()
        };
        let err = config("amqps://h", &half).unwrap_err().to_string();
        assert!(err.contains("go together"), "{err}");
    }
}
