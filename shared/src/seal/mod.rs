//! Sealed events: signed by the service that emits them, encrypted for the services that read
//! them (docs/security.md).
//!
//! The producer seals an envelope when it writes the outbox row ([`Keyring::seal`]): the
//! payload is encrypted with XChaCha20-Poly1305 under the active data key (a random 192-bit
//! nonce per message; every header field is associated data), and the header, nonce and
//! ciphertext are signed with the producer's Ed25519 key. The relay forwards the bytes and holds
//! no key. A consumer opens them ([`Keyring::open`]): the signature must verify under a known
//! key that belongs to the producer the message names, the data key must be known, and the
//! cipher must authenticate; then [`Opened::admit`] checks the AMQP properties against the
//! signed ids and the producer against the one service allowed to emit the type. Anything
//! else is a [`Refusal`]: the message has no effect and is dead-lettered as `unauthenticated`.
//!
//! - [`keys`]: key material, its text format, generation.
//! - [`wire`]: the sealed envelope and what exactly is signed.
//! - [`settings`]: where a process finds its keys (`EVENT_KEYS` and friends).

pub mod keys;
pub mod settings;
pub mod wire;

use std::collections::HashMap;
use std::sync::Arc;

use chacha20poly1305::XNonce;
use chacha20poly1305::aead::{Aead, Payload};
use chrono::{DateTime, SecondsFormat, Utc};
use ring::rand::SystemRandom;

use crate::envelope::Envelope;
pub use keys::{DataKeys, SigningKey, VerifyingKey};
pub use settings::KeySettings;
use wire::Sealed;

/// XChaCha20-Poly1305 nonces are 192 bits: random ones never collide in practice.
const NONCE_LEN: usize = 24;

/// The keys of one process: its own signing key (if it emits events), every producer's
/// verification key, and the data keys. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Keyring(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    signer: Option<SigningKey>,
    verifying: HashMap<String, VerifyingKey>,
    data: DataKeys,
}

/// Why a message was refused: it is not a sealed event at all, or it fails a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not even JSON, or a payload its own producer garbled: dead-lettered as `malformed`.
    Malformed(String),
    /// Dead-lettered as `unauthenticated`; `check` is a bounded metric label.
    Unauthenticated { check: &'static str, detail: String },
}

impl Refusal {
    fn unauthenticated(check: &'static str, detail: impl Into<String>) -> Self {
        Self::Unauthenticated {
            check,
            detail: detail.into(),
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Malformed(detail) => write!(f, "malformed: {detail}"),
            Self::Unauthenticated { check, detail } => write!(f, "{check}: {detail}"),
        }
    }
}

/// An event whose signature and encryption checked out.
#[derive(Debug, Clone)]
pub struct Opened {
    pub envelope: Envelope,
    /// The service whose key signed it.
    pub producer: String,
    pub signing_key: String,
    pub data_key: String,
}

impl Opened {
    /// Admits the event as delivered with AMQP `message_id` and `type`, for a consumer that
    /// takes its type only from `allowed_producer`: a signed message re-published under
    /// another id, or signed by a service that may not emit its type, is refused.
    pub fn admit(
        &self,
        message_id: Option<&str>,
        message_type: Option<&str>,
        allowed_producer: Option<&str>,
    ) -> Result<(), Refusal> {
        let envelope = &self.envelope;
        let id = envelope.event_id.to_string();
        if message_id != Some(id.as_str()) {
            return Err(Refusal::unauthenticated(
                "id_mismatch",
                format!("message id {message_id:?} is not the signed event id {id}"),
            ));
        }
        if message_type.is_some_and(|kind| kind != envelope.event_type) {
            return Err(Refusal::unauthenticated(
                "id_mismatch",
                format!(
                    "message type {message_type:?} is not the signed type {}",
                    envelope.event_type
                ),
            ));
        }
        match allowed_producer {
            Some(allowed) if allowed == self.producer => Ok(()),
            allowed => Err(Refusal::unauthenticated(
                "wrong_producer",
                format!(
                    "{} is emitted by {}, this one was signed by {}",
                    envelope.event_type,
                    allowed.unwrap_or("no service"),
                    self.producer
                ),
            )),
        }
    }
}

impl Keyring {
    pub fn new(
        signer: Option<SigningKey>,
        verifying: HashMap<String, VerifyingKey>,
        data: DataKeys,
    ) -> Self {
        Self(Arc::new(Inner {
            signer,
            verifying,
            data,
        }))
    }

    /// The service this keyring signs for, if any.
    pub fn signer(&self) -> Option<&str> {
        self.0.signer.as_ref().map(|key| key.service.as_str())
    }

