//! Each identity's password: where it comes from, and the salted hash RabbitMQ stores.
//!
//! Sources, in order: the variable `BROKER_PASSWORD_<ROLE>` (e.g. `BROKER_PASSWORD_ORDER`), the
//! file `<dir>/<role>`, or a new random password written to that file (mode 0600) for whoever
//! deploys the service to pick up. Passwords never reach the broker or a definitions file in
//! clear: only `rabbit_password_hashing_sha256` hashes do. The development set (`<role>-dev`)
//! is for a local broker only.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use rand::Rng;
use rand::distr::Alphanumeric;

use super::Role;

/// RabbitMQ's default hashing algorithm, named as definitions name it.
pub const HASHING_ALGORITHM: &str = "rabbit_password_hashing_sha256";

/// Each role's password, by role name. Debug output shows the names only.
#[derive(Clone, Default)]
pub struct Passwords {
    by_role: BTreeMap<String, String>,
    /// The password files this run created.
    pub generated: Vec<PathBuf>,
}

impl std::fmt::Debug for Passwords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passwords")
            .field("roles", &self.by_role.keys().collect::<Vec<_>>())
            .field("generated", &self.generated)
            .finish()
    }
}

impl Passwords {
    /// The development set: `<role>-dev` for every role. Never for a broker others can reach.
    pub fn dev(roles: &[Role]) -> Self {
        let by_role = roles
            .iter()
            .map(|role| (role.name().to_owned(), format!("{}-dev", role.name())))
            .collect();
        Self {
            by_role,
            generated: Vec::new(),
        }
    }

    /// Each role's password from `env` (`BROKER_PASSWORD_<ROLE>`), else from `<dir>/<role>`,
    /// else generated into that file. Without `dir`, every role needs its variable.
    pub fn from_sources(
        roles: &[Role],
        dir: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Self> {
        let mut passwords = Self::default();
        for role in roles {
            let variable = variable(role);
            let password = match (env(&variable).filter(|v| !v.is_empty()), dir) {
                (Some(password), _) => password,
                (None, Some(dir)) => passwords.read_or_generate(&dir.join(role.name()))?,
                (None, None) => bail!(
                    "no password for the {} identity: set {variable} or give a passwords directory",
                    role.name()
                ),
            };
            passwords.by_role.insert(role.name().to_owned(), password);
        }
        Ok(passwords)
    }

    /// `role`'s password.
    pub fn get(&self, role: &Role) -> anyhow::Result<&str> {
        self.by_role
            .get(role.name())
            .map(String::as_str)
            .with_context(|| format!("no password for the {} identity", role.name()))
    }

    /// The password in `path`, or a new one written there.
    fn read_or_generate(&mut self, path: &Path) -> anyhow::Result<String> {
        match std::fs::read_to_string(path) {
            Ok(text) if !text.trim().is_empty() => return Ok(text.trim().to_owned()),
            Ok(_) => bail!("{} is empty", path.display()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
        }
        let password = generate();
        write_private(path, &password)?;
        self.generated.push(path.to_owned());
        Ok(password)
    }
}

/// The variable that holds `role`'s password.
pub fn variable(role: &Role) -> String {
    format!(
        "BROKER_PASSWORD_{}",
        role.name().to_uppercase().replace(['-', '.'], "_")
    )
}

/// A new random password: 32 alphanumerics (about 190 bits), safe in a URL as is.
pub fn generate() -> String {
    rand::rng()
        .sample_iter(Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

/// RabbitMQ's `rabbit_password_hashing_sha256` hash of `password`: base64 of a random 4-byte
/// salt followed by SHA-256(salt ++ password).
pub fn hash(password: &str) -> String {
    let salt: [u8; 4] = rand::rng().random();
    salted_hash(salt, password)
}

/// Whether `hash` (as [`hash`] makes them) is `password`'s.
pub fn verify(hash: &str, password: &str) -> bool {
    let Ok(bytes) = STANDARD.decode(hash) else {
        return false;
    };
    let Some(salt) = bytes
        .get(..4)
        .and_then(|salt| <[u8; 4]>::try_from(salt).ok())
    else {
        return false;
    };
    salted_hash(salt, password) == hash
}

fn salted_hash(salt: [u8; 4], password: &str) -> String {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    context.update(&salt);
    context.update(password.as_bytes());
    let mut bytes = salt.to_vec();
    bytes.extend_from_slice(context.finish().as_ref());
    STANDARD.encode(bytes)
}

/// Writes `secret` to a new file readable by its owner only.
fn write_private(path: &Path, secret: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    writeln!(file, "{secret}").with_context(|| format!("writing {}", path.display()))
}
