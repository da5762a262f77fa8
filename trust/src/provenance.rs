//! Batch provenance: who sent a batch, and that it was not altered since.
//!
//! The host signs the SHA-256 of the **exact body bytes** it sends (after
//! encoding, before any transport compression) with its own key, and puts
//! the result in the [`SIGNATURE_HEADER`] header:
//!
//! ```text
//! X-Halyard-Signature: ed25519 keyid=<16 hex digits> sig=<base64 signature>
//! ```
//!
//! The signed message is `halyard-batch-v1\n<sha256 hex of body>`
//! ([`DOMAIN`]). A receiver verifies against the hosts' public keys it knows;
//! the key id picks the key. Because the whole body is covered, any event,
//! attribute or metadata field changed after the host's sandboxed stages —
//! in transit, in a proxy, in a stored file — makes verification fail.
//!
//! Each event also names the plugins that processed it as [`ChainLink`]s
//! (`name@<first 12 hex of the component's sha256>`), so a receiver can tell
//! which exact build of a validator or privacy rule saw the data.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::keys::{KeyId, KeyPair, PublicKey};

/// The domain tag that starts every batch signature's message.
pub const DOMAIN: &str = "halyard-batch-v1";

/// The HTTP header (and stored-batch metadata key) carrying the signature.
pub const SIGNATURE_HEADER: &str = "X-Halyard-Signature";

/// Hex digits of a component's hash kept in a chain link: 48 bits, enough
/// to tell builds of one plugin apart, short enough for every event.
pub const HASH_PREFIX_LEN: usize = 12;

/// Longest header value parsed; a real one is about 120 bytes.
const MAX_HEADER_LEN: usize = 1024;

/// Why a batch's provenance was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProvenanceError {
    /// The batch carries no signature.
    #[error("unsigned batch: no {SIGNATURE_HEADER} header")]
    Unsigned,
    /// The header is not `ed25519 keyid=… sig=…`.
    #[error("malformed {SIGNATURE_HEADER} header: {0}")]
    Malformed(String),
    /// The signing host's key is not among the known keys.
    #[error("signed by unknown host key {0}")]
    UnknownKey(KeyId),
    /// The signature does not match the body: altered after signing, or
    /// a forged signature.
    #[error("tampered batch: signature by {0} does not match the body")]
    Tampered(KeyId),
}

/// The message a batch signature covers.
fn message(body: &[u8]) -> String {
    format!("{DOMAIN}\n{}", crate::sha256_hex(body))
}

/// Signs a batch body; returns the [`SIGNATURE_HEADER`] value.
pub fn sign_batch(body: &[u8], key: &KeyPair) -> String {
    let sig = key.sign(message(body).as_bytes());
    format!(
        "ed25519 keyid={} sig={}",
        key.key_id(),
        STANDARD.encode(sig)
    )
}

/// Parses a header value into the key id and the raw signature.
fn parse_header(header: &str) -> Result<(KeyId, Vec<u8>), ProvenanceError> {
    let malformed = |why: &str| ProvenanceError::Malformed(why.to_owned());
    if header.len() > MAX_HEADER_LEN {
        return Err(malformed("too long"));
    }
    let mut parts = header.split_whitespace();
    match parts.next() {
        Some("ed25519") => {}
        Some(other) if !other.contains('=') => {
            return Err(ProvenanceError::Malformed(format!(
                "unsupported algorithm {other:?}"
            )));
        }
        _ => return Err(malformed("expected `ed25519 keyid=… sig=…`")),
    }
    let (mut key_id, mut sig) = (None, None);
    for part in parts {
        let (slot, value) = match part.split_once('=') {
            Some(("keyid", value)) => (&mut key_id, value),
            Some(("sig", value)) => (&mut sig, value),
            _ => return Err(malformed("unexpected parameter")),
        };
        if slot.replace(value).is_some() {
            return Err(malformed("repeated parameter"));
        }
    }
    let key_id = key_id
        .ok_or_else(|| malformed("missing keyid"))?
        .parse::<KeyId>()
        .map_err(|_| malformed("keyid is not 16 hex digits"))?;
    let sig = STANDARD
        .decode(sig.ok_or_else(|| malformed("missing sig"))?)
        .map_err(|_| malformed("sig is not base64"))?;
    if sig.len() != 64 {
        return Err(malformed("sig is not 64 bytes"));
    }
    Ok((key_id, sig))
}