    /// The sealed bytes of `envelope`, signed by this process's key.
    pub fn seal(&self, envelope: &Envelope) -> anyhow::Result<Vec<u8>> {
        let signer = self.0.signer.as_ref().ok_or_else(|| {
            anyhow::anyhow!("this process holds no signing key and cannot emit events")
        })?;
        let data = &self.0.data;
        let cipher = data
            .active_cipher()
            .ok_or_else(|| anyhow::anyhow!("the active data key is missing"))?;
        let nonce: [u8; NONCE_LEN] = keys::random_bytes(&SystemRandom::new())?;
        let mut sealed = Sealed {
            sealed: wire::VERSION,
            event_id: envelope.event_id.to_string(),
            event_type: envelope.event_type.clone(),
            schema_version: envelope.schema_version,
            saga_id: envelope.saga_id,
            causation_id: envelope.causation_id.map(|id| id.to_string()),
            occurred_at: envelope
                .occurred_at
                .to_rfc3339_opts(SecondsFormat::AutoSi, true),
            traceparent: envelope.traceparent.clone(),
            producer: signer.service.clone(),
            signing_key: signer.id.clone(),
            data_key: data.active.clone(),
            nonce: wire::encode(&nonce),
            ciphertext: String::new(),
            signature: String::new(),
        };
        let plaintext = serde_json::to_vec(&envelope.payload)?;
        let aad = sealed.associated_data();
        let ciphertext = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| anyhow::anyhow!("encrypting the payload failed"))?;
        sealed.ciphertext = wire::encode(&ciphertext);
        sealed.signature = wire::encode(&signer.sign(&sealed.signed_bytes()));
        Ok(serde_json::to_vec(&sealed)?)
    }

    /// Verifies and decrypts `body`. The checks that need the delivery are [`Opened::admit`].
    pub fn open(&self, body: &[u8]) -> Result<Opened, Refusal> {
        let sealed = parse(body)?;
        let key = self.0.verifying.get(&sealed.signing_key).ok_or_else(|| {
            Refusal::unauthenticated(
                "unknown_key",
                format!("signed with unknown key {:.64}", sealed.signing_key),
            )
        })?;
        if key.service != sealed.producer {
            return Err(Refusal::unauthenticated(
                "wrong_producer",
                format!(
                    "claims producer {:.64} but key {} is {}'s",
                    sealed.producer, sealed.signing_key, key.service
                ),
            ));
        }
        let bad_signature = |detail: String| Refusal::unauthenticated("bad_signature", detail);
        let signature = sealed
            .decode_field("signature", &sealed.signature)
            .map_err(bad_signature)?;
        if !key.verifies(&sealed.signed_bytes(), &signature) {
            return Err(bad_signature(format!(
                "the signature does not verify under {}'s key {}",
                key.service, sealed.signing_key
            )));
        }
        let payload = self.decrypt(&sealed)?;
        Ok(Opened {
            envelope: envelope_of(&sealed, payload)?,
            producer: sealed.producer,
            signing_key: sealed.signing_key,
            data_key: sealed.data_key,
        })
    }

    fn decrypt(&self, sealed: &Sealed) -> Result<serde_json::Value, Refusal> {
        let undecryptable = |detail: String| Refusal::unauthenticated("undecryptable", detail);
        let cipher = self.0.data.get(&sealed.data_key).ok_or_else(|| {
            Refusal::unauthenticated(
                "unknown_key",
                format!("sealed under unknown data key {}", sealed.data_key),
            )
        })?;
        let nonce = sealed
            .decode_field("nonce", &sealed.nonce)
            .map_err(undecryptable)?;
        let ciphertext = sealed
            .decode_field("ciphertext", &sealed.ciphertext)
            .map_err(undecryptable)?;
        if nonce.len() != NONCE_LEN {
            return Err(undecryptable(format!("the nonce is {} bytes", nonce.len())));
        }
        let aad = sealed.associated_data();
        let plaintext = cipher
            .decrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| undecryptable(format!("data key {} does not open it", sealed.data_key)))?;
        serde_json::from_slice(&plaintext)
            .map_err(|err| Refusal::Malformed(format!("the decrypted payload is not JSON: {err}")))
    }
}

/// `body` as a sealed event, or why it is not one. Every delivery comes through here: a sealed
/// body is parsed once; only a body that is not one is looked at again, to say why.
fn parse(body: &[u8]) -> Result<Sealed, Refusal> {
    let sealed: Sealed = match serde_json::from_slice(body) {
        Ok(sealed) => sealed,
        Err(shape) => {
            let value: serde_json::Value = serde_json::from_slice(body)
                .map_err(|err| Refusal::Malformed(format!("body is not JSON: {err}")))?;
            let signed = value.as_object().is_some_and(|object| {
                object.contains_key("sealed") && object.contains_key("signature")
            });
            let detail = if signed {
                format!("not a sealed event: {shape}")
            } else {
                "not a sealed event: no signature".to_owned()
            };
            return Err(Refusal::unauthenticated("unsigned", detail));
        }
    };
    if sealed.sealed != wire::VERSION {
        return Err(Refusal::unauthenticated(
            "unsigned",
            format!("unknown seal version {}", sealed.sealed),
        ));
    }
    Ok(sealed)
}

fn envelope_of(sealed: &Sealed, payload: serde_json::Value) -> Result<Envelope, Refusal> {
    let malformed = |what: &str| Refusal::Malformed(format!("signed {what} does not parse"));
    let causation_id = match &sealed.causation_id {
        Some(id) => Some(id.parse().map_err(|_| malformed("causation id"))?),
        None => None,
    };
    Ok(Envelope {
        event_id: sealed.event_id.parse().map_err(|_| malformed("event id"))?,
        event_type: sealed.event_type.clone(),
        schema_version: sealed.schema_version,
        saga_id: sealed.saga_id,
        causation_id,
        occurred_at: DateTime::parse_from_rfc3339(&sealed.occurred_at)
            .map_err(|_| malformed("occurred_at"))?
            .with_timezone(&Utc),
        traceparent: sealed.traceparent.clone(),
        payload,
    })
}

#[cfg(test)]
mod tests;
