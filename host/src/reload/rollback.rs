//! Automatic rollback after a bad swap, quarantine by content hash, and the
//! backoff that keeps a crashing plugin from causing a reload storm.
//!
//! Invariants:
//! - a stage keeps the version it replaced for `window` after a swap
//!   ([`Probation`]); more than `after_traps` traps in that time restore it;
//! - a rolled-back component's SHA-256 is in the [`Ledger`] and is never
//!   loaded again; only different bytes at that path are;
//! - after `n` rollbacks of one file, its next reload waits
//!   `initial × 2^(n-1)` (capped at `max`), however often the file changes.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
}

#[derive(Debug, Default)]
struct LedgerInner {
    bad: HashSet<String>,
    /// Per file: rollbacks so far and when the last one happened.
    rollbacks: HashMap<PathBuf, (u32, Instant)>,
}

impl Ledger {
    /// An empty ledger.
    pub fn new(policy: RollbackPolicy) -> Arc<Self> {
        Arc::new(Ledger {
            policy,
            inner: Mutex::new(LedgerInner::default()),
        })
    }

    /// Records that the component at `path` with `sha256` was rolled back.
    pub fn rolled_back(&self, path: &Path, sha256: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.bad.insert(sha256.to_string());
        let entry = inner
            .rollbacks
            .entry(path.to_path_buf())
            .or_insert((0, Instant::now()));
        entry.0 += 1;
        entry.1 = Instant::now();
    }

    /// Whether this content was rolled back before.
    pub fn is_bad(&self, sha256: &str) -> bool {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.bad.contains(sha256)
    }

    /// The earliest time `path` may be reloaded (`None`: now).
    pub fn not_before(&self, path: &Path) -> Option<Instant> {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let (n, at) = inner.rollbacks.get(path)?;
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
            ledger.rolled_back(path, &format!("h{i}"));
            let at = ledger.inner.lock().unwrap().rollbacks[path].1;
            waits.push(ledger.not_before(path).unwrap() - at);
        }
        let secs: Vec<u64> = waits.iter().map(|d| d.as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 5, 5]);
        assert!(ledger.is_bad("h3"));
        assert!(!ledger.is_bad("other"));
    }
}
