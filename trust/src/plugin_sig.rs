//! Detached plugin signatures: `FILE.sig` beside a component `FILE`.
//!
//! A signature covers the component's SHA-256, not its path or name, so a
//! renamed file still verifies and a changed byte never does. The signed
//! message is `halyard-plugin-v1\n<sha256 hex>` ([`DOMAIN`]), so no other
//! Halyard signature (a licence, a batch) can pass for a plugin signature.
//!
//! The `.sig` file is a small JSON object:
//!
//! ```json
//! {
//!   "alg": "ed25519",
//!   "key_id": "1f2e3d4c5b6a7988",
//!   "sha256": "<64 hex digits of the component's content hash>",
//!   "signature": "<standard base64 of the 64-byte Ed25519 signature>"
//! }
//! ```
//!
//! Verification checks, in order: the file parses; the algorithm is
//! Ed25519; the recorded hash equals the component's actual hash (so a file
//! changed after signing is reported as *changed*, not as a forgery); the
//! key id names a trusted key; the signature verifies with that key. Each
//! failure is its own [`SignatureError`] variant, so an operator is told
//! which of these happened.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::keys::{KeyId, KeyPair, PublicKey};

/// The domain tag that starts every plugin signature's message.
pub const DOMAIN: &str = "halyard-plugin-v1";

/// The only algorithm written and accepted.
pub const ALG: &str = "ed25519";

/// Largest `.sig` file read or parsed; a real one is about 200 bytes, so
/// anything far bigger is garbage and is not worth reading into memory or a
/// JSON parser.
pub const MAX_SIG_FILE: usize = 16 * 1024;

/// Why a component's signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// There is no `FILE.sig` beside the component.
    #[error("unsigned: no signature file {0}")]
    Missing(PathBuf),
    /// The signature file exists but is not a valid signature document.
    #[error("garbled signature file: {0}")]
    Malformed(String),
    /// The signature uses an algorithm this host does not accept.
    #[error("unsupported signature algorithm {0:?} (expected ed25519)")]
    UnsupportedAlgorithm(String),
    /// The component's bytes are not the ones that were signed.
    #[error("content changed after signing: signed sha256 {signed}, file has {actual}")]
    ContentMismatch {
        /// The hash recorded in the signature file.
        signed: String,
        /// The hash of the component as it is now.
        actual: String,
    },
    /// The signing key is not among the trusted keys.
    #[error("signed by unknown key {0} (not in the trusted keys)")]
    UnknownKey(KeyId),
    /// The signature does not verify with the trusted key it names.
    #[error("bad signature: does not verify with trusted key {0}")]
    BadSignature(KeyId),
    /// The component or its signature file could not be read.
    #[error("{path}: {reason}")]
    Io {
        /// The file that could not be read.
        path: PathBuf,
        /// The operating system's error, as text (keeps this enum `Clone`).
        reason: String,
    },
}

/// A detached signature over a component's content hash: the contents of a
/// `.sig` file. Also the shape a remote rollout manifest can embed per plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    /// The algorithm: always [`ALG`]. Recorded so a future algorithm is
    /// refused by name rather than misread.
    pub alg: String,
    /// Which key signed, so the verifier picks it without trying them all
    /// and can name an untrusted signer.
    pub key_id: KeyId,
    /// Lowercase hex SHA-256 of the component that was signed.
    pub sha256: String,
    /// Standard base64 of the 64-byte Ed25519 signature of
    /// `halyard-plugin-v1\n<sha256>`.
    pub signature: String,
}

impl Signature {
    /// The `.sig` file's bytes: pretty JSON and a trailing newline.
    pub fn to_json(&self) -> String {
        // Serialising four plain fields cannot fail; fall back to an empty
        // object rather than unwrap, so a surprise is refused at verify time.
        let mut out = serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".to_owned());
        out.push('\n');
        out
    }

    /// Parses a `.sig` file's bytes.
    pub fn from_json(bytes: &[u8]) -> Result<Self, SignatureError> {
        if bytes.len() > MAX_SIG_FILE {
            return Err(SignatureError::Malformed(format!(
                "{} bytes is too large for a signature file",
                bytes.len()
            )));
        }
        serde_json::from_slice(bytes).map_err(|e| SignatureError::Malformed(e.to_string()))
    }

