//! Automatic rollback after a bad swap, quarantine by content hash, and the
//! backoff that keeps a crashing plugin from causing a reload storm.
//!
//! Invariants:
//! - a stage keeps the version it replaced for `window` after a swap
//!   ([`Probation`]); more than `after_traps` traps in that time restore it;
//! - a rolled-back component's SHA-256 is in the [`Ledger`] and is never
//!   loaded again; only different bytes at that path are;
//! - with a data directory ([`Ledger::open`]) the ledger is kept on disk
//!   ([`super::last_good`]): a rollback puts the last good file (and its
//!   `.sig`) back at the plugin's path, and after a restart the rolled-back
//!   content is still refused; a plugin file found holding it at start is
//!   replaced by the last good copy before anything loads;
//! - after `n` rollbacks of one file, its next reload waits
//!   `initial × 2^(n-1)` (capped at `max`), however often the file changes
//!   (within one run: the wait does not outlive a restart).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::last_good::{Disk, LedgerError, State};
use crate::plugin::Plugin;

/// When a new version is rolled back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RollbackPolicy {
    /// More traps than this during probation roll back.
    pub after_traps: u32,
    /// How long a new version is on probation.
    pub window: Duration,
    /// First wait before reloading a file after a rollback.
    pub backoff_initial: Duration,
    /// Longest such wait.
    pub backoff_max: Duration,
}

/// What a swap needs to be able to roll back: the policy and where bad
/// hashes are recorded.
#[derive(Debug, Clone)]
pub struct Rollback {
    /// When to roll back.
    pub policy: RollbackPolicy,
    /// Shared with the reloader, which consults it before loading.
    pub ledger: Arc<Ledger>,
}

/// A freshly swapped version under watch, with the version to go back to.
pub struct Probation {
    /// The last good version, kept in memory.
    pub previous: Arc<Plugin>,
    /// Traps since the swap.
    pub traps: u32,
    since: Instant,
    /// The policy and ledger.
    pub rollback: Rollback,
}

impl Probation {
    /// Probation starting now.
    pub fn new(previous: Arc<Plugin>, rollback: Rollback) -> Self {
        Probation {
            previous,
            traps: 0,
            since: Instant::now(),
            rollback,
        }
    }

    /// Counts a trap at `now`; true when the stage must roll back.
    pub fn trapped(&mut self, now: Instant) -> bool {
        if self.expired(now) {
            return false;
        }
        self.traps += 1;
        self.traps > self.rollback.policy.after_traps
    }

    /// Whether probation is over (the new version is now the good one).
    pub fn expired(&self, now: Instant) -> bool {
        now.duration_since(self.since) > self.rollback.policy.window
    }
}

/// Bad hashes and rollback history, shared by the pipeline thread (which
/// rolls back) and the reloader (which must not reload what was rolled back).
#[derive(Debug)]
pub struct Ledger {
    policy: RollbackPolicy,
    inner: Mutex<LedgerInner>,
    /// Where the ledger is kept; `None`: in memory only.
    disk: Option<Disk>,
}

#[derive(Debug, Default)]
struct LedgerInner {
    /// What is kept on disk: bad hashes, per-file history.
    state: State,
    /// Per file: when its last rollback happened in this run.
    last_rollback: HashMap<PathBuf, Instant>,
    /// Files a rollback rewrote with this content, until the reloader has
    /// seen the change (it is the version already running, not a deploy).
    restored: HashMap<PathBuf, String>,
}

impl Ledger {
    /// An empty ledger kept in memory only (tools, tests).
    pub fn new(policy: RollbackPolicy) -> Arc<Self> {
        Arc::new(Ledger {
            policy,
            inner: Mutex::new(LedgerInner::default()),
            disk: None,
        })
    }

