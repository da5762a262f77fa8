//! Ed25519 keys: generation, owner-only key files, text forms and key ids.
//!
//! ## Invariants
//!
//! - A private key file is created `0600` inside a directory created `0700`,
//!   written to a temporary file first and linked into place only when
//!   complete, so a power cut never leaves a half-written key under the
//!   final name, and an existing key is never overwritten.
//! - A key file that group or others can read is refused on load, the way
//!   `ssh` refuses one: a leaked host key lets anyone sign batches as this
//!   host. The error says which `chmod` fixes it.
//! - [`KeyPair`]'s `Debug` shows the key id only; there is no `Display` and
//!   no accessor for the private bytes other than [`KeyPair::save`].
//!
//! ## File format
//!
//! A private key file is PKCS#8 v2 (the form `ring` generates, with the
//! public key embedded) in PEM armour (`-----BEGIN PRIVATE KEY-----`).
//! [`KeyPair::load`] also accepts the raw DER bytes.

use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::rand::SystemRandom;
use ring::signature::{self, Ed25519KeyPair, KeyPair as _};

/// The algorithm prefix of a public key's text form.
pub const PUBLIC_KEY_PREFIX: &str = "ed25519:";

/// The PEM label of private key files.
const PEM_BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
const PEM_END: &str = "-----END PRIVATE KEY-----";

/// Why a key could not be created, read, written or parsed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The system random generator failed; no key was made.
    #[error("could not generate a key: the system random generator failed")]
    Generate,
    /// The bytes are not an Ed25519 PKCS#8 v2 private key.
    #[error("{path}: not an Ed25519 private key ({reason})")]
    InvalidPrivateKey {
        /// The key file, or `<memory>`.
        path: PathBuf,
        /// What `ring` or the PEM decoder objected to.
        reason: String,
    },
    /// A public key's text form did not parse.
    #[error("invalid public key {text:?}: {reason} (expected ed25519:<base64 of 32 bytes>)")]
    InvalidPublicKey {
        /// The offending text (public keys are not secret).
        text: String,
        /// What was wrong with it.
        reason: &'static str,
    },
    /// A key id's text form did not parse.
    #[error("invalid key id {0:?}: expected 16 hex digits")]
    InvalidKeyId(String),
    /// The key file can be read by group or others.
    #[error("{path}: private key is readable by others (mode {mode:04o}); run `chmod 600 {path}`")]
    InsecurePermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Saving would overwrite an existing file.
    #[error("{0}: already exists; refusing to overwrite a key")]
    AlreadyExists(PathBuf),
    /// Reading or writing the key file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

impl KeyError {
    fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// A short, stable name for a public key: the first 8 bytes of the SHA-256
/// of its 32 raw bytes, shown as 16 hex digits.
///
/// Signature files and headers carry it so a verifier can pick the right key
/// at once and say *which* unknown key signed something. It is a hint, not a
/// proof: verification always uses the trusted key itself.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId([u8; 8]);

impl KeyId {
    /// The raw 8 bytes.
    pub fn as_bytes(&self) -> &[u8; 8] {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::hex(&self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

impl FromStr for KeyId {
    type Err = KeyError;

    fn from_str(text: &str) -> Result<Self, KeyError> {
        crate::unhex(text)
            .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
            .map(KeyId)
            .ok_or_else(|| KeyError::InvalidKeyId(text.to_owned()))
    }
}

impl serde::Serialize for KeyId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for KeyId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// An Ed25519 public key: what operators put in configs as trusted plugin
/// signers, licence issuers and known hosts.
///
/// Its text form is `ed25519:<standard base64 of the 32 bytes>`; it
/// (de)serialises as that string, so a config can list keys directly.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// A public key from its 32 raw bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// The 32 raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// This key's short id.
    pub fn key_id(&self) -> KeyId {
        let digest = ring::digest::digest(&ring::digest::SHA256, &self.0);
        let mut id = [0u8; 8];
        id.copy_from_slice(&digest.as_ref()[..8]);
        KeyId(id)
    }

    /// True if `signature` is this key's Ed25519 signature of `message`.
    /// Crate-private: callers verify through a module that knows the domain.
    pub(crate) fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        signature::UnparsedPublicKey::new(&signature::ED25519, &self.0)
            .verify(message, signature)
            .is_ok()
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PUBLIC_KEY_PREFIX}{}", STANDARD.encode(self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self}, id {})", self.key_id())
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;

    fn from_str(text: &str) -> Result<Self, KeyError> {
        let invalid = |reason| KeyError::InvalidPublicKey {
            text: text.to_owned(),
            reason,
        };
        let body = text
            .trim()
            .strip_prefix(PUBLIC_KEY_PREFIX)
            .ok_or_else(|| invalid("missing the ed25519: prefix"))?;
        let bytes = STANDARD
            .decode(body)
            .map_err(|_| invalid("not valid base64"))?;
        let bytes = <[u8; 32]>::try_from(bytes).map_err(|_| invalid("not 32 bytes"))?;
        Ok(Self(bytes))
    }
}

impl serde::Serialize for PublicKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// An Ed25519 private key with its public half: signs plugins, licences and
/// batches (through those modules, each with its own domain tag).
pub struct KeyPair {
    /// The parsed key `ring` signs with.
    pair: Ed25519KeyPair,
    /// The PKCS#8 document it came from, kept only so [`KeyPair::save`] can
    /// write it; never printed.
    pkcs8: Vec<u8>,
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyPair {{ key_id: {}, private: *** }}", self.key_id())
    }
}

