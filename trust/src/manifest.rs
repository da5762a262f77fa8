//! Signed rollout manifests: what a host may install, from whom, and how
//! recent the instruction must be.
//!
//! A manifest travels as an envelope whose payload is the manifest JSON
//! exactly as the signer wrote it (base64, so no canonical-JSON rules are
//! needed to reproduce the signed bytes):
//!
//! ```json
//! {"alg": "ed25519", "key_id": "1f2e3d4c5b6a7988",
//!  "payload": "<base64 of the manifest JSON>", "signature": "<base64>"}
//! ```
//!
//! The signature covers `halyard-manifest-v1\n` followed by the payload
//! bytes ([`DOMAIN`]). The payload carries, besides the host's own fields
//! (the plugin list), a [`Header`]: a `serial` that only grows and an
//! `expires_at` (Unix seconds). A host remembers the highest serial it
//! accepted with the payload's SHA-256 ([`Seen`]) and refuses, with
//! [`check_fresh`]:
//!
//! - an expired manifest (a stale instruction replayed after its time);
//! - a lower serial (a rollback attack: an older, validly signed manifest
//!   that names an older or looser component);
//! - the same serial with a different payload (a signer's mistake, or a
//!   forked history), so one serial always means one manifest.
//!
//! Like everything in this crate, time is passed in.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::keys::{KeyId, KeyPair, PublicKey};

/// The domain tag that starts every manifest signature's message.
pub const DOMAIN: &str = "halyard-manifest-v1";

/// The only algorithm written and accepted.
pub const ALG: &str = "ed25519";

/// Why a manifest was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// A plain manifest (no envelope): every manifest must be signed.
    #[error(
        "unsigned manifest: sign it with `halyard plugin sign-manifest` (a host installs only signed manifests)"
    )]
    Unsigned,
    /// Not an envelope, or its payload is not a manifest with a header.
    #[error("garbled manifest: {0}")]
    Malformed(String),
    /// An algorithm this host does not accept.
    #[error("unsupported manifest signature algorithm {0:?} (expected ed25519)")]
    UnsupportedAlgorithm(String),
    /// The signing key is not among the trusted keys.
    #[error("manifest signed by unknown key {0} (not in the trusted keys)")]
    UnknownKey(KeyId),
    /// The signature does not verify with the trusted key it names.
    #[error("bad manifest signature: does not verify with trusted key {0}")]
    BadSignature(KeyId),
    /// Past its `expires_at`.
    #[error("manifest serial {serial} expired at {expires_at} (now {now})")]
    Expired {
        /// Its serial.
        serial: u64,
        /// When it expired (Unix seconds).
        expires_at: u64,
        /// The host's clock (Unix seconds).
        now: u64,
    },
    /// Older than one this host already accepted: a replay.
    #[error(
        "manifest serial {serial} is older than serial {highest} already accepted (replay refused)"
    )]
    Replayed {
        /// Its serial.
        serial: u64,
        /// The highest serial accepted so far.
        highest: u64,
    },
    /// The serial this host accepted, with other contents.
    #[error(
        "manifest serial {serial} was already accepted with different contents (a new manifest needs a higher serial)"
    )]
    SerialReused {
        /// The serial.
        serial: u64,
    },
}

/// The signed envelope, as it is served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// Always [`ALG`].
    pub alg: String,
    /// The signer's key id.
    pub key_id: KeyId,
    /// Standard base64 of the manifest JSON.
    pub payload: String,
    /// Standard base64 of the Ed25519 signature.
    pub signature: String,
}

impl Envelope {
    /// The envelope's JSON text, with a trailing newline.
    pub fn to_json(&self) -> String {
        let mut out = serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".to_owned());
        out.push('\n');
        out
    }
}

/// The fields of a manifest payload that make it fresh. Other fields (the
/// plugin list) are the host's to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Grows with every new manifest.
    pub serial: u64,
    /// After this (Unix seconds) the manifest is refused.
    pub expires_at: u64,
}

/// The highest serial a host accepted, with its payload's SHA-256.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    /// The serial.
    pub serial: u64,
    /// Lowercase hex SHA-256 of its payload.
    pub sha256: String,
}

/// A manifest whose signature verified: its payload bytes, header and
/// signer. Not yet checked for freshness ([`check_fresh`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The manifest JSON, exactly as signed.
    pub payload: Vec<u8>,
    /// Its serial and expiry.
    pub header: Header,
    /// Who signed it.
    pub key_id: KeyId,
}

impl Opened {
    /// What to remember once this manifest is accepted.
    pub fn seen(&self) -> Seen {
        Seen {
            serial: self.header.serial,
            sha256: crate::sha256_hex(&self.payload),
        }
    }
}

fn message(payload: &[u8]) -> Vec<u8> {
    let mut out = format!("{DOMAIN}\n").into_bytes();
    out.extend_from_slice(payload);
    out
}

/// Signs manifest JSON `payload` with `key`. The payload must hold a
/// [`Header`] (`serial`, `expires_at`), so a host can judge its freshness.
pub fn seal(payload: &[u8], key: &KeyPair) -> Result<Envelope, ManifestError> {
    header(payload)?;
    Ok(Envelope {
        alg: ALG.to_owned(),
        key_id: key.key_id(),
        payload: STANDARD.encode(payload),
        signature: STANDARD.encode(key.sign(&message(payload))),
    })
}

