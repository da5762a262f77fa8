//! Authenticating compile-cache artefacts.
//!
//! A compile-cache artefact is native code: loading one skips the
//! signature check its component passed, so anyone who can write into the
//! cache directory could otherwise run code in the host. Each artefact is
//! therefore stored with an HMAC-SHA256 tag under a host secret
//! ([`CacheKey`], 32 random bytes in a 0600 file of the host's own), over
//! `halyard-cache-v1\n<artefact name>\n` and the artefact bytes
//! ([`DOMAIN`]): a file written by anyone without the secret, or moved to
//! another name, fails the check and must not be loaded.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

/// The domain tag every cache tag's message starts with.
pub const DOMAIN: &str = "halyard-cache-v1";

/// Bytes of a tag (HMAC-SHA256).
pub const TAG_LEN: usize = 32;

/// Bytes of the secret.
const SECRET_LEN: usize = 32;

/// Why the cache secret could not be had.
#[derive(Debug, thiserror::Error)]
pub enum CacheKeyError {
    /// Reading, creating or tightening the file failed.
    #[error("cache secret {path}: {source}")]
    Io {
        /// The secret's file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file is not a secret this crate wrote.
    #[error("cache secret {path}: {len} bytes, expected {SECRET_LEN}")]
    Garbled {
        /// The secret's file.
        path: PathBuf,
        /// Its length.
        len: usize,
    },
    /// No randomness for a new secret.
    #[error("no system randomness for a cache secret")]
    Random,
}

/// How the secret was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheKeyOrigin {
    /// Read from its file.
    Loaded,
    /// Read from its file, whose mode was looser than 0600 and was
    /// tightened (the caller logs it).
    Tightened {
        /// The mode found.
        was: u32,
    },
    /// Generated and written now.
    Created,
}

/// The host secret that tags cache artefacts. Its `Debug` shows nothing
/// of the secret.
pub struct CacheKey(hmac::Key);

impl std::fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CacheKey(..)")
    }
}

impl CacheKey {
    /// Reads the secret at `path`, or creates it (mode 0600, never over an
    /// existing file) when there is none. A file group or others can read
    /// is tightened to 0600 and reported as [`CacheKeyOrigin::Tightened`].
    pub fn load_or_create(path: &Path) -> Result<(CacheKey, CacheKeyOrigin), CacheKeyError> {
        let io = |source| CacheKeyError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut origin = CacheKeyOrigin::Loaded;
        let secret = match fs::metadata(path) {
            Ok(meta) => {
                let mode = meta.mode() & 0o7777;
                if mode & 0o077 != 0 {
                    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(io)?;
                    origin = CacheKeyOrigin::Tightened { was: mode };
                }
                fs::read(path).map_err(io)?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut secret = vec![0u8; SECRET_LEN];
                SystemRandom::new()
                    .fill(&mut secret)
                    .map_err(|_| CacheKeyError::Random)?;
                match create_private(path, &secret) {
                    Ok(()) => origin = CacheKeyOrigin::Created,
                    // Another process won the race: use its secret.
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        secret = fs::read(path).map_err(io)?;
                    }
                    Err(e) => return Err(io(e)),
                }
                secret
            }
            Err(e) => return Err(io(e)),
        };
        if secret.len() != SECRET_LEN {
            return Err(CacheKeyError::Garbled {
                path: path.to_path_buf(),
                len: secret.len(),
            });
        }
        Ok((CacheKey(hmac::Key::new(hmac::HMAC_SHA256, &secret)), origin))
    }

    /// The tag of the artefact `name` with these bytes.
    pub fn tag(&self, name: &str, artefact: &[u8]) -> [u8; TAG_LEN] {
        let mut ctx = hmac::Context::with_key(&self.0);
        ctx.update(format!("{DOMAIN}\n{name}\n").as_bytes());
        ctx.update(artefact);
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(ctx.sign().as_ref());
        out
    }

    /// Whether `tag` is this host's tag of artefact `name` (constant time).
    pub fn verify(&self, name: &str, artefact: &[u8], tag: &[u8]) -> bool {
        let mut message = format!("{DOMAIN}\n{name}\n").into_bytes();
        message.extend_from_slice(artefact);
        hmac::verify(&self.0, &message, tag).is_ok()
    }
}

/// Creates `path` 0600 (failing if it exists), writes and syncs.
fn create_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_is_created_private_reused_and_tightened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.key");
        let (key, origin) = CacheKey::load_or_create(&path).unwrap();
        assert_eq!(origin, CacheKeyOrigin::Created);
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        let tag = key.tag("a.cwasm", b"code");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let (again, origin) = CacheKey::load_or_create(&path).unwrap();
        assert_eq!(origin, CacheKeyOrigin::Tightened { was: 0o644 });
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert!(again.verify("a.cwasm", b"code", &tag));
        assert!(!again.verify("a.cwasm", b"codE", &tag), "other bytes");
        assert!(!again.verify("b.cwasm", b"code", &tag), "another name");
        let (_, origin) = CacheKey::load_or_create(&path).unwrap();
        assert_eq!(origin, CacheKeyOrigin::Loaded);
        let other = dir.path().join("other.key");
        let (stranger, _) = CacheKey::load_or_create(&other).unwrap();
        assert!(!stranger.verify("a.cwasm", b"code", &tag), "another host");
        fs::write(&other, b"short").unwrap();
        assert!(matches!(
            CacheKey::load_or_create(&other),
            Err(CacheKeyError::Garbled { len: 5, .. })
        ));
    }
}
