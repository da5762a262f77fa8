//! Detached plugin signatures: `FILE.sig` beside a component `FILE`.
//!
//! A signature binds *what* a component is allowed to be, not only its
//! bytes: the name it is installed under (the file name without `.wasm`),
//! its kind, its version (what its `info` reports), optionally the fleet it
//! is meant for, and its SHA-256. So a component signed as `redact-v2`
//! (privacy) does not verify when installed as `validator.wasm`, or listed
//! in a rollout manifest as another name or kind, and a signature made for
//! fleet `north` does not verify on a host of fleet `south`. A signature
//! with no fleet is valid on every host. The signed message is
//!
//! ```text
//! halyard-plugin-v2
//! name=<name>
//! kind=<kind>
//! version=<version>
//! fleet=<fleet, or empty>
//! sha256=<64 hex>
//! ```
//!
//! ([`DOMAIN`]), so no other Halyard signature (a licence, a batch, a
//! manifest) can pass for a plugin signature; no field may hold a line
//! break, so the message is unambiguous.
//!
//! The `.sig` file is a small JSON object:
//!
//! ```json
//! {
//!   "alg": "ed25519",
//!   "key_id": "1f2e3d4c5b6a7988",
//!   "name": "redact-v2",
//!   "kind": "privacy",
//!   "version": "0.1.0",
//!   "sha256": "<64 hex digits of the component's content hash>",
//!   "signature": "<standard base64 of the 64-byte Ed25519 signature>"
//! }
//! ```
//!
//! (with `"fleet": "north"` when scoped to a fleet). The first format
//! (`halyard-plugin-v1`, the content hash alone) is refused as
//! [`SignatureError::OldFormat`], with a message saying to re-sign.
//!
//! Verification checks, in order: the file parses; the algorithm is
//! Ed25519; the recorded hash equals the component's actual hash (so a file
//! changed after signing is reported as *changed*, not as a forgery); the
//! key id names a trusted key; the signature verifies with that key; the
//! signed name, kind and fleet are the ones the component is installed as
//! ([`Expected`]). The version is checked by the host once the component
//! has told it (`info`), with [`Signature::check_version`]. Each failure
//! is its own [`SignatureError`] variant, so an operator is told which of
//! these happened.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::keys::{KeyId, KeyPair, PublicKey};

/// The domain tag that starts every plugin signature's message.
pub const DOMAIN: &str = "halyard-plugin-v2";

/// The only algorithm written and accepted.
pub const ALG: &str = "ed25519";

/// Largest `.sig` file read or parsed; a real one is about 300 bytes, so
/// anything far bigger is garbage and is not worth reading into memory or a
/// JSON parser.
pub const MAX_SIG_FILE: usize = 16 * 1024;

/// Longest name, kind, version or fleet a signature may bind.
const MAX_FIELD: usize = 256;

/// Why a component's signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// There is no `FILE.sig` beside the component.
    #[error("unsigned: no signature file {0}")]
    Missing(PathBuf),
    /// The signature file exists but is not a valid signature document.
    #[error("garbled signature file: {0}")]
    Malformed(String),
    /// A signature of the first format, which covered only the content
    /// hash: it could be moved to any name or kind, so it is not accepted.
    #[error(
        "old-format signature (halyard-plugin-v1 covers only the content hash, not the name, kind and version): re-sign the component with `halyard plugin sign`"
    )]
    OldFormat,
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
    /// A valid signature, made for a component of another name, kind,
    /// version or fleet: moved, not forged, and refused all the same.
    #[error("signed for {field} {signed:?}, installed as {actual:?}")]
    Mismatch {
        /// `name`, `kind`, `version` or `fleet`.
        field: &'static str,
        /// What the signature binds.
        signed: String,
        /// What the component is installed as (empty: none).
        actual: String,
    },
    /// The component or its signature file could not be read.
    #[error("{path}: {reason}")]
    Io {
        /// The file that could not be read.
        path: PathBuf,
        /// The operating system's error, as text (keeps this enum `Clone`).
        reason: String,
    },
}

/// What a component is being installed as, which its signature must bind:
/// a signature is checked against the place it is used, not only the bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected<'a> {
    /// The name it is installed under: the file name without `.wasm`.
    pub name: &'a str,
    /// The kind it is loaded as; `None` when the loader infers the kind (it
    /// then checks the signed kind against what it inferred).
    pub kind: Option<&'a str>,
    /// The host's fleet, if it has one: a signature scoped to a fleet
    /// verifies only on a host of that fleet.
    pub fleet: Option<&'a str>,
}

