//! Key material: a service's signing key, the verification keys of every producer, and the
//! data keys payloads are encrypted under. Each is a list of entries in one text format, the
//! same in a file and in a variable:
//!
//! ```text
//! # signing key (secret, one entry):   service:key-id:base64(32-byte Ed25519 seed)
//! # verification keys (public):        service:key-id:base64(32-byte Ed25519 public key)
//! # data keys (secret, first seals):   key-id:base64(32-byte XChaCha20-Poly1305 key)
//! ```
//!
//! Entries are separated by newlines or commas; blank lines and `#` comments are ignored.
//! Secret bytes live in [`secrecy`] boxes: no `Debug` output or log line can show them.

use std::collections::HashMap;
use std::fmt;

use anyhow::{Context, bail, ensure};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chacha20poly1305::{KeyInit, XChaCha20Poly1305};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use secrecy::{ExposeSecret, SecretBox};

/// Every key is 32 bytes: an Ed25519 seed or public key, an XChaCha20-Poly1305 key.
pub const KEY_LEN: usize = 32;

/// A service's own key: it signs what the service emits.
pub struct SigningKey {
    pub service: String,
    pub id: String,
    pair: Ed25519KeyPair,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("service", &self.service)
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Parses one `service:key-id:base64(seed)` entry.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let entries = entries(text);
        ensure!(
            entries.len() == 1,
            "a signing key is one entry service:key-id:base64, found {}",
            entries.len()
        );
        let [service, id, seed] = fields::<3>(entries[0]).context("signing key")?;
        let seed = SecretBox::new(Box::new(decode_key(seed).context("signing key")?));
        Self::from_seed(service, id, seed.expose_secret())
    }

    fn from_seed(service: &str, id: &str, seed: &[u8; KEY_LEN]) -> anyhow::Result<Self> {
        let pair = Ed25519KeyPair::from_seed_unchecked(seed)
            .map_err(|_| anyhow::anyhow!("signing key {id}: not an Ed25519 seed"))?;
        Ok(Self {
            service: checked_name(service)?.to_owned(),
            id: checked_name(id)?.to_owned(),
            pair,
        })
    }

    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.pair.sign(message).as_ref().to_vec()
    }

    /// The verification entry others need for this key (`service:key-id:base64(public)`).
    pub fn public_entry(&self) -> String {
        format!(
            "{}:{}:{}",
            self.service,
            self.id,
            BASE64.encode(self.pair.public_key().as_ref())
        )
    }
}

/// A producer's public key and the service it belongs to.
#[derive(Debug, Clone)]
pub struct VerifyingKey {
    pub service: String,
    public: [u8; KEY_LEN],
}

impl VerifyingKey {
    /// True when `signature` over `message` was made by this key.
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.public)
            .verify(message, signature)
            .is_ok()
    }
}

/// Parses `service:key-id:base64(public)` entries into key id → key. Key ids are unique.
pub fn parse_verifying_keys(text: &str) -> anyhow::Result<HashMap<String, VerifyingKey>> {
    let mut keys = HashMap::new();
    for entry in entries(text) {
        let [service, id, public] = fields::<3>(entry).context("verification key")?;
        let key = VerifyingKey {
            service: checked_name(service)?.to_owned(),
            public: decode_key(public).with_context(|| format!("verification key {id}"))?,
        };
        if keys.insert(checked_name(id)?.to_owned(), key).is_some() {
            bail!("verification key id {id} appears twice");
        }
    }
    Ok(keys)
}

/// The data keys: the first one seals, all of them open.
pub struct DataKeys {
    pub active: String,
    ciphers: HashMap<String, XChaCha20Poly1305>,
}

impl fmt::Debug for DataKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ids: Vec<_> = self.ciphers.keys().collect();
        ids.sort();
        f.debug_struct("DataKeys")
            .field("active", &self.active)
            .field("ids", &ids)
            .finish()
    }
}

impl DataKeys {
    /// Parses `key-id:base64(key)` entries; the first is the active one.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut active = None;
        let mut ciphers = HashMap::new();
        for entry in entries(text) {
            let [id, key] = fields::<2>(entry).context("data key")?;
            let key = SecretBox::new(Box::new(
                decode_key(key).with_context(|| format!("data key {id}"))?,
            ));
            let cipher = XChaCha20Poly1305::new(key.expose_secret().into());
            if ciphers
                .insert(checked_name(id)?.to_owned(), cipher)
                .is_some()
            {
                bail!("data key id {id} appears twice");
            }
            active.get_or_insert_with(|| id.to_owned());
        }
        let active = active.context("no data key: at least one entry key-id:base64 is needed")?;
        Ok(Self { active, ciphers })
    }

    pub fn get(&self, id: &str) -> Option<&XChaCha20Poly1305> {
        self.ciphers.get(id)
    }

    pub fn active_cipher(&self) -> Option<&XChaCha20Poly1305> {
        self.get(&self.active)
    }
}

/// A new key set as text: one signing entry per producer, their verification entries, and one
/// data key; key ids carry `label` (e.g. a date) so that a rotation can tell them apart.
#[derive(Debug)]
pub struct Generated {
    /// Producer → its signing entry (secret).
    pub signing: Vec<(String, SecretBox<str>)>,
    /// Every producer's verification entry (public).
    pub verifying: String,
    /// The data key entry (secret).
    pub data: SecretBox<str>,
}

