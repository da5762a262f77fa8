//! The licence history a host keeps between runs, sealed with its host key.
//!
//! A restart must not reset the licence: a host that was in grace keeps
//! its deadline, an expired one stays expired. So the host persists what
//! the state machine is computed from (the last successful heartbeat, the
//! first failure since, the token in force) and restores it at start.
//!
//! The file is `hls1.<base64url(JSON)>.<base64url(Ed25519 signature)>`;
//! the signature, by the host's own key, covers `halyard-licence-state-v1\n`
//! ([`STATE_DOMAIN`]) followed by the encoded JSON segment exactly as
//! stored. An edited file no longer verifies and a file copied from
//! another host names another key, so the host treats either like a
//! missing file: as the worst case its other records allow (see the
//! host's `licence::persist`), never as "valid".
//!
//! What this does *not* stop: whoever can read the host key (root, the
//! host's own user) can sign any history. The token's own `expires_at` is
//! signed by the vendor and cannot be extended that way.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::keys::{KeyPair, PublicKey};

/// The domain tag that starts every state signature's message.
pub const STATE_DOMAIN: &str = "halyard-licence-state-v1";

/// The file's format prefix.
pub const STATE_PREFIX: &str = "hls1";

/// Longest state file accepted; real ones are a few hundred bytes.
const MAX_STATE_LEN: usize = 16 * 1024;

/// The persisted licence history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistedLicence {
    /// The host this history belongs to.
    pub host_id: String,
    /// Last successful heartbeat (or the start of the first run), Unix
    /// seconds.
    pub last_success: u64,
    /// First failed heartbeat since `last_success`, if any.
    pub failing_since: Option<u64>,
    /// SHA-256 (hex) of the token in force when saved.
    pub token_sha256: String,
    /// That token's `expires_at`.
    pub token_expires_at: u64,
    /// When this was written (Unix seconds); a clock found earlier than
    /// this at start has been set back.
    pub saved_at: u64,
}

/// Why a state file was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StateFileError {
    /// Not `hls1.<payload>.<signature>`, or its JSON does not parse.
    #[error("licence state file is malformed: {0}")]
    Malformed(&'static str),
    /// The signature does not match this host's key: edited, or from
    /// another host.
    #[error("licence state file was changed or belongs to another host key")]
    BadSignature,
}

fn message(segment: &str) -> String {
    format!("{STATE_DOMAIN}\n{segment}")
}

/// Seals `state` with the host key: the file's whole text.
pub fn seal(state: &PersistedLicence, key: &KeyPair) -> String {
    // Serialising a struct of strings and integers cannot fail.
    let json = serde_json::to_vec(state).unwrap_or_default();
    let segment = URL_SAFE_NO_PAD.encode(json);
    let sig = key.sign(message(&segment).as_bytes());
    format!("{STATE_PREFIX}.{segment}.{}", URL_SAFE_NO_PAD.encode(sig))
}

/// Opens a sealed state, checking it was signed by `key`.
pub fn open(text: &str, key: &PublicKey) -> Result<PersistedLicence, StateFileError> {
    let text = text.trim();
    if text.len() > MAX_STATE_LEN {
        return Err(StateFileError::Malformed("too long"));
    }
    let mut parts = text.split('.');
    let (Some(STATE_PREFIX), Some(segment), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(StateFileError::Malformed(
            "expected hls1.<state>.<signature>",
        ));
    };
    let sig = URL_SAFE_NO_PAD
        .decode(sig)
        .map_err(|_| StateFileError::Malformed("signature is not base64url"))?;
    if !key.verifies(message(segment).as_bytes(), &sig) {
        return Err(StateFileError::BadSignature);
    }
    let json = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| StateFileError::Malformed("state is not base64url"))?;
    serde_json::from_slice(&json).map_err(|_| StateFileError::Malformed("state is not JSON"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> PersistedLicence {
        PersistedLicence {
            host_id: "edge-7".into(),
            last_success: 1_795_000_000,
            failing_since: Some(1_795_000_100),
            token_sha256: "ab".repeat(32),
            token_expires_at: 1_796_000_000,
            saved_at: 1_795_000_200,
        }
    }

    #[test]
    fn a_sealed_state_opens_with_its_key_only() {
        let key = KeyPair::generate().unwrap();
        let other = KeyPair::generate().unwrap();
        let text = seal(&state(), &key);
        assert_eq!(open(&text, &key.public_key()), Ok(state()));
        assert_eq!(
            open(&text, &other.public_key()),
            Err(StateFileError::BadSignature)
        );
    }

    #[test]
    fn an_edited_state_is_refused() {
        let key = KeyPair::generate().unwrap();
        let text = seal(&state(), &key);
        let (head, sig) = text.rsplit_once('.').unwrap();
        let (_, segment) = head.split_once('.').unwrap();
        let mut json: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).unwrap()).unwrap();
        json["failing_since"] = serde_json::Value::Null;
        let forged = format!(
            "{STATE_PREFIX}.{}.{sig}",
            URL_SAFE_NO_PAD.encode(json.to_string())
        );
        assert_eq!(
            open(&forged, &key.public_key()),
            Err(StateFileError::BadSignature)
        );
        for garbage in ["", "hls1", "hls1.a.b.c", "x.y.z", "hls1.!!.??"] {
            assert!(open(garbage, &key.public_key()).is_err(), "{garbage}");
        }
    }
}
