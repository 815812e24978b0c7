//! The TLS material every connection reads from files, in one place: root certificates,
//! certificate chains and private keys in PEM, and the one rustls crypto provider (ring).
//! PostgreSQL ([`crate::db::tls`]), the broker ([`crate::amqp`]) and OTLP export
//! ([`crate::telemetry`]) all load their files through here, so a bad file fails the same way
//! everywhere: naming the path and what is wrong with it, never showing a key.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// The crypto provider of every TLS connection: ring, as the workspace's rustls features say.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of the PEM file at `path`, in file order: at least one, or an error naming
/// the file.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let shown = path.display();
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|err| format!("reading certificate file {shown}: {err}"))?;
    if certs.is_empty() {
        return Err(format!("certificate file {shown} holds no certificate"));
    }
    Ok(certs)
}

/// The certificates of the PEM file at `path`, as trust anchors.
pub fn roots(path: &Path) -> Result<RootCertStore, String> {
    let certs = certificates(path)?;
    let mut roots = RootCertStore::empty();
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!(
            "root certificate {} holds no usable certificate",
            path.display()
        ));
    }
    Ok(roots)
}

/// The private key of the PEM file at `path` (PKCS#8, PKCS#1 or SEC1). The error names the
/// file and never holds any of its contents.
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|err| {
        let reason = match err {
            rustls::pki_types::pem::Error::NoItemsFound => "no private key found".to_owned(),
            rustls::pki_types::pem::Error::Io(err) => err.to_string(),
            _ => "not a PEM private key".to_owned(),
        };
        format!("reading private key {}: {reason}", path.display())
    })
}

/// The bytes of `path`, for libraries that take PEM text rather than parsed items.
pub fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|err| format!("reading {}: {err}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_files_are_named_and_keys_never_shown() {
        let dir = std::env::temp_dir().join(format!("saga-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.pem");
        assert!(certificates(&missing).unwrap_err().contains("missing.pem"));
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not pem at all\n").unwrap();
        let err = certificates(&empty).unwrap_err();
        assert!(err.contains("holds no certificate"), "{err}");
        let secret =
            "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1ieXRlcw==\n-----END PRIVATE KEY-----\n";
        let key = dir.join("key.pem");
        std::fs::write(&key, secret).unwrap();
        // Parses as a PEM item: whether it is a usable key is rustls's business at handshake.
        assert!(private_key(&key).is_ok());
        let err = private_key(&empty).unwrap_err();
        assert!(
            err.contains("empty.pem") && err.contains("no private key"),
            "{err}"
        );
        let err = private_key(&missing).unwrap_err();
        assert!(!err.contains("c2VjcmV0"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
