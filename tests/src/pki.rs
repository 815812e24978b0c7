//! Certificates made for one test: a CA, server certificates for 127.0.0.1 and client
//! certificates it signs, written as PEM files into a directory the test owns. The TLS tests
//! (a private RabbitMQ node, an OTLP collector) trust nothing else.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// A certificate authority.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its private key, in PEM.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Where [`Issued::write`] put the files.
#[derive(Debug, Clone)]
pub struct IssuedFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Ca {
    /// A new self-signed CA named `name`.
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::new()).expect("CA parameters");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().expect("CA key");
        Self {
            issuer: CertifiedIssuer::self_signed(params, key).expect("self-signed CA"),
        }
    }

    /// The CA certificate in PEM.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// Writes the CA certificate to `path`.
    pub fn write(&self, path: &Path) -> PathBuf {
        std::fs::write(path, self.pem()).expect("write CA certificate");
        path.to_owned()
    }

    /// A server certificate for `names` (IP addresses or DNS names).
    pub fn server(&self, names: &[&str]) -> Issued {
        let names = names.iter().map(|name| (*name).to_owned()).collect();
        self.issue(names, ExtendedKeyUsagePurpose::ServerAuth, "server")
    }

    /// A client certificate whose common name is `name`.
    pub fn client(&self, name: &str) -> Issued {
        self.issue(Vec::new(), ExtendedKeyUsagePurpose::ClientAuth, name)
    }

    fn issue(&self, names: Vec<String>, usage: ExtendedKeyUsagePurpose, cn: &str) -> Issued {
        let mut params = CertificateParams::new(names).expect("certificate parameters");
        params.distinguished_name.push(DnType::CommonName, cn);
        params.key_usages.push(KeyUsagePurpose::DigitalSignature);
        params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
        params.extended_key_usages.push(usage);
        params.use_authority_key_identifier_extension = true;
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &self.issuer).expect("signed");
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

impl Issued {
    /// Writes `{stem}.crt` and `{stem}.key` into `dir`.
    pub fn write(&self, dir: &Path, stem: &str) -> IssuedFiles {
        let files = IssuedFiles {
            cert: dir.join(format!("{stem}.crt")),
            key: dir.join(format!("{stem}.key")),
        };
        std::fs::write(&files.cert, &self.cert_pem).expect("write certificate");
        std::fs::write(&files.key, &self.key_pem).expect("write key");
        files
    }
}