/// Whether [`load_or_create`] found a key or made one, so the host can log
/// "generated a new provenance key" exactly once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOrigin {
    /// The key file existed and was loaded.
    Loaded,
    /// There was no key file; a new key was generated and saved.
    Created,
}

impl KeyPair {
    /// A fresh key from the operating system's random generator.
    pub fn generate() -> Result<Self, KeyError> {
        let rng = SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| KeyError::Generate)?;
        Self::from_pkcs8(doc.as_ref())
    }

    /// A key from PKCS#8 v2 DER bytes (what [`KeyPair::generate`] makes).
    pub fn from_pkcs8(der: &[u8]) -> Result<Self, KeyError> {
        Self::parse(der, Path::new("<memory>"))
    }

    fn parse(der: &[u8], path: &Path) -> Result<Self, KeyError> {
        let pair = Ed25519KeyPair::from_pkcs8(der).map_err(|e| KeyError::InvalidPrivateKey {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            pair,
            pkcs8: der.to_vec(),
        })
    }

    /// The public half, to hand to verifiers.
    pub fn public_key(&self) -> PublicKey {
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(self.pair.public_key().as_ref());
        PublicKey(bytes)
    }

    /// The id of the public half.
    pub fn key_id(&self) -> KeyId {
        self.public_key().key_id()
    }

    /// Signs `message` as-is. Crate-private so that every signature this
    /// crate makes goes through a domain-separated message builder.
    pub(crate) fn sign(&self, message: &[u8]) -> [u8; 64] {
        let mut out = [0u8; 64];
        out.copy_from_slice(self.pair.sign(message).as_ref());
        out
    }

    /// Writes the key to `path` as PEM, mode `0600`, creating missing parent
    /// directories with mode `0700`. Refuses to overwrite an existing file.
    ///
    /// The key is written to a temporary file beside `path`, synced, then
    /// hard-linked to `path` (which fails if `path` exists, atomically), so
    /// the final name only ever holds a complete key.
    pub fn save(&self, path: &Path) -> Result<(), KeyError> {
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| KeyError::io(dir, e))?;
        if path.exists() {
            return Err(KeyError::AlreadyExists(path.to_path_buf()));
        }
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "key".to_owned());
        let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
        let result = write_private(&tmp, self.pem().as_bytes()).and_then(|()| {
            fs::hard_link(&tmp, path).map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => KeyError::AlreadyExists(path.to_path_buf()),
                _ => KeyError::io(path, e),
            })
        });
        let _ = fs::remove_file(&tmp);
        result?;
        // Make the new directory entry durable too; failure here only means
        // the key might need regenerating after a power cut, so it is not fatal.
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Reads a key written by [`KeyPair::save`] (or raw PKCS#8 DER).
    /// Refuses a file that group or others may read.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let meta = fs::metadata(path).map_err(|e| KeyError::io(path, e))?;
        let mode = meta.mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(KeyError::InsecurePermissions {
                path: path.to_path_buf(),
                mode,
            });
        }
        let bytes = fs::read(path).map_err(|e| KeyError::io(path, e))?;
        let der = match std::str::from_utf8(&bytes) {
            Ok(text) if text.trim_start().starts_with(PEM_BEGIN) => {
                decode_pem(text).ok_or_else(|| KeyError::InvalidPrivateKey {
                    path: path.to_path_buf(),
                    reason: "garbled PEM".to_owned(),
                })?
            }
            _ => bytes,
        };
        Self::parse(&der, path)
    }

    /// The PEM text of the private key.
    fn pem(&self) -> String {
        let b64 = STANDARD.encode(&self.pkcs8);
        let mut out = format!("{PEM_BEGIN}\n");
        for line in b64.as_bytes().chunks(64) {
            out.push_str(&String::from_utf8_lossy(line));
            out.push('\n');
        }
        out.push_str(PEM_END);
        out.push('\n');
        out
    }
}

/// Loads the key at `path`, or generates and saves one if there is none:
/// the host's provenance key, made on first run.
///
/// Two hosts racing on the same path both end up with the one key that got
/// linked first. A file that exists but is unreadable, garbled or too open is
/// an error, never silently replaced: replacing it would change the host's
/// identity behind the receiver's back.
pub fn load_or_create(path: &Path) -> Result<(KeyPair, KeyOrigin), KeyError> {
    match KeyPair::load(path) {
        Ok(key) => return Ok((key, KeyOrigin::Loaded)),
        Err(KeyError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let key = KeyPair::generate()?;
    match key.save(path) {
        Ok(()) => Ok((key, KeyOrigin::Created)),
        Err(KeyError::AlreadyExists(_)) => Ok((KeyPair::load(path)?, KeyOrigin::Loaded)),
        Err(e) => Err(e),
    }
}

/// Creates `path` with mode 0600 (failing if it exists), writes and syncs.
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), KeyError> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| KeyError::io(path, e))?;
    file.write_all(bytes).map_err(|e| KeyError::io(path, e))?;
    file.sync_all().map_err(|e| KeyError::io(path, e))
}

fn decode_pem(text: &str) -> Option<Vec<u8>> {
    let body = text.trim().strip_prefix(PEM_BEGIN)?.strip_suffix(PEM_END)?;
    let b64: String = body.split_whitespace().collect();
    STANDARD.decode(b64).ok()
}

#[cfg(test)]
mod tests;