fn header(payload: &[u8]) -> Result<Header, ManifestError> {
    serde_json::from_slice(payload)
        .map_err(|e| ManifestError::Malformed(format!("payload needs serial and expires_at: {e}")))
}

/// Parses an envelope and verifies it against the `trusted` keys.
pub fn open(envelope: &[u8], trusted: &[PublicKey]) -> Result<Opened, ManifestError> {
    let value: serde_json::Value =
        serde_json::from_slice(envelope).map_err(|e| ManifestError::Malformed(e.to_string()))?;
    if value.get("plugins").is_some() && value.get("payload").is_none() {
        return Err(ManifestError::Unsigned);
    }
    let envelope: Envelope =
        serde_json::from_value(value).map_err(|e| ManifestError::Malformed(e.to_string()))?;
    if envelope.alg != ALG {
        return Err(ManifestError::UnsupportedAlgorithm(envelope.alg));
    }
    let decode = |what: &str, text: &str| {
        STANDARD
            .decode(text)
            .map_err(|_| ManifestError::Malformed(format!("{what} is not valid base64")))
    };
    let payload = decode("payload", &envelope.payload)?;
    let raw = decode("signature", &envelope.signature)?;
    let key = trusted
        .iter()
        .find(|k| k.key_id() == envelope.key_id)
        .ok_or(ManifestError::UnknownKey(envelope.key_id))?;
    if raw.len() != 64 || !key.verifies(&message(&payload), &raw) {
        return Err(ManifestError::BadSignature(envelope.key_id));
    }
    let header = header(&payload)?;
    Ok(Opened {
        payload,
        header,
        key_id: envelope.key_id,
    })
}

/// Whether `opened` may be acted on at `now` (Unix seconds), given the
/// highest manifest accepted so far (`last`). The same manifest again is
/// fresh (a host re-polls it; installing is idempotent).
pub fn check_fresh(opened: &Opened, last: Option<&Seen>, now: u64) -> Result<(), ManifestError> {
    let Header { serial, expires_at } = opened.header;
    if now > expires_at {
        return Err(ManifestError::Expired {
            serial,
            expires_at,
            now,
        });
    }
    match last {
        Some(last) if serial < last.serial => Err(ManifestError::Replayed {
            serial,
            highest: last.serial,
        }),
        Some(last) if serial == last.serial && opened.seen().sha256 != last.sha256 => {
            Err(ManifestError::SerialReused { serial })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(serial: u64, expires_at: u64, extra: &str) -> Vec<u8> {
        format!(r#"{{"serial":{serial},"expires_at":{expires_at},"plugins":[{extra}]}}"#)
            .into_bytes()
    }

    #[test]
    fn a_sealed_manifest_opens_with_its_key_only() {
        let key = KeyPair::generate().unwrap();
        let other = KeyPair::generate().unwrap();
        let body = payload(7, 2_000, "");
        let sealed = seal(&body, &key).unwrap().to_json();
        let opened = open(sealed.as_bytes(), &[other.public_key(), key.public_key()]).unwrap();
        assert_eq!(opened.payload, body);
        assert_eq!(
            opened.header,
            Header {
                serial: 7,
                expires_at: 2_000
            }
        );
        assert_eq!(opened.key_id, key.key_id());
        assert_eq!(
            open(sealed.as_bytes(), &[other.public_key()]),
            Err(ManifestError::UnknownKey(key.key_id()))
        );
        // A payload swapped under the signature.
        let mut env: Envelope = serde_json::from_str(&sealed).unwrap();
        env.payload = STANDARD.encode(payload(8, 2_000, ""));
        assert_eq!(
            open(env.to_json().as_bytes(), &[key.public_key()]),
            Err(ManifestError::BadSignature(key.key_id()))
        );
        // A plugin signature's message is not a manifest's.
        assert_eq!(
            open(&payload(1, 1, ""), &[key.public_key()]),
            Err(ManifestError::Unsigned)
        );
        assert!(matches!(
            seal(b"{\"plugins\":[]}", &key),
            Err(ManifestError::Malformed(_))
        ));
    }

    #[test]
    fn freshness_refuses_expired_older_and_reused_serials() {
        let key = KeyPair::generate().unwrap();
        let at = |serial, extra| {
            let sealed = seal(&payload(serial, 1_000, extra), &key)
                .unwrap()
                .to_json();
            open(sealed.as_bytes(), &[key.public_key()]).unwrap()
        };
        let v5 = at(5, "");
        assert_eq!(check_fresh(&v5, None, 1_000), Ok(()));
        assert_eq!(
            check_fresh(&v5, None, 1_001),
            Err(ManifestError::Expired {
                serial: 5,
                expires_at: 1_000,
                now: 1_001
            })
        );
        let seen = v5.seen();
        assert_eq!(
            check_fresh(&v5, Some(&seen), 10),
            Ok(()),
            "the same one again"
        );
        assert_eq!(check_fresh(&at(6, ""), Some(&seen), 10), Ok(()));
        assert_eq!(
            check_fresh(&at(4, ""), Some(&seen), 10),
            Err(ManifestError::Replayed {
                serial: 4,
                highest: 5
            })
        );
        assert_eq!(
            check_fresh(&at(5, "1"), Some(&seen), 10),
            Err(ManifestError::SerialReused { serial: 5 })
        );
    }
}