    /// Checks this signature against `component` and the `trusted` keys;
    /// returns the id of the key that signed it. See the module docs for the
    /// order of checks.
    pub fn verify(&self, component: &[u8], trusted: &[PublicKey]) -> Result<KeyId, SignatureError> {
        if self.alg != ALG {
            return Err(SignatureError::UnsupportedAlgorithm(self.alg.clone()));
        }
        if !crate::is_sha256_hex(&self.sha256) {
            return Err(SignatureError::Malformed(
                "sha256 is not 64 lowercase hex digits".to_owned(),
            ));
        }
        let raw = STANDARD
            .decode(&self.signature)
            .map_err(|_| SignatureError::Malformed("signature is not valid base64".to_owned()))?;
        if raw.len() != 64 {
            return Err(SignatureError::Malformed(format!(
                "signature is {} bytes, expected 64",
                raw.len()
            )));
        }
        let actual = crate::sha256_hex(component);
        if actual != self.sha256 {
            return Err(SignatureError::ContentMismatch {
                signed: self.sha256.clone(),
                actual,
            });
        }
        let key = trusted
            .iter()
            .find(|k| k.key_id() == self.key_id)
            .ok_or(SignatureError::UnknownKey(self.key_id))?;
        if key.verifies(message(&actual).as_bytes(), &raw) {
            Ok(self.key_id)
        } else {
            Err(SignatureError::BadSignature(self.key_id))
        }
    }
}

/// The message a plugin signature covers.
fn message(sha256_hex: &str) -> String {
    format!("{DOMAIN}\n{sha256_hex}")
}

/// Signs a component's bytes with `key`.
pub fn sign(component: &[u8], key: &KeyPair) -> Signature {
    let sha256 = crate::sha256_hex(component);
    let raw = key.sign(message(&sha256).as_bytes());
    Signature {
        alg: ALG.to_owned(),
        key_id: key.key_id(),
        sha256,
        signature: STANDARD.encode(raw),
    }
}

/// Verifies a component against the bytes of its `.sig` file and the
/// `trusted` keys; returns the signer's key id.
pub fn verify(
    component: &[u8],
    sig_file: &[u8],
    trusted: &[PublicKey],
) -> Result<KeyId, SignatureError> {
    Signature::from_json(sig_file)?.verify(component, trusted)
}

/// Where the signature of `component` lives: the same path with `.sig`
/// appended (`range.wasm` → `range.wasm.sig`).
pub fn sig_path(component: &Path) -> PathBuf {
    let mut name = component.as_os_str().to_owned();
    name.push(".sig");
    PathBuf::from(name)
}

/// Reads `component` (at most `max_component` bytes) and its `.sig` file
/// (at most [`MAX_SIG_FILE`] bytes) with `read`, and verifies them: what
/// `halyard plugin verify` calls. A missing `.sig` is
/// [`SignatureError::Missing`] ("unsigned").
///
/// `read(path, max)` must refuse anything but a regular file of at most
/// `max` bytes without blocking, and keep `NotFound` for a missing file:
/// this crate does no file-system policy of its own, so the host's safe
/// reader is used for every plugin file.
///
/// Returns the component's bytes with the signer, so the caller compiles
/// exactly the bytes that were verified (reading the file again would let
/// a swap in between slip through).
pub fn verify_file(
    component: &Path,
    trusted: &[PublicKey],
    max_component: u64,
    read: impl Fn(&Path, u64) -> std::io::Result<Vec<u8>>,
) -> Result<(Vec<u8>, KeyId), SignatureError> {
    let bytes = read(component, max_component).map_err(|e| io_error(component, e))?;
    let sig = read_sig_file(component, read)?;
    let signer = verify(&bytes, &sig, trusted)?;
    Ok((bytes, signer))
}

/// Reads the `.sig` beside `component` with `read` (see [`verify_file`]),
/// capped at [`MAX_SIG_FILE`] bytes; a missing one is
/// [`SignatureError::Missing`].
pub fn read_sig_file(
    component: &Path,
    read: impl Fn(&Path, u64) -> std::io::Result<Vec<u8>>,
) -> Result<Vec<u8>, SignatureError> {
    let sig_path = sig_path(component);
    match read(&sig_path, MAX_SIG_FILE as u64) {
        Ok(sig) => Ok(sig),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(SignatureError::Missing(sig_path))
        }
        Err(e) => Err(io_error(&sig_path, e)),
    }
}

