//! The HTTP client OTLP export sends spans with: ureq, blocking (the batch span processor runs
//! on a thread of its own) and on rustls with ring like every other TLS connection here, so an
//! `https://` endpoint works. opentelemetry-otlp 0.33 reads none of the standard TLS variables
//! for its HTTP exporter, so they are read here:
//!
//! - `OTEL_EXPORTER_OTLP_CERTIFICATE`: PEM file of the CA(s) the collector's certificate must
//!   chain to; given, it replaces the system's trust store (as `sslrootcert` does for
//!   PostgreSQL), else the system's trust store is used. The host name is always checked.
//! - `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE` and `OTEL_EXPORTER_OTLP_CLIENT_KEY`: PEM files of a
//!   client certificate and its key, for a collector that requires mutual TLS.
//! - `OTEL_EXPORTER_OTLP_TIMEOUT`: milliseconds per export request (default 10000).

use std::path::{Path, PathBuf};
use std::time::Duration;

use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};

/// Sends each export request and returns the collector's answer, whatever its status (the
/// exporter judges it).
#[derive(Debug)]
pub(super) struct OtlpClient {
    agent: ureq::Agent,
}

#[async_trait::async_trait]
impl HttpClient for OtlpClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let response = self.agent.run(request.map(Vec::from))?;
        let (parts, mut body) = response.into_parts();
        Ok(Response::from_parts(parts, body.read_to_vec()?.into()))
    }
}

impl OtlpClient {
    /// The client the environment describes, or why there is none (a file that is missing or
    /// not PEM, a client certificate without its key).
    pub(super) fn from_env() -> Result<Self, String> {
        let var = |name: &str| {
            std::env::var_os(name)
                .filter(|value| !value.is_empty())
                .map(PathBuf::from)
        };
        let timeout = crate::config::env_parse("OTEL_EXPORTER_OTLP_TIMEOUT", 10_000u64)
            .map_err(|err| err.to_string())?;
        let roots = match var("OTEL_EXPORTER_OTLP_CERTIFICATE") {
            Some(ca) => RootCerts::new_with_certs(&certificates(&ca)?),
            None => RootCerts::PlatformVerifier,
        };
        let client_cert = match (
            var("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"),
            var("OTEL_EXPORTER_OTLP_CLIENT_KEY"),
        ) {
            (Some(cert), Some(key)) => Some(ClientCert::new_with_certs(
                &certificates(&cert)?,
                private_key(&key)?,
            )),
            (None, None) => None,
            _ => {
                return Err("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and \
                            OTEL_EXPORTER_OTLP_CLIENT_KEY go together"
                    .to_owned());
            }
        };
        let tls = TlsConfig::builder()
            .root_certs(roots)
            .client_cert(client_cert)
            .build();
        let agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .timeout_global(Some(Duration::from_millis(timeout)))
            .http_status_as_error(false)
            .build()
            .into();
        Ok(Self { agent })
    }
}

/// The certificates of a PEM file, read (and the file named in errors) by [`crate::tls`].
fn certificates(path: &Path) -> Result<Vec<Certificate<'static>>, String> {
    Ok(crate::tls::certificates(path)?
        .iter()
        .map(|cert| Certificate::from_der(cert.as_ref()).to_owned())
        .collect())
}

/// The private key of a PEM file, read by [`crate::tls`] so an error never shows it.
fn private_key(path: &Path) -> Result<PrivateKey<'static>, String> {
    crate::tls::private_key(path)?;
    let pem = crate::tls::read(path)?;
    PrivateKey::from_pem(&pem).map_err(|_| {
        format!(
            "reading private key {}: not a PEM private key",
            path.display()
        )
    })
}
