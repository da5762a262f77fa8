//! The rollout manifest: its shape, its signature and freshness checks,
//! and the highest serial this host accepted, kept in `data_dir`.
//!
//! A manifest is served as a signed envelope (`halyard plugin
//! sign-manifest`; see `halyard_trust::manifest`) around
//!
//! ```json
//! {"serial": 42, "expires_at": 1795000000,
//!  "plugins": [{"name": "validator", "kind": "validator",
//!               "url": "validator-2.wasm", "sha256": "<64 hex>",
//!               "signature": {"alg": "ed25519", "key_id": "…", "name": "validator", …}}]}
//! ```
//!
//! Invariants:
//! - nothing in a manifest is acted on before its envelope verifies with
//!   one of `[plugins] trusted_keys`, it has not expired, and its serial is
//!   not below the highest accepted (nor equal with other contents);
//! - the highest accepted serial is written to `data_dir/rollout.serial`
//!   (0600, temp file + rename, fsynced) *before* anything is installed, so
//!   a restart never accepts an older manifest again;
//! - a state file that cannot be read is never taken for "no state": the
//!   rollout refuses every manifest until an operator removes it.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use halyard_trust::PublicKey;
use halyard_trust::manifest::{self, ManifestError, Seen};
use serde::Deserialize;

use super::rollout::RolloutError;

/// The file in `data_dir` that holds the highest accepted serial.
pub const SERIAL_FILE: &str = "rollout.serial";

/// The manifest document (the envelope's payload).
#[derive(Debug, Deserialize)]
pub struct Manifest {
    /// Grows with every new manifest.
    pub serial: u64,
    /// Unix seconds after which the manifest is refused.
    pub expires_at: u64,
    /// The plugins to install.
    pub plugins: Vec<ManifestPlugin>,
}

/// One plugin in the manifest.
#[derive(Debug, Deserialize)]
pub struct ManifestPlugin {
    /// The file name without `.wasm` in the plugin directory; the signature
    /// must be for this name.
    pub name: String,
    /// Its kind; the signature must be for this kind (hot reload checks it
    /// against the stage again).
    pub kind: String,
    /// Where to download it (absolute, or relative to the manifest).
    pub url: String,
    /// SHA-256 of the component, hex.
    pub sha256: String,
    /// The `.sig` document (an object, or its text as a string); required.
    #[serde(default)]
    pub signature: Option<serde_json::Value>,
}

/// The highest serial accepted, on disk.
#[derive(Debug)]
pub struct SerialStore {
    path: PathBuf,
    /// What the file holds (`None`: no manifest accepted yet); `Err` when
    /// the file exists but cannot be read, which refuses every manifest.
    last: Result<Option<Seen>, String>,
}

impl SerialStore {
    /// Reads `data_dir/rollout.serial`.
    pub fn open(data_dir: &Path) -> Self {
        let path = data_dir.join(SERIAL_FILE);
        let last = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<Seen>(&bytes)
                .map(Some)
                .map_err(|e| format!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("{}: {e}", path.display())),
        };
        SerialStore { path, last }
    }

    /// The highest serial accepted so far.
    pub fn last(&self) -> Option<u64> {
        self.last
            .as_ref()
            .ok()
            .and_then(|s| s.as_ref().map(|s| s.serial))
    }

    /// Verifies `body` (an envelope) with `keys`, checks it is fresh at
    /// `now`, records its serial when it is new, and returns the manifest.
    pub fn accept(
        &mut self,
        body: &[u8],
        keys: &[PublicKey],
        now: u64,
    ) -> Result<Manifest, RolloutError> {
        let last = self.last.clone().map_err(|reason| RolloutError::State {
            reason: format!("{reason}; remove the file to accept manifests again"),
        })?;
        let opened = manifest::open(body, keys)?;
        manifest::check_fresh(&opened, last.as_ref(), now)?;
        let parsed: Manifest = serde_json::from_slice(&opened.payload)
            .map_err(|e| RolloutError::Refused(ManifestError::Malformed(e.to_string())))?;
        let seen = opened.seen();
        if last.as_ref() != Some(&seen) {
            write_private(&self.path, &serde_json::to_vec(&seen).unwrap_or_default()).map_err(
                |e| RolloutError::State {
                    reason: format!(
                        "cannot record serial {}: {}: {e}",
                        seen.serial,
                        self.path.display()
                    ),
                },
            )?;
            tracing::info!(serial = seen.serial, previous = ?last.as_ref().map(|s| s.serial),
                signer = %opened.key_id, "rollout: accepted a new manifest serial");
            self.last = Ok(Some(seen));
        }
        Ok(parsed)
    }
}

/// Writes `bytes` to `path` through a 0600 temp file beside it, fsynced,
/// then renamed over it.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let result = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use halyard_trust::KeyPair;

    use super::*;

    fn sealed(key: &KeyPair, serial: u64, expires_at: u64, name: &str) -> Vec<u8> {
        let payload = serde_json::json!({"serial": serial, "expires_at": expires_at,
            "plugins": [{"name": name, "kind": "validator", "url": "v.wasm", "sha256": "00"}]});
        manifest::seal(payload.to_string().as_bytes(), key)
            .unwrap()
            .to_json()
            .into_bytes()
    }

    #[test]
    fn the_highest_serial_survives_a_restart_and_older_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = KeyPair::generate().unwrap();
        let keys = [key.public_key()];
        let mut store = SerialStore::open(dir.path());
        assert_eq!(store.last(), None);
        let m = store.accept(&sealed(&key, 5, 100, "a"), &keys, 50).unwrap();
        assert_eq!((m.serial, m.plugins[0].name.as_str()), (5, "a"));
        // As after a restart.
        let mut store = SerialStore::open(dir.path());
        assert_eq!(store.last(), Some(5));
        let err = store
            .accept(&sealed(&key, 4, 100, "a"), &keys, 50)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "manifest refused: manifest serial 4 is older than serial 5 already accepted (replay refused)"
        );
        let err = store
            .accept(&sealed(&key, 5, 100, "b"), &keys, 50)
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("already accepted with different contents"),
            "{err}"
        );
        store.accept(&sealed(&key, 5, 100, "a"), &keys, 50).unwrap();
        let err = store
            .accept(&sealed(&key, 6, 100, "a"), &keys, 101)
            .unwrap_err();
        assert!(err.to_string().contains("expired at 100"), "{err}");
        assert_eq!(SerialStore::open(dir.path()).last(), Some(5));
        // A garbled state file refuses everything, never resets.
        std::fs::write(dir.path().join(SERIAL_FILE), b"garbage").unwrap();
        let mut store = SerialStore::open(dir.path());
        let err = store
            .accept(&sealed(&key, 9, 100, "a"), &keys, 50)
            .unwrap_err();
        assert!(err.to_string().contains("remove the file"), "{err}");
    }
}