fn io_error(path: &Path, e: std::io::Error) -> SignatureError {
    SignatureError::Io {
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMPONENT: &[u8] = b"\0asm pretend component bytes";

    fn setup() -> (KeyPair, Vec<u8>) {
        let key = KeyPair::generate().unwrap();
        let sig = sign(COMPONENT, &key).to_json().into_bytes();
        (key, sig)
    }

    #[test]
    fn signed_component_verifies_with_its_key() {
        let (key, sig) = setup();
        let other = KeyPair::generate().unwrap().public_key();
        let signer = verify(COMPONENT, &sig, &[other, key.public_key()]).unwrap();
        assert_eq!(signer, key.key_id());
        let doc: serde_json::Value = serde_json::from_slice(&sig).unwrap();
        assert_eq!(doc["alg"], "ed25519");
        assert_eq!(doc["sha256"], crate::sha256_hex(COMPONENT));
        assert_eq!(doc["key_id"], key.key_id().to_string());
    }

    #[test]
    fn one_changed_byte_is_a_content_mismatch() {
        let (key, sig) = setup();
        let mut tampered = COMPONENT.to_vec();
        tampered[5] ^= 1;
        let err = verify(&tampered, &sig, &[key.public_key()]).unwrap_err();
        assert!(
            matches!(err, SignatureError::ContentMismatch { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("changed after signing"), "{err}");
    }

    #[test]
    fn untrusted_signer_is_an_unknown_key() {
        let (key, sig) = setup();
        let other = KeyPair::generate().unwrap().public_key();
        assert_eq!(
            verify(COMPONENT, &sig, &[other]),
            Err(SignatureError::UnknownKey(key.key_id()))
        );
        assert_eq!(
            verify(COMPONENT, &sig, &[]),
            Err(SignatureError::UnknownKey(key.key_id()))
        );
    }

    #[test]
    fn forged_hash_and_signature_are_bad_signatures() {
        let (key, _) = setup();
        // An attacker rewrites the hash to match their component but cannot
        // re-sign it: the trusted key's signature no longer verifies.
        let evil = b"\0asm evil";
        let mut sig = sign(COMPONENT, &key);
        sig.sha256 = crate::sha256_hex(evil);
        assert_eq!(
            sig.verify(evil, &[key.public_key()]),
            Err(SignatureError::BadSignature(key.key_id()))
        );
        // A signature by another key relabelled with the trusted key's id.
        let mallory = KeyPair::generate().unwrap();
        let mut forged = sign(evil, &mallory);
        forged.key_id = key.key_id();
        assert_eq!(
            forged.verify(evil, &[key.public_key()]),
            Err(SignatureError::BadSignature(key.key_id()))
        );
    }

    #[test]
    fn signatures_are_domain_separated() {
        let key = KeyPair::generate().unwrap();
        let hash = crate::sha256_hex(COMPONENT);
        // A signature over the bare hash (another purpose) is not accepted.
        let sig = Signature {
            alg: ALG.to_owned(),
            key_id: key.key_id(),
            sha256: hash.clone(),
            signature: STANDARD.encode(key.sign(hash.as_bytes())),
        };
        assert_eq!(
            sig.verify(COMPONENT, &[key.public_key()]),
            Err(SignatureError::BadSignature(key.key_id()))
        );
    }

    #[test]
    fn garbled_signature_files_are_malformed() {
        let (key, good) = setup();
        let good: serde_json::Value = serde_json::from_slice(&good).unwrap();
        let with = |field: &str, value: serde_json::Value| {
            let mut doc = good.clone();
            doc[field] = value;
            serde_json::to_vec(&doc).unwrap()
        };
        let trusted = [key.public_key()];
        for bad in [
            b"".to_vec(),
            b"not json".to_vec(),
            b"{}".to_vec(),
            vec![b' '; MAX_SIG_FILE + 1],
            with("key_id", "xyz".into()),
            with("signature", "!!!".into()),
            with("signature", STANDARD.encode([0u8; 10]).into()),
            with("sha256", "ABC".into()),
            with("extra", 1.into()),
        ] {
            let err = verify(COMPONENT, &bad, &trusted).unwrap_err();
            assert!(matches!(err, SignatureError::Malformed(_)), "{err}");
        }
        assert_eq!(
            verify(COMPONENT, &with("alg", "rsa".into()), &trusted),
            Err(SignatureError::UnsupportedAlgorithm("rsa".to_owned()))
        );
    }

    /// A reader that honours the cap, as the host's does.
    fn capped(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
        let bytes = std::fs::read(path)?;
        if bytes.len() as u64 > max {
            return Err(std::io::Error::other("over the cap"));
        }
        Ok(bytes)
    }

    #[test]
    fn files_on_disk_missing_present_and_capped() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("range.wasm");
        std::fs::write(&path, COMPONENT).unwrap();
        let key = KeyPair::generate().unwrap();
        let trusted = [key.public_key()];
        assert_eq!(sig_path(&path), tmp.path().join("range.wasm.sig"));
        assert_eq!(
            verify_file(&path, &trusted, 1 << 20, capped),
            Err(SignatureError::Missing(sig_path(&path)))
        );
        std::fs::write(sig_path(&path), sign(COMPONENT, &key).to_json()).unwrap();
        let (bytes, signer) = verify_file(&path, &trusted, 1 << 20, capped).unwrap();
        assert_eq!((bytes.as_slice(), signer), (COMPONENT, key.key_id()));
        // The component and the `.sig` are read with their caps.
        let err = verify_file(&path, &trusted, 4, capped).unwrap_err();
        assert!(
            matches!(&err, SignatureError::Io { path: p, .. } if p == &path),
            "{err}"
        );
        std::fs::write(sig_path(&path), vec![b' '; MAX_SIG_FILE + 1]).unwrap();
        let err = verify_file(&path, &trusted, 1 << 20, capped).unwrap_err();
        assert!(
            matches!(&err, SignatureError::Io { path: p, .. } if p == &sig_path(&path)),
            "{err}"
        );
    }
}