impl<'a> Expected<'a> {
    /// What a component file at `path` is installed as: its file stem,
    /// with the given kind and fleet.
    pub fn for_file(path: &'a Path, kind: Option<&'a str>, fleet: Option<&'a str>) -> Self {
        let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
        Expected { name, kind, fleet }
    }
}

/// What the signer says the component is: everything a signature binds
/// besides the content hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    /// The name it is installed under (the file name without `.wasm`).
    pub name: String,
    /// Its plugin kind (`validator`, `privacy`, …).
    pub kind: String,
    /// Its version, as its `info` reports it.
    pub version: String,
    /// The fleet it is for; `None`: every fleet.
    pub fleet: Option<String>,
}

/// A detached signature over a component and what it is: the contents of a
/// `.sig` file. Also the shape a remote rollout manifest embeds per plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signature {
    /// The algorithm: always [`ALG`]. Recorded so a future algorithm is
    /// refused by name rather than misread.
    pub alg: String,
    /// Which key signed, so the verifier picks it without trying them all
    /// and can name an untrusted signer.
    pub key_id: KeyId,
    /// The name the component may be installed under.
    pub name: String,
    /// The kind the component may be loaded as.
    pub kind: String,
    /// The version the component must report.
    pub version: String,
    /// The fleet the signature is scoped to; absent: every fleet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<String>,
    /// Lowercase hex SHA-256 of the component that was signed.
    pub sha256: String,
    /// Standard base64 of the 64-byte Ed25519 signature of the message in
    /// the module docs.
    pub signature: String,
}

impl Signature {
    /// The `.sig` file's bytes: pretty JSON and a trailing newline.
    pub fn to_json(&self) -> String {
        // Serialising plain fields cannot fail; fall back to an empty
        // object rather than unwrap, so a surprise is refused at verify time.
        let mut out = serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".to_owned());
        out.push('\n');
        out
    }

    /// Parses a `.sig` file's bytes. A document of the first format (no
    /// name, kind or version) is [`SignatureError::OldFormat`].
    pub fn from_json(bytes: &[u8]) -> Result<Self, SignatureError> {
        if bytes.len() > MAX_SIG_FILE {
            return Err(SignatureError::Malformed(format!(
                "{} bytes is too large for a signature file",
                bytes.len()
            )));
        }
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| SignatureError::Malformed(e.to_string()))?;
        Self::from_value(value)
    }

    /// Parses a signature document already read as JSON (a manifest entry).
    pub fn from_value(value: serde_json::Value) -> Result<Self, SignatureError> {
        let old = value.as_object().is_some_and(|doc| {
            doc.contains_key("sha256") && doc.contains_key("signature") && !doc.contains_key("name")
        });
        if old {
            return Err(SignatureError::OldFormat);
        }
        serde_json::from_value(value).map_err(|e| SignatureError::Malformed(e.to_string()))
    }

    /// What this signature says the component is.
    pub fn subject(&self) -> Subject {
        Subject {
            name: self.name.clone(),
            kind: self.kind.clone(),
            version: self.version.clone(),
            fleet: self.fleet.clone(),
        }
    }

    /// Checks this signature against `component`, the `trusted` keys and
    /// what the component is installed as; returns the id of the key that
    /// signed it. See the module docs for the order of checks.
    pub fn verify(
        &self,
        component: &[u8],
        expected: &Expected<'_>,
        trusted: &[PublicKey],
    ) -> Result<KeyId, SignatureError> {
        if self.alg != ALG {
            return Err(SignatureError::UnsupportedAlgorithm(self.alg.clone()));
        }
        check_fields(&self.subject()).map_err(SignatureError::Malformed)?;
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
        if !key.verifies(message(&self.subject(), &actual).as_bytes(), &raw) {
            return Err(SignatureError::BadSignature(self.key_id));
        }
        self.check_binding(expected)?;
        Ok(self.key_id)
    }

    /// The signed name, kind and fleet against what the component is
    /// installed as.
    fn check_binding(&self, expected: &Expected<'_>) -> Result<(), SignatureError> {
        let mismatch = |field, signed: &str, actual: &str| SignatureError::Mismatch {
            field,
            signed: signed.to_owned(),
            actual: actual.to_owned(),
        };
        if self.name != expected.name {
            return Err(mismatch("name", &self.name, expected.name));
        }
        if let Some(kind) = expected.kind.filter(|k| *k != self.kind) {
            return Err(mismatch("kind", &self.kind, kind));
        }
        if let Some(fleet) = &self.fleet
            && expected.fleet != Some(fleet.as_str())
        {
            return Err(mismatch("fleet", fleet, expected.fleet.unwrap_or("")));
        }
        Ok(())
    }

    /// Checks the signed version (and kind) against what the loaded
    /// component reports: the host calls this after its probe `info`.
    pub fn check_loaded(&self, kind: &str, version: &str) -> Result<(), SignatureError> {
        if self.kind != kind {
            return Err(SignatureError::Mismatch {
                field: "kind",
                signed: self.kind.clone(),
                actual: kind.to_owned(),
            });
        }
        if self.version != version {
            return Err(SignatureError::Mismatch {
                field: "version",
                signed: self.version.clone(),
                actual: version.to_owned(),
            });
        }
        Ok(())
    }
}

