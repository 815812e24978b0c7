//! TLS to PostgreSQL: libpq's `sslmode` levels on rustls with the ring provider.
//!
//! | `sslmode` | TLS | certificate check |
//! | --- | --- | --- |
//! | `disable` | never | - |
//! | `allow`, `prefer` | if the server offers it | none, or as `verify-ca` when a root certificate is given |
//! | `require` | always | none, or as `verify-ca` when a root certificate is given |
//! | `verify-ca` | always | chain up to the root certificate; the host name is not checked |
//! | `verify-full` | always | chain up to the root certificate and the host name |
//!
//! Unlike libpq, `allow` tries TLS first (as `prefer` does), and a root certificate that was
//! named but cannot be read is an error in every mode that may use TLS, instead of silently
//! falling back to no verification.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    /// The mode spelled as libpq spells it.
    pub fn parse(text: &str) -> Result<Self, String> {
        Ok(match text {
            "disable" => Self::Disable,
            "allow" => Self::Allow,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            other => {
                return Err(format!(
                    "sslmode={other:?} is none of disable, allow, prefer, require, verify-ca, \
                     verify-full"
                ));
            }
        })
    }

    /// What tokio-postgres negotiates: no TLS, TLS when offered, or TLS or nothing.
    pub fn negotiation(self) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode as Negotiation;
        match self {
            Self::Disable => Negotiation::Disable,
            Self::Allow | Self::Prefer => Negotiation::Prefer,
            Self::Require | Self::VerifyCa | Self::VerifyFull => Negotiation::Require,
        }
    }
}

/// The rustls configuration for `mode`, `None` for `disable`. `root_cert` is a PEM file of one
/// or more certificates.
pub fn client_config(
    mode: SslMode,
    root_cert: Option<&Path>,
) -> Result<Option<ClientConfig>, String> {
    if mode == SslMode::Disable {
        return Ok(None);
    }
    let provider = crate::tls::provider();
    let algorithms = provider.signature_verification_algorithms;
    let roots = root_cert.map(crate::tls::roots).transpose()?;
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|err| format!("TLS configuration: {err}"))?;
    let config = match (mode, roots) {
        (SslMode::VerifyFull, Some(roots)) => builder.with_root_certificates(roots),
        (SslMode::VerifyCa | SslMode::VerifyFull, None) => {
            return Err(format!(
                "sslmode={} needs a root certificate: sslrootcert=<PEM file> in the URL or \
                 PGSSLROOTCERT",
                if mode == SslMode::VerifyCa {
                    "verify-ca"
                } else {
                    "verify-full"
                }
            ));
        }
        (_, roots) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ChainOnly {
                roots: roots.map(Arc::new),
                algorithms,
            })),
    };
    Ok(Some(config.with_no_client_auth()))
}

/// The verifier of every mode but `verify-full`: with roots (`verify-ca`, or `require` given a
/// root certificate) the chain must lead to one of them and the name the server was reached by
/// is not checked; without (`prefer`, `require`) any certificate is accepted, as libpq does.
/// The handshake signature is always checked, so the server holds the certificate's key.
#[derive(Debug)]
struct ChainOnly {
    roots: Option<Arc<RootCertStore>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let cert = ParsedCertificate::try_from(end_entity)?;
            rustls::client::verify_server_cert_signed_by_trust_anchor(
                &cert,
                roots,
                intermediates,
                now,
                self.algorithms.all,
            )?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_map_to_what_tokio_postgres_negotiates() {
        use tokio_postgres::config::SslMode as Negotiation;
        let cases = [
            ("disable", Negotiation::Disable),
            ("allow", Negotiation::Prefer),
            ("prefer", Negotiation::Prefer),
            ("require", Negotiation::Require),
            ("verify-ca", Negotiation::Require),
            ("verify-full", Negotiation::Require),
        ];
        for (text, negotiation) in cases {
            assert_eq!(
                SslMode::parse(text).unwrap().negotiation(),
                negotiation,
                "{text}"
            );
        }
        assert!(
            SslMode::parse("verify")
                .unwrap_err()
                .contains("verify-full")
        );
    }

    #[test]
    fn verifying_modes_need_a_readable_root_certificate() {
        assert!(client_config(SslMode::Disable, None).unwrap().is_none());
        assert!(client_config(SslMode::Require, None).unwrap().is_some());
        let err = client_config(SslMode::VerifyFull, None).unwrap_err();
        assert!(err.contains("PGSSLROOTCERT"), "{err}");
        let missing = Path::new("/nonexistent/root.crt");
        let err = client_config(SslMode::Require, Some(missing)).unwrap_err();
        assert!(err.contains("/nonexistent/root.crt"), "{err}");
    }
}