/// Verifies a batch body against its [`SIGNATURE_HEADER`] value (`None` or
/// empty if the batch had none) and the `known` host keys; returns the
/// signing host's key id.
pub fn verify_batch(
    body: &[u8],
    header: Option<&str>,
    known: &[PublicKey],
) -> Result<KeyId, ProvenanceError> {
    let header = header
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .ok_or(ProvenanceError::Unsigned)?;
    let (key_id, sig) = parse_header(header)?;
    let key = known
        .iter()
        .find(|k| k.key_id() == key_id)
        .ok_or(ProvenanceError::UnknownKey(key_id))?;
    if key.verifies(message(body).as_bytes(), &sig) {
        Ok(key_id)
    } else {
        Err(ProvenanceError::Tampered(key_id))
    }
}

/// One plugin in the chain that processed an event: `name@<hash prefix>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ChainLink {
    /// The plugin's name (from its config or component metadata).
    pub name: String,
    /// The first [`HASH_PREFIX_LEN`] hex digits of its component's SHA-256.
    pub hash_prefix: String,
}

impl ChainLink {
    /// A link from a plugin name and its component's full sha256 hex (as
    /// the plugin manager already keeps for its compile cache). A shorter
    /// hash is kept whole.
    pub fn new(name: impl Into<String>, sha256_hex: &str) -> Self {
        let hash_prefix = sha256_hex
            .get(..HASH_PREFIX_LEN)
            .unwrap_or(sha256_hex)
            .to_ascii_lowercase();
        Self {
            name: name.into(),
            hash_prefix,
        }
    }

    /// A link from a plugin name and its component's bytes.
    pub fn of_component(name: impl Into<String>, component: &[u8]) -> Self {
        Self::new(name, &crate::sha256_hex(component))
    }
}

impl fmt::Display for ChainLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.hash_prefix)
    }
}

impl FromStr for ChainLink {
    type Err = ProvenanceError;