/// Refuses a name, kind, version or fleet that would make the message
/// ambiguous (a line break) or is empty or huge.
fn check_fields(subject: &Subject) -> Result<(), String> {
    let fields = [
        ("name", Some(&subject.name)),
        ("kind", Some(&subject.kind)),
        ("version", Some(&subject.version)),
        ("fleet", subject.fleet.as_ref()),
    ];
    for (field, value) in fields {
        let Some(value) = value else { continue };
        if value.is_empty() || value.len() > MAX_FIELD || value.chars().any(char::is_control) {
            return Err(format!(
                "{field} must be 1 to {MAX_FIELD} characters without control characters"
            ));
        }
    }
    Ok(())
}

/// The message a plugin signature covers.
fn message(subject: &Subject, sha256_hex: &str) -> String {
    format!(
        "{DOMAIN}\nname={}\nkind={}\nversion={}\nfleet={}\nsha256={sha256_hex}",
        subject.name,
        subject.kind,
        subject.version,
        subject.fleet.as_deref().unwrap_or("")
    )
}

/// Signs a component's bytes as `subject` with `key`. Fails (with
/// [`SignatureError::Malformed`]) on a field that is empty, too long or has
/// a control character.
pub fn sign(
    component: &[u8],
    subject: &Subject,
    key: &KeyPair,
) -> Result<Signature, SignatureError> {
    check_fields(subject).map_err(SignatureError::Malformed)?;
    let sha256 = crate::sha256_hex(component);
    let raw = key.sign(message(subject, &sha256).as_bytes());
    Ok(Signature {
        alg: ALG.to_owned(),
        key_id: key.key_id(),
        name: subject.name.clone(),
        kind: subject.kind.clone(),
        version: subject.version.clone(),
        fleet: subject.fleet.clone(),
        sha256,
        signature: STANDARD.encode(raw),
    })
}

/// Verifies a component against the bytes of its `.sig` file, what it is
/// installed as and the `trusted` keys; returns the verified signature (the
/// caller checks the version once the component reports it).
pub fn verify(
    component: &[u8],
    sig_file: &[u8],
    expected: &Expected<'_>,
    trusted: &[PublicKey],
) -> Result<Signature, SignatureError> {
    let sig = Signature::from_json(sig_file)?;
    sig.verify(component, expected, trusted)?;
    Ok(sig)
}

/// Where the signature of `component` lives: the same path with `.sig`
/// appended (`range.wasm` → `range.wasm.sig`).
pub fn sig_path(component: &Path) -> PathBuf {
    let mut name = component.as_os_str().to_owned();
    name.push(".sig");
    PathBuf::from(name)
}

/// Reads `component` (at most `max_component` bytes) and its `.sig` file
/// (at most [`MAX_SIG_FILE`] bytes) with `read`, and verifies them as the
/// file they are (its name is the file stem): what `halyard plugin verify`
/// calls. A missing `.sig` is [`SignatureError::Missing`] ("unsigned").
///
/// `read(path, max)` must refuse anything but a regular file of at most
/// `max` bytes without blocking, and keep `NotFound` for a missing file:
/// this crate does no file-system policy of its own, so the host's safe
/// reader is used for every plugin file.
///
/// Returns the component's bytes with the verified signature, so the
/// caller compiles exactly the bytes that were verified (reading the file
/// again would let a swap in between slip through).
pub fn verify_file(
    component: &Path,
    kind: Option<&str>,
    fleet: Option<&str>,
    trusted: &[PublicKey],
    max_component: u64,
    read: impl Fn(&Path, u64) -> std::io::Result<Vec<u8>>,
) -> Result<(Vec<u8>, Signature), SignatureError> {
    let bytes = read(component, max_component).map_err(|e| io_error(component, e))?;
    let sig = read_sig_file(component, read)?;
    let expected = Expected::for_file(component, kind, fleet);
    let signature = verify(&bytes, &sig, &expected, trusted)?;
    Ok((bytes, signature))
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
mod tests;
