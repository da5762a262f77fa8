//! The rollback ledger on disk, so a rollback outlives the process.
//!
//! In `data_dir`:
//! - `rollback.json` (0600): the content hashes rolled back, and per plugin
//!   file how often it was rolled back and which content runs there now
//!   and ran there before;
//! - `rollback/<sha256>.wasm` (and `.wasm.sig`), dir 0700: a copy of each
//!   version that runs or ran just before, the "last good" file that a
//!   rollback puts back at the plugin's path.
//!
//! Invariants:
//! - the state file is replaced whole (temp file, fsync, rename), so it is
//!   always one complete state; a state file that cannot be read refuses
//!   the start rather than forgetting what was rolled back;
//! - only copies named by some file's current or previous version are kept;
//! - a restored file is written the way deploys are (temp + rename, its
//!   `.sig` first), so the watcher and a restart see a complete pair.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The state file in `data_dir`.
pub const STATE_FILE: &str = "rollback.json";
/// The directory of last-good copies in `data_dir`.
pub const COPIES_DIR: &str = "rollback";

/// Why the ledger's files could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// The state file exists but cannot be read or parsed.
    #[error("rollback ledger {path}: {reason} (it records rolled-back plugins; fix or remove it)")]
    State {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A plugin file holds content that was rolled back, and there is no
    /// good copy to put back.
    #[error(
        "{path}: content sha256 {sha256} was rolled back on this host and no last good copy is kept; deploy a fixed version"
    )]
    NoGoodCopy {
        /// The plugin file.
        path: PathBuf,
        /// Its content hash.
        sha256: String,
    },
    /// Writing a file failed.
    #[error("rollback ledger {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
}

/// What `rollback.json` holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct State {
    /// Content hashes rolled back: never loaded again.
    pub bad: BTreeSet<String>,
    /// Per plugin file (absolute path).
    pub files: BTreeMap<PathBuf, FileRecord>,
}

/// One plugin file's history.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRecord {
    /// Rollbacks of this file so far.
    pub rollbacks: u32,
    /// The content that runs from this file now.
    pub running: Option<String>,
    /// The content that ran before it.
    pub previous: Option<String>,
}

/// The ledger's directory in `data_dir`.
#[derive(Debug, Clone)]
pub struct Disk {
    data_dir: PathBuf,
}

impl Disk {
    /// The ledger files in `data_dir`.
    pub fn new(data_dir: &Path) -> Self {
        Disk {
            data_dir: data_dir.to_path_buf(),
        }
    }

    fn state_path(&self) -> PathBuf {
        self.data_dir.join(STATE_FILE)
    }

    fn copy_path(&self, sha256: &str) -> PathBuf {
        self.data_dir
            .join(COPIES_DIR)
            .join(format!("{sha256}.wasm"))
    }

    /// Reads the state (empty when there is none yet).
    pub fn load(&self) -> Result<State, LedgerError> {
        let path = self.state_path();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| LedgerError::State {
                path,
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(LedgerError::State {
                path,
                reason: e.to_string(),
            }),
        }
    }

    /// Replaces the state file with `state`, and drops copies no file
    /// names any more.
    pub fn save(&self, state: &State) -> Result<(), LedgerError> {
        let path = self.state_path();
        let bytes = serde_json::to_vec_pretty(state).unwrap_or_default();
        replace_private(&path, &bytes).map_err(|source| LedgerError::Io { path, source })?;
        let keep: BTreeSet<String> = state
            .files
            .values()
            .flat_map(|r| r.running.iter().chain(r.previous.iter()))
            .map(|sha| format!("{sha}.wasm"))
            .collect();
        if let Ok(entries) = std::fs::read_dir(self.data_dir.join(COPIES_DIR)) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let base = name.strip_suffix(".sig").unwrap_or(&name);
                if !keep.contains(base) {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        Ok(())
    }

    /// Keeps a copy of `bytes` (content `sha256`, running from `path`) and
    /// of the `.sig` beside `path`, if any.
    pub fn keep_copy(&self, path: &Path, sha256: &str, bytes: &[u8]) -> Result<(), LedgerError> {
        let dest = self.copy_path(sha256);
        let io = |source| LedgerError::Io {
            path: dest.clone(),
            source,
        };
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(self.data_dir.join(COPIES_DIR))
            .map_err(io)?;
        let sig = crate::plugin::file::read_regular(
            &halyard_trust::plugin_sig::sig_path(path),
            halyard_trust::plugin_sig::MAX_SIG_FILE as u64,
        )
        .ok();
        if let Some(sig) = sig {
            replace_private(&halyard_trust::plugin_sig::sig_path(&dest), &sig).map_err(io)?;
        }
        if !dest.exists() {
            replace_private(&dest, bytes).map_err(io)?;
        }
        Ok(())
    }

    /// Puts the copy of `sha256` back at `path` (its `.sig` first); false
    /// when no copy is kept.
    pub fn restore(&self, path: &Path, sha256: &str) -> Result<bool, LedgerError> {
        let copy = self.copy_path(sha256);
        let Ok(bytes) = std::fs::read(&copy) else {
            return Ok(false);
        };
        if halyard_trust::sha256_hex(&bytes) != sha256 {
            return Ok(false);
        }
        let io = |source| LedgerError::Io {
            path: path.to_path_buf(),
            source,
        };
        let sig_path = halyard_trust::plugin_sig::sig_path(path);
        match std::fs::read(halyard_trust::plugin_sig::sig_path(&copy)) {
            Ok(sig) => deploy(&sig_path, &sig).map_err(io)?,
            Err(_) => match std::fs::remove_file(&sig_path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
                _ => {}
            },
        }
        deploy(path, &bytes).map_err(io)?;
        Ok(true)
    }
}

/// Writes `path` through a 0600 temp file beside it, fsynced, renamed.
fn replace_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_then_rename(path, bytes, 0o600)
}

/// Writes a plugin file the way deploys are written: a dotfile temp the
/// watcher ignores, fsynced, then renamed over `path`.
fn deploy(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_then_rename(path, bytes, 0o644)
}

fn write_then_rename(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.restore.tmp", std::process::id()));
    let result = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes).and_then(|()| f.sync_all()))
        .and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Before the pipeline is built: opens the rollback ledger kept in
/// `data_dir`, puts the last good version back at any plugin path that
/// holds a version rolled back in an earlier run (refusing the start when
/// no good copy is kept), and records (with a copy) the version each file
/// holds, which the pipeline is about to load: a rollback of the next
/// swap puts that copy back. A file that cannot be read is left for the
/// load to refuse with its own reason.
pub fn prepare(
    config: &crate::config::HostConfig,
) -> Result<std::sync::Arc<super::Ledger>, LedgerError> {
    let ledger = super::Ledger::open(super::rollback_policy(config), &config.host.data_dir)?;
    let max = config.plugins.max_file_bytes();
    for t in super::swap::targets(config) {
        let Ok(bytes) = crate::plugin::file::read_component(&t.file, max) else {
            continue;
        };
        let bytes = match ledger.check_on_start(&t.file, &super::sha256(&bytes))? {
            None => bytes,
            Some(_) => match crate::plugin::file::read_component(&t.file, max) {
                Ok(restored) => restored,
                Err(_) => continue,
            },
        };
        ledger.running(&t.file, &super::sha256(&bytes), &bytes);
    }
    Ok(ledger)
}
