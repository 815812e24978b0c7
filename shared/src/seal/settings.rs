//! Where a process finds its keys: a directory of key files (`EVENT_KEYS`), or the same
//! contents in variables, which win over the files.
//!
//! ```text
//! $EVENT_KEYS/verify.keys              every producer's verification keys (public)
//! $EVENT_KEYS/data.keys                the data keys, the first one seals (secret)
//! $EVENT_KEYS/{service}.signing.key    one service's signing key (secret; only that service)
//! ```
//!
//! `EVENT_KEYS=dev` selects the development key set compiled into every binary (the files in
//! `shared/dev-keys/`): public, for `sagactl up`, the tests and docker compose only.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;

use super::Keyring;
use super::keys::{DataKeys, SigningKey, parse_verifying_keys};
use crate::events::PRODUCERS;

/// The value of `EVENT_KEYS` that selects the development key set.
pub const DEV: &str = "dev";

const DEV_VERIFY: &str = include_str!("../../dev-keys/verify.keys");
const DEV_DATA: &str = include_str!("../../dev-keys/data.keys");
const DEV_SIGNING: [(&str, &str); 4] = [
    ("order", include_str!("../../dev-keys/order.signing.key")),
    (
        "product",
        include_str!("../../dev-keys/product.signing.key"),
    ),
    ("coupon", include_str!("../../dev-keys/coupon.signing.key")),
    (
        "balance",
        include_str!("../../dev-keys/balance.signing.key"),
    ),
];

/// The key options every process that seals or opens events takes.
#[derive(Clone, Default, Args)]
pub struct KeySettings {
    /// Directory of the event keys (`verify.keys`, `data.keys`, `{service}.signing.key`, as
    /// `sagactl keys generate` writes them), or `dev` for the development key set (public: never
    /// for real data).
    #[arg(
        id = "event_keys",
        global = true,
        long = "event-keys",
        env = "EVENT_KEYS",
        value_name = "DIR|dev"
    )]
    pub dir: Option<String>,
    /// This service's signing key, `service:key-id:base64` (instead of the file).
    #[arg(
        id = "event_signing_key",
        global = true,
        long = "event-signing-key",
        env = "EVENT_SIGNING_KEY",
        value_name = "ENTRY",
        hide_env_values = true
    )]
    pub signing: Option<String>,
    /// The producers' verification keys, `service:key-id:base64,...` (instead of the file).
    #[arg(
        id = "event_verify_keys",
        global = true,
        long = "event-verify-keys",
        env = "EVENT_VERIFY_KEYS",
        value_name = "ENTRIES"
    )]
    pub verify: Option<String>,
    /// The data keys, `key-id:base64,...`, the first one seals (instead of the file).
    #[arg(
        id = "event_data_keys",
        global = true,
        long = "event-data-keys",
        env = "EVENT_DATA_KEYS",
        value_name = "ENTRIES",
        hide_env_values = true
    )]
    pub data: Option<String>,
}

impl std::fmt::Debug for KeySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |value: &Option<String>| value.as_ref().map(|_| "<set>");
        f.debug_struct("KeySettings")
            .field("dir", &self.dir)
            .field("signing", &set(&self.signing))
            .field("verify", &set(&self.verify))
            .field("data", &set(&self.data))
            .finish()
    }
}

impl KeySettings {
    /// The development key set.
    pub fn dev() -> Self {
        Self {
            dir: Some(DEV.to_owned()),
            ..Self::default()
        }
    }

    /// True when nothing names any key.
    pub fn is_empty(&self) -> bool {
        self.dir.is_none() && self.verify.is_none() && self.data.is_none()
    }

    /// The keyring of `service`: with its signing key when it is one of the producers, with
    /// none for a reader (the monitor, `sagactl`).
    pub fn load(&self, service: Option<&str>) -> anyhow::Result<Keyring> {
        let source = self.source()?;
        if matches!(source, Source::Dev) {
            tracing::warn!(
                "using the DEVELOPMENT event key set: it is public, never use it for real data"
            );
        }
        let verify = self.text(&source, &self.verify, "verify.keys", false)?;
        let data = self.text(&source, &self.data, "data.keys", true)?;
        let verifying = parse_verifying_keys(&verify).context("verification keys")?;
        let data = DataKeys::parse(&data).context("data keys")?;
        let signer = match service.filter(|name| PRODUCERS.contains(name)) {
            Some(name) => {
                let file = format!("{name}.signing.key");
                let text = self.text(&source, &self.signing, &file, true)?;
                let key = SigningKey::parse(&text).context("signing key")?;
                if key.service != name {
                    bail!("the signing key given to {name} is {}'s", key.service);
                }
                if !verifying.contains_key(&key.id) {
                    bail!("{name}'s signing key {} has no verification key", key.id);
                }
                Some(key)
            }
            None => None,
        };
        Ok(Keyring::new(signer, verifying, data))
    }