/// Generates a key set for `producers` from the operating system's random source.
pub fn generate(producers: &[&str], label: &str) -> anyhow::Result<Generated> {
    let rng = SystemRandom::new();
    let mut signing = Vec::new();
    let mut verifying = String::new();
    for producer in producers {
        let seed = SecretBox::new(Box::new(random_key(&rng)?));
        let id = format!("{producer}-{label}");
        let key = SigningKey::from_seed(producer, &id, seed.expose_secret())?;
        verifying.push_str(&key.public_entry());
        verifying.push('\n');
        let entry = format!("{producer}:{id}:{}\n", BASE64.encode(seed.expose_secret()));
        signing.push(((*producer).to_owned(), SecretBox::from(entry)));
    }
    let data_key = SecretBox::new(Box::new(random_key(&rng)?));
    let data = format!("data-{label}:{}\n", BASE64.encode(data_key.expose_secret()));
    Ok(Generated {
        signing,
        verifying,
        data: SecretBox::from(data),
    })
}

pub(crate) fn random_bytes<const N: usize>(rng: &SystemRandom) -> anyhow::Result<[u8; N]> {
    let mut bytes = [0u8; N];
    rng.fill(&mut bytes)
        .map_err(|_| anyhow::anyhow!("the operating system's random source failed"))?;
    Ok(bytes)
}

fn random_key(rng: &SystemRandom) -> anyhow::Result<[u8; KEY_LEN]> {
    random_bytes(rng)
}

/// The non-empty, non-comment entries of `text`.
fn entries(text: &str) -> Vec<&str> {
    text.lines()
        .map(|line| line.split_once('#').map_or(line, |(entry, _comment)| entry))
        .flat_map(|line| line.split(','))
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .collect()
}

fn fields<const N: usize>(entry: &str) -> anyhow::Result<[&str; N]> {
    let parts: Vec<&str> = entry.split(':').map(str::trim).collect();
    // The entry may hold a secret: say what is wrong with its shape, never echo it.
    parts.try_into().map_err(|parts: Vec<&str>| {
        anyhow::anyhow!(
            "expected {N} fields separated by ':', found {}",
            parts.len()
        )
    })
}

fn decode_key(text: &str) -> anyhow::Result<[u8; KEY_LEN]> {
    let bytes = BASE64
        .decode(text)
        .map_err(|_| anyhow::anyhow!("the key is not base64"))?;
    bytes.try_into().map_err(|bytes: Vec<u8>| {
        anyhow::anyhow!("the key is {} bytes, not {KEY_LEN}", bytes.len())
    })
}

/// Service names and key ids travel in every message and name files: keep them plain.
fn checked_name(name: &str) -> anyhow::Result<&str> {
    let plain = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    ensure!(
        plain,
        "{name:.64?} is not a key name: 1 to 64 of A-Z a-z 0-9 - _ ."
    );
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_back_and_sign_verifiably() {
        let set = generate(&["order", "coupon"], "t1").unwrap();
        let verifying = parse_verifying_keys(&set.verifying).unwrap();
        let (service, entry) = &set.signing[1];
        assert_eq!(service, "coupon");
        let key = SigningKey::parse(entry.expose_secret()).unwrap();
        assert_eq!(key.id, "coupon-t1");
        let signature = key.sign(b"hello");
        assert!(verifying["coupon-t1"].verifies(b"hello", &signature));
        assert!(!verifying["order-t1"].verifies(b"hello", &signature));
        assert!(!verifying["coupon-t1"].verifies(b"hellO", &signature));
        let data = DataKeys::parse(set.data.expose_secret()).unwrap();
        assert_eq!(data.active, "data-t1");
    }

    #[test]
    fn no_secret_in_debug_output_or_errors() {
        let set = generate(&["order"], "t1").unwrap();
        let entry = set.signing[0].1.expose_secret().to_owned();
        let secret = entry.trim().rsplit(':').next().unwrap().to_owned();
        let key = SigningKey::parse(&entry).unwrap();
        assert!(!format!("{key:?} {set:?}").contains(&secret));
        let data = DataKeys::parse(set.data.expose_secret()).unwrap();
        let data_secret = set
            .data
            .expose_secret()
            .trim()
            .rsplit(':')
            .next()
            .unwrap()
            .to_owned();
        assert!(!format!("{data:?}").contains(&data_secret));
        let broken = format!("order:{secret}");
        let err = format!("{:#}", SigningKey::parse(&broken).unwrap_err());
        assert!(!err.contains(&secret), "{err}");
    }

    #[test]
    fn malformed_entries_are_refused() {
        assert!(SigningKey::parse("").is_err());
        assert!(SigningKey::parse("order:k1:not-base64!").is_err());
        assert!(SigningKey::parse("order:k1:AAAA").is_err());
        assert!(DataKeys::parse("# only a comment, with a comma\n").is_err());
        let dup = "a:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=,a:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        assert!(DataKeys::parse(dup).is_err());
        assert!(
            parse_verifying_keys("x y:k:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=").is_err()
        );
    }
}