    /// The ledger kept in `data_dir`, as the last run left it.
    pub fn open(policy: RollbackPolicy, data_dir: &Path) -> Result<Arc<Self>, LedgerError> {
        let disk = Disk::new(data_dir);
        let state = disk.load()?;
        Ok(Arc::new(Ledger {
            policy,
            inner: Mutex::new(LedgerInner {
                state,
                ..LedgerInner::default()
            }),
            disk: Some(disk),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LedgerInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn save(&self, state: &State) {
        if let Some(disk) = &self.disk
            && let Err(err) = disk.save(state)
        {
            tracing::error!(error = %err, "cannot record the rollback ledger");
        }
    }

    /// Records that the component at `path` with `sha256` was rolled back
    /// to `good`, and puts the last good file back at `path`.
    pub fn rolled_back(&self, path: &Path, sha256: &str, good: &str) {
        let mut inner = self.lock();
        inner.state.bad.insert(sha256.to_string());
        let record = inner.state.files.entry(path.to_path_buf()).or_default();
        record.rollbacks += 1;
        record.running = Some(good.to_string());
        if record.previous.as_deref() == Some(good) {
            record.previous = None;
        }
        inner
            .last_rollback
            .insert(path.to_path_buf(), Instant::now());
        let state = inner.state.clone();
        if let Some(disk) = &self.disk {
            match disk.restore(path, good) {
                Ok(true) => {
                    inner.restored.insert(path.to_path_buf(), good.to_string());
                    tracing::warn!(file = %path.display(), restored = %good,
                        "last good version put back on disk after the rollback");
                }
                Ok(false) => tracing::error!(file = %path.display(), good,
                    "no copy of the last good version: the file still holds the rolled-back one (refused at every load)"),
                Err(err) => tracing::error!(error = %err, "cannot put the last good version back"),
            }
        }
        drop(inner);
        self.save(&state);
    }

    /// Records that `path` now runs content `sha256` (at start, or after a
    /// swap) and keeps a copy of its `bytes` (and `.sig`) to restore.
    pub fn running(&self, path: &Path, sha256: &str, bytes: &[u8]) {
        let Some(disk) = &self.disk else { return };
        if let Err(err) = disk.keep_copy(path, sha256, bytes) {
            tracing::error!(error = %err, "cannot keep a copy of the running plugin version");
            return;
        }
        tracing::debug!(file = %path.display(), sha256, "rollback ledger: kept a copy of the running version");
        let mut inner = self.lock();
        let record = inner.state.files.entry(path.to_path_buf()).or_default();
        if record.running.as_deref() == Some(sha256) {
            return;
        }
        record.previous = record.running.replace(sha256.to_string());
        let state = inner.state.clone();
        drop(inner);
        self.save(&state);
    }

    /// Whether a rollback just rewrote `path` with `sha256` (forgotten once
    /// asked): that file event is the running version, not a deploy.
    pub fn take_restored(&self, path: &Path, sha256: &str) -> bool {
        let mut inner = self.lock();
        if inner.restored.get(path).map(String::as_str) == Some(sha256) {
            inner.restored.remove(path);
            return true;
        }
        false
    }

    /// At start, before anything loads: if the file at `path` (content
    /// `sha256`) was rolled back, puts the last good copy back; returns the
    /// content restored. Refuses when there is no good copy.
    pub fn check_on_start(&self, path: &Path, sha256: &str) -> Result<Option<String>, LedgerError> {
        if !self.is_bad(sha256) {
            return Ok(None);
        }
        let good = {
            let inner = self.lock();
            inner
                .state
                .files
                .get(path)
                .and_then(|r| r.running.clone())
                .filter(|g| !inner.state.bad.contains(g))
        };
        let refused = || LedgerError::NoGoodCopy {
            path: path.to_path_buf(),
            sha256: sha256.to_string(),
        };
        let (Some(good), Some(disk)) = (good, &self.disk) else {
            return Err(refused());
        };
        if !disk.restore(path, &good)? {
            return Err(refused());
        }
        tracing::warn!(file = %path.display(), bad = sha256, restored = %good,
            "plugin file held a rolled-back version: last good version put back before start");
        Ok(Some(good))
    }

    /// Whether this content was rolled back before.
    pub fn is_bad(&self, sha256: &str) -> bool {
        self.lock().state.bad.contains(sha256)
    }

    /// The earliest time `path` may be reloaded (`None`: now).
    pub fn not_before(&self, path: &Path) -> Option<Instant> {
        let inner = self.lock();
        let at = inner.last_rollback.get(path)?;
        let n = inner.state.files.get(path).map_or(1, |r| r.rollbacks);
        let factor = 1u32 << (n.saturating_sub(1)).min(20);
        let wait = self
            .policy
            .backoff_initial
            .saturating_mul(factor)
            .min(self.policy.backoff_max);
        Some(*at + wait)
    }

    /// The policy, for stages.
    pub fn policy(&self) -> RollbackPolicy {
        self.policy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RollbackPolicy {
        RollbackPolicy {
            after_traps: 2,
            window: Duration::from_secs(60),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(5),
        }
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let ledger = Ledger::new(policy());
        let path = Path::new("/p/v.wasm");
        assert!(ledger.not_before(path).is_none());
        let mut waits = Vec::new();
        for i in 0..5 {
            ledger.rolled_back(path, &format!("h{i}"), "good");
            let at = ledger.inner.lock().unwrap().last_rollback[path];
            waits.push(ledger.not_before(path).unwrap() - at);
        }
        let secs: Vec<u64> = waits.iter().map(|d| d.as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 5, 5]);
        assert!(ledger.is_bad("h3"));
        assert!(!ledger.is_bad("other"));
    }

    #[test]
    fn a_rollback_is_kept_on_disk_and_puts_the_last_good_file_back() {
        let data = tempfile::tempdir().unwrap();
        let plugins = tempfile::tempdir().unwrap();
        let path = plugins.path().join("validator.wasm");
        let sig = plugins.path().join("validator.wasm.sig");
        let (v1, v2) = (b"v1 bytes".as_slice(), b"v2 bytes".as_slice());
        let (h1, h2) = (halyard_trust::sha256_hex(v1), halyard_trust::sha256_hex(v2));
        let ledger = Ledger::open(policy(), data.path()).unwrap();
        std::fs::write(&path, v1).unwrap();
        std::fs::write(&sig, b"sig of v1").unwrap();
        ledger.running(&path, &h1, v1);
        std::fs::write(&path, v2).unwrap();
        std::fs::write(&sig, b"sig of v2").unwrap();
        ledger.running(&path, &h2, v2);
        ledger.rolled_back(&path, &h2, &h1);
        assert_eq!(std::fs::read(&path).unwrap(), v1, "last good file restored");
        assert_eq!(std::fs::read(&sig).unwrap(), b"sig of v1");
        assert!(ledger.take_restored(&path, &h1));
        assert!(!ledger.take_restored(&path, &h1), "asked once");
        // After a restart: still bad, and a file found holding it at start
        // gets the good copy back.
        let ledger = Ledger::open(policy(), data.path()).unwrap();
        assert!(ledger.is_bad(&h2));
        assert!(
            ledger.not_before(&path).is_none(),
            "no backoff across restarts"
        );
        std::fs::write(&path, v2).unwrap();
        assert_eq!(ledger.check_on_start(&path, &h2).unwrap(), Some(h1.clone()));
        assert_eq!(std::fs::read(&path).unwrap(), v1);
        assert_eq!(ledger.check_on_start(&path, &h1).unwrap(), None);
        // Only the copies named by the history are kept.
        let copies = std::fs::read_dir(data.path().join("rollback"))
            .unwrap()
            .count();
        assert_eq!(copies, 2, "v1's component and .sig");
        let other = plugins.path().join("other.wasm");
        assert!(matches!(
            ledger.check_on_start(&other, &h2),
            Err(LedgerError::NoGoodCopy { .. })
        ));
    }
}
