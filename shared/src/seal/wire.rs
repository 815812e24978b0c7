//! The sealed envelope as it travels: the envelope's ids in the clear (tools route and filter
//! on them), the payload encrypted, and a signature over all of it.
//!
//! What is signed and what the cipher authenticates as associated data is a pre-authentication
//! encoding (PASETO's PAE: the count of pieces, then each piece with its length, all as 64-bit
//! little-endian), so no two different headers encode alike. Optional fields are two pieces, a
//! presence flag and the value.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

/// Names this format in what is signed, so a signature cannot be reused for another format.
const DOMAIN: &str = "saga-event/1";

/// The wire version in the `sealed` field.
pub const VERSION: u32 = 1;

/// A sealed event. Field for field the envelope, except `payload`, which is `ciphertext`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sealed {
    pub sealed: u32,
    pub event_id: String,
    pub event_type: String,
    pub schema_version: u32,
    pub saga_id: Option<i64>,
    pub causation_id: Option<String>,
    /// RFC 3339, exactly as signed.
    pub occurred_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// The service that sealed it.
    pub producer: String,
    /// The id of the verification key that checks `signature`.
    pub signing_key: String,
    /// The id of the data key `ciphertext` is encrypted under.
    pub data_key: String,
    pub nonce: String,
    pub ciphertext: String,
    pub signature: String,
}

impl Sealed {
    /// What the cipher authenticates besides the payload: every header field.
    pub fn associated_data(&self) -> Vec<u8> {
        pae(&self.header_pieces())
    }

    /// What the producer signs: the header, the nonce and the ciphertext.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut pieces = self.header_pieces();
        pieces.push(self.nonce.as_bytes().to_vec());
        pieces.push(self.ciphertext.as_bytes().to_vec());
        pae(&pieces)
    }

    fn header_pieces(&self) -> Vec<Vec<u8>> {
        let mut pieces: Vec<Vec<u8>> = vec![
            DOMAIN.into(),
            self.sealed.to_string().into(),
            self.producer.as_bytes().into(),
            self.signing_key.as_bytes().into(),
            self.data_key.as_bytes().into(),
            self.event_id.as_bytes().into(),
            self.event_type.as_bytes().into(),
            self.schema_version.to_string().into(),
        ];
        optional(
            &mut pieces,
            self.saga_id.map(|id| id.to_string()).as_deref(),
        );
        optional(&mut pieces, self.causation_id.as_deref());
        pieces.push(self.occurred_at.as_bytes().into());
        optional(&mut pieces, self.traceparent.as_deref());
        pieces
    }

    pub fn decode_field(&self, name: &str, text: &str) -> Result<Vec<u8>, String> {
        BASE64
            .decode(text)
            .map_err(|_| format!("{name} is not base64"))
    }
}

pub fn encode(bytes: &[u8]) -> String {
    BASE64.encode(bytes)
}

fn optional(pieces: &mut Vec<Vec<u8>>, value: Option<&str>) {
    match value {
        Some(value) => {
            pieces.push(b"1".to_vec());
            pieces.push(value.as_bytes().to_vec());
        }
        None => {
            pieces.push(b"0".to_vec());
            pieces.push(Vec::new());
        }
    }
}

/// Pre-authentication encoding: `LE64(count) || (LE64(len) || piece)*`.
fn pae(pieces: &[Vec<u8>]) -> Vec<u8> {
    let total: usize = pieces.iter().map(|piece| 8 + piece.len()).sum();
    let mut out = Vec::with_capacity(8 + total);
    out.extend_from_slice(&(pieces.len() as u64).to_le_bytes());
    for piece in pieces {
        out.extend_from_slice(&(piece.len() as u64).to_le_bytes());
        out.extend_from_slice(piece);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    type Change = Box<dyn Fn(&mut Sealed)>;

    fn sample() -> Sealed {
        Sealed {
            sealed: VERSION,
            event_id: "e".into(),
            event_type: "T".into(),
            schema_version: 1,
            saga_id: Some(7),
            causation_id: None,
            occurred_at: "2026-12-05T00:00:00Z".into(),
            traceparent: None,
            producer: "order".into(),
            signing_key: "k".into(),
            data_key: "d".into(),
            nonce: "n".into(),
            ciphertext: "c".into(),
            signature: "s".into(),
        }
    }

    #[test]
    fn every_header_field_changes_what_is_signed() {
        let base = sample();
        let variants: Vec<Change> = vec![
            Box::new(|s| s.event_id = "f".into()),
            Box::new(|s| s.event_type = "U".into()),
            Box::new(|s| s.schema_version = 2),
            Box::new(|s| s.saga_id = Some(8)),
            Box::new(|s| s.saga_id = None),
            Box::new(|s| s.causation_id = Some(String::new())),
            Box::new(|s| s.occurred_at.push('x')),
            Box::new(|s| s.traceparent = Some("t".into())),
            Box::new(|s| s.producer = "coupon".into()),
            Box::new(|s| s.signing_key = "k2".into()),
            Box::new(|s| s.data_key = "d2".into()),
            Box::new(|s| s.nonce = "m".into()),
            Box::new(|s| s.ciphertext = "b".into()),
        ];
        for change in variants {
            let mut other = base.clone();
            change(&mut other);
            assert_ne!(other.signed_bytes(), base.signed_bytes(), "{other:?}");
        }
        // Moving bytes between adjacent fields must not give the same encoding.
        let mut shifted = base.clone();
        shifted.producer = "orderk".into();
        shifted.signing_key = String::new();
        assert_ne!(shifted.signed_bytes(), base.signed_bytes());
    }
}