    fn source(&self) -> anyhow::Result<Source> {
        match self.dir.as_deref().map(str::trim) {
            Some(DEV) => Ok(Source::Dev),
            Some(dir) if !dir.is_empty() => Ok(Source::Dir(PathBuf::from(dir))),
            _ if self.verify.is_some() && self.data.is_some() => Ok(Source::Variables),
            _ => bail!(
                "no event keys: set EVENT_KEYS to a key directory (`sagactl keys generate` writes \
                 one) or to `dev` for the public development key set, or set EVENT_VERIFY_KEYS, \
                 EVENT_DATA_KEYS and EVENT_SIGNING_KEY"
            ),
        }
    }

    /// The variable's value if set, else the file's (or the development key set's).
    fn text(
        &self,
        source: &Source,
        variable: &Option<String>,
        file: &str,
        secret: bool,
    ) -> anyhow::Result<String> {
        if let Some(value) = variable.as_ref().filter(|value| !value.trim().is_empty()) {
            return Ok(value.clone());
        }
        match source {
            Source::Dev => dev_file(file).map(str::to_owned),
            Source::Dir(dir) => read_key_file(&dir.join(file), secret),
            Source::Variables => {
                bail!("no {file}: its variable is unset and EVENT_KEYS names no directory")
            }
        }
    }
}

enum Source {
    Dev,
    Dir(PathBuf),
    Variables,
}

/// A file of the development key set as compiled in (`verify.keys`, `data.keys`,
/// `{service}.signing.key`): the text `EVENT_KEYS=dev` reads, for tools and tests that build
/// keyrings of their own from it.
pub fn dev_file(file: &str) -> anyhow::Result<&'static str> {
    match file {
        "verify.keys" => Ok(DEV_VERIFY),
        "data.keys" => Ok(DEV_DATA),
        _ => DEV_SIGNING
            .iter()
            .find(|(service, _)| format!("{service}.signing.key") == file)
            .map(|(_, text)| *text)
            .with_context(|| format!("the development key set has no {file}")),
    }
}

fn read_key_file(path: &Path, secret: bool) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the key file {}", path.display()))?;
    if secret && readable_by_others(path) {
        tracing::warn!(path = %path.display(), "a secret key file is readable by others than its owner (chmod 600 it)");
    }
    Ok(text)
}

/// True when a file's mode lets others than its owner at it, judged as PostgreSQL judges its
/// key file: a file root owns may also be read by its group (a Kubernetes secret volume is
/// root's, its group the pod's `fsGroup`, mode 0440); anyone else's must be the owner's alone.
#[cfg(unix)]
fn readable_by_others(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).is_ok_and(|meta| {
        let allowed = if meta.uid() == 0 { 0o740 } else { 0o700 };
        meta.mode() & 0o777 & !allowed != 0
    })
}

#[cfg(not(unix))]
fn readable_by_others(_path: &Path) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dev_set_gives_each_producer_its_own_key_and_readers_none() {
        let dev = KeySettings::dev();
        for producer in PRODUCERS {
            assert_eq!(dev.load(Some(producer)).unwrap().signer(), Some(*producer));
        }
        assert_eq!(dev.load(Some("monitor")).unwrap().signer(), None);
        assert_eq!(dev.load(None).unwrap().signer(), None);
    }

    #[cfg(unix)]
    #[test]
    fn a_secret_key_file_others_can_read_is_noticed() {
        use std::os::unix::fs::PermissionsExt;
        let path = std::env::temp_dir().join(format!("key-mode-{}", std::process::id()));
        std::fs::write(&path, "x").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(readable_by_others(&path));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(!readable_by_others(&path));
        // Group-readable: accepted from root (a Kubernetes secret volume), from no one else.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let root_owns =
            std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&path).unwrap()) == 0;
        assert_eq!(readable_by_others(&path), !root_owns);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn no_keys_is_an_error_that_says_what_to_set() {
        let err = KeySettings::default().load(Some("order")).unwrap_err();
        assert!(format!("{err:#}").contains("EVENT_KEYS"), "{err:#}");
    }

    #[test]
    fn a_signing_key_of_another_service_is_refused() {
        let settings = KeySettings {
            signing: Some(DEV_SIGNING[2].1.to_owned()),
            ..KeySettings::dev()
        };
        let err = settings.load(Some("order")).unwrap_err();
        assert!(format!("{err:#}").contains("coupon's"), "{err:#}");
        assert!(!format!("{settings:?}").contains(DEV_SIGNING[2].1.trim()));
    }
}