    /// Parses `name@hexprefix` (the name may itself contain `@`; the last
    /// one separates).
    fn from_str(text: &str) -> Result<Self, ProvenanceError> {
        match text.rsplit_once('@') {
            Some((name, prefix))
                if !name.is_empty()
                    && prefix.len() == HASH_PREFIX_LEN
                    && prefix.bytes().all(|b| b.is_ascii_hexdigit()) =>
            {
                Ok(Self::new(name, prefix))
            }
            _ => Err(ProvenanceError::Malformed(format!(
                "chain link {text:?} is not name@<{HASH_PREFIX_LEN} hex digits>"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"batch_id":"3-17","events":[{"id":"a","value":21.5}]}"#;

    #[test]
    fn signed_batch_verifies_and_names_its_host() {
        let host = KeyPair::generate().unwrap();
        let other = KeyPair::generate().unwrap().public_key();
        let header = sign_batch(BODY, &host);
        assert!(header.starts_with(&format!("ed25519 keyid={} sig=", host.key_id())));
        assert_eq!(
            verify_batch(BODY, Some(&header), &[other, host.public_key()]),
            Ok(host.key_id())
        );
    }

    #[test]
    fn any_changed_byte_is_tampering() {
        let host = KeyPair::generate().unwrap();
        let header = sign_batch(BODY, &host);
        let mut altered = BODY.to_vec();
        let pos = altered.iter().position(|&b| b == b'5').unwrap();
        altered[pos] = b'9';
        assert_eq!(
            verify_batch(&altered, Some(&header), &[host.public_key()]),
            Err(ProvenanceError::Tampered(host.key_id()))
        );
        // Even trailing whitespace counts: the exact bytes are signed.
        let mut padded = BODY.to_vec();
        padded.push(b'\n');
        assert!(verify_batch(&padded, Some(&header), &[host.public_key()]).is_err());
    }

    #[test]
    fn unsigned_unknown_and_relabelled() {
        let host = KeyPair::generate().unwrap();
        let known = [host.public_key()];
        assert_eq!(
            verify_batch(BODY, None, &known),
            Err(ProvenanceError::Unsigned)
        );
        assert_eq!(
            verify_batch(BODY, Some("  "), &known),
            Err(ProvenanceError::Unsigned)
        );
        let stranger = KeyPair::generate().unwrap();
        let header = sign_batch(BODY, &stranger);
        assert_eq!(
            verify_batch(BODY, Some(&header), &known),
            Err(ProvenanceError::UnknownKey(stranger.key_id()))
        );
        // A stranger's signature relabelled with the known host's id.
        let forged = header.replace(&stranger.key_id().to_string(), &host.key_id().to_string());
        assert_eq!(
            verify_batch(BODY, Some(&forged), &known),
            Err(ProvenanceError::Tampered(host.key_id()))
        );
    }

    #[test]
    fn signatures_are_domain_separated() {
        // A plugin signature over the same bytes is not a batch signature.
        let key = KeyPair::generate().unwrap();
        let subject = crate::plugin_sig::Subject {
            name: "p".to_owned(),
            kind: "validator".to_owned(),
            version: "1".to_owned(),
            fleet: None,
        };
        let plugin = crate::plugin_sig::sign(BODY, &subject, &key).unwrap();
        let header = format!("ed25519 keyid={} sig={}", plugin.key_id, plugin.signature);
        assert_eq!(
            verify_batch(BODY, Some(&header), &[key.public_key()]),
            Err(ProvenanceError::Tampered(key.key_id()))
        );
    }

    #[test]
    fn malformed_headers() {
        let key = KeyPair::generate().unwrap();
        let good = sign_batch(BODY, &key);
        let sig = good.split("sig=").nth(1).unwrap();
        let id = key.key_id();
        for bad in [
            "rsa keyid=00 sig=00".to_owned(),
            "keyid=00".to_owned(),
            "ed25519".to_owned(),
            format!("ed25519 keyid={id}"),
            format!("ed25519 sig={sig}"),
            format!("ed25519 keyid=xyz sig={sig}"),
            format!("ed25519 keyid={id} sig=!!!"),
            format!("ed25519 keyid={id} sig=AAAA"),
            format!("ed25519 keyid={id} keyid={id} sig={sig}"),
            format!("ed25519 keyid={id} sig={sig} extra"),
            format!("ed25519 keyid={id}{} sig={sig}", " ".repeat(MAX_HEADER_LEN)),
        ] {
            let err = verify_batch(BODY, Some(&bad), &[key.public_key()]).unwrap_err();
            assert!(matches!(err, ProvenanceError::Malformed(_)), "{bad}: {err}");
        }
        // Parameter order does not matter.
        let swapped = format!("ed25519 sig={sig} keyid={id}");
        assert_eq!(
            verify_batch(BODY, Some(&swapped), &[key.public_key()]),
            Ok(id)
        );
    }

    #[test]
    fn chain_links() {
        let link = ChainLink::of_component("range-validator", b"component bytes");
        let full = crate::sha256_hex(b"component bytes");
        assert_eq!(link.to_string(), format!("range-validator@{}", &full[..12]));
        assert_eq!(link.to_string().parse::<ChainLink>(), Ok(link.clone()));
        assert_eq!(ChainLink::new("x", "ABC").to_string(), "x@abc");
        assert_eq!(
            "team@corp@0123456789ab".parse::<ChainLink>().unwrap().name,
            "team@corp"
        );
        for bad in ["", "x", "@0123456789ab", "x@0123", "x@0123456789zz"] {
            assert!(bad.parse::<ChainLink>().is_err(), "{bad}");
        }
    }
}
