//! The licence history across restarts: `data_dir/licence.state`, sealed
//! with the host key (see `halyard_trust::licence::persisted`).
//!
//! Invariants:
//! - a restart continues the history the last run saved: a host in grace
//!   keeps its deadline, an expired host stays expired until a heartbeat
//!   succeeds or a newer vendor-signed token is in force;
//! - a missing, edited or foreign state file after an earlier run (the
//!   host key or the provenance counter already existed) restores the
//!   worst case the other records allow: failing since the last heartbeat
//!   the buffer recorded, or since the token was issued. That is never
//!   better than the true history, so deleting or editing the file cannot
//!   make an expired host valid;
//! - a token issued after the last recorded contact counts as contact with
//!   the vendor at its `issued_at` (the vendor signed it then);
//! - the clock is never taken to be earlier than the last save, so setting
//!   it back does not extend grace.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use halyard_trust::licence::persisted::{self, PersistedLicence};
use halyard_trust::licence::{Claims, LicenceTracker, TrackerConfig};
use halyard_trust::{KeyPair, PublicKey};

/// The state file's name in the data directory.
pub const STATE_FILE: &str = "licence.state";

/// Where the licence history is kept, and what else tells of an earlier run.
#[derive(Debug, Clone)]
pub struct StateStore {
    path: PathBuf,
    /// Signs what is saved; `None` reads only (`config check`).
    key: Option<Arc<KeyPair>>,
    public: PublicKey,
    host_id: String,
    /// The host ran here before (its key or provenance counter existed
    /// before this start).
    earlier_run: bool,
    /// The last successful heartbeat the buffer recorded, if known.
    last_heartbeat: Option<u64>,
}

/// What the store found at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restored {
    /// No earlier run: a fresh history starts now.
    FirstRun,
    /// The history the last run saved.
    Saved(PersistedLicence),
    /// An earlier run left no usable history (the reason says why): the
    /// worst case is assumed.
    Lost(String),
}

impl StateStore {
    /// A store for `run`, which saves with `key`.
    pub fn new(
        data_dir: &Path,
        host_id: &str,
        key: Arc<KeyPair>,
        earlier_run: bool,
        last_heartbeat: Option<u64>,
    ) -> StateStore {
        StateStore {
            path: data_dir.join(STATE_FILE),
            public: key.public_key(),
            key: Some(key),
            host_id: host_id.to_owned(),
            earlier_run,
            last_heartbeat,
        }
    }

    /// A store that only reads (for `config check`, which writes nothing).
    pub fn read_only(
        data_dir: &Path,
        host_id: &str,
        public: PublicKey,
        last_heartbeat: Option<u64>,
    ) -> StateStore {
        StateStore {
            path: data_dir.join(STATE_FILE),
            key: None,
            public,
            host_id: host_id.to_owned(),
            earlier_run: true,
            last_heartbeat,
        }
    }

    /// True if there was an earlier run in `data_dir`: its host key or its
    /// provenance counter exists. Call before the host key is created.
    pub fn earlier_run(data_dir: &Path) -> bool {
        data_dir.join(crate::provenance::HOST_KEY_FILE).exists()
            || data_dir.join(crate::provenance::SEQ_FILE).exists()
            || data_dir.join(STATE_FILE).exists()
    }

    /// Reads what the last run saved.
    pub fn restore(&self) -> Restored {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !self.earlier_run => {
                return Restored::FirstRun;
            }
            Err(e) => return Restored::Lost(format!("{}: {e}", self.path.display())),
        };
        match persisted::open(&text, &self.public) {
            Ok(saved) if saved.host_id == self.host_id => Restored::Saved(saved),
            Ok(saved) => Restored::Lost(format!(
                "saved for host {:?}, this is {:?}",
                saved.host_id, self.host_id
            )),
            Err(e) => Restored::Lost(e.to_string()),
        }
    }

    /// The tracker the restored history gives for `claims` at `now`, and
    /// the earliest time the clock may read (the last save).
    pub fn tracker(
        &self,
        restored: &Restored,
        claims: Claims,
        config: TrackerConfig,
        now: u64,
    ) -> (LicenceTracker, u64) {
        let issued = claims.issued_at;
        let (last_success, failing_since, floor) = match restored {
            Restored::FirstRun => return (LicenceTracker::licensed(claims, config, now), 0),
            Restored::Saved(s) if issued > s.last_success => {
                // A token issued after the last contact is contact with
                // the vendor at its issue time.
                (issued, s.failing_since.filter(|f| *f > issued), s.saved_at)
            }
            Restored::Saved(s) => (s.last_success, s.failing_since, s.saved_at),
            Restored::Lost(reason) => {
                // The worst case the other records allow: the last known
                // contact, failing ever since.
                let last = self.last_heartbeat.unwrap_or(0).max(issued);
                tracing::warn!(%reason, last_contact = last,
                    "licence history lost: grace counts from the last recorded contact");
                (last, Some(last), last)
            }
        };
        if now < floor {
            tracing::warn!(
                now,
                last_saved = floor,
                "the clock is earlier than the licence history: using the history's time"
            );
        }
        (
            LicenceTracker::restored(claims, config, last_success, failing_since),
            floor,
        )
    }

    /// Saves `tracker`'s history (temp file, fsync, rename; 0600). A store
    /// without a key saves nothing.
    pub fn save(
        &self,
        tracker: &LicenceTracker,
        token_sha256: &str,
        now: u64,
    ) -> std::io::Result<()> {
        let Some(key) = &self.key else {
            return Ok(());
        };
        let state = PersistedLicence {
            host_id: self.host_id.clone(),
            last_success: tracker.last_success(),
            failing_since: tracker.failing_since(),
            token_sha256: token_sha256.to_owned(),
            token_expires_at: tracker.claims().map_or(0, |c| c.expires_at),
            saved_at: now,
        };
        super::write_private(&self.path, persisted::seal(&state, key).as_bytes())
    }
}
