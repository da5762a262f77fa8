//! The licence the host runs under: checked at start, kept fresh by the
//! heartbeat, and obeyed by the shipper.
//!
//! Invariants:
//! - the host starts only with a token that verifies now (signature by a
//!   configured vendor key, time, scope), or in dev mode
//!   ([`DEV_MODE_ENV`]`=1`), which it says in its log, `/health` and every
//!   batch;
//! - the token and the API key are never logged: errors name what is wrong
//!   with a token, never its text;
//! - the state is published on a `watch` channel: valid / grace / expired /
//!   dev. When it does not ship (expired) the shipper holds batches in the
//!   buffer; nothing is dropped, and a successful heartbeat or a renewed
//!   token releases them;
//! - a renewed token is verified before use and persisted to
//!   `data_dir/licence.token` (0600), which a restart prefers over an
//!   older configured token and uses when none is configured;
//! - the heartbeat history (last success, first failure since) is saved in
//!   `data_dir/licence.state`, sealed with the host key, after every change
//!   and restored at start ([`persist`]): a restart never resets grace or
//!   expiry.
//!
//! Time comes from an injected [`Clock`] (Unix seconds) so the state machine
//! is tested without waiting hours.

pub mod features;
pub mod heartbeat;
pub mod persist;
pub mod stored_usage;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use halyard_trust::PublicKey;
use halyard_trust::licence::{
    self, Claims, HostIdentity, LicenceError, LicenceState, LicenceTracker, Token, TrackerConfig,
};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::config::LicenceSection;
use crate::lifecycle::{Lifecycle, new_correlation_id};
use persist::{Restored, StateStore};

pub use halyard_trust::licence::DEV_MODE_ENV;

/// The file a renewed token is persisted to, in the data directory.
pub const RENEWED_TOKEN_FILE: &str = "licence.token";

/// The current time in Unix seconds; injected so tests control it.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The wall clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    })
}

/// Why the host refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum LicenceStartError {
    /// No token in the config (and no renewed one in the data directory).
    #[error(
        "no licence: set [licence] token or token_file, or {DEV_MODE_ENV}=1 to run unlicensed for local work"
    )]
    Missing,
    /// The token file could not be read.
    #[error("cannot read licence token file {path}: {source}")]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A configured vendor key does not parse.
    #[error("licence.public_keys[{index}] is not an ed25519:<base64> key")]
    BadKey {
        /// Its position in the list.
        index: usize,
    },
    /// The token does not verify; the reason never quotes the token.
    #[error("licence refused: {0}")]
    Refused(#[from] LicenceError),
    /// The configured plugins are outside the licence's features.
    #[error("licence: {0}")]
    Features(#[from] features::FeatureRefusal),
}

/// The licence state of a running host, shared by the heartbeat, the
/// shipper, `/health` and the batch encoder.
pub struct Licence {
    tracker: Mutex<LicenceTracker>,
    state: watch::Sender<LicenceState>,
    /// Wakes the timer task when a heartbeat outcome moved the next change.
    changed: Notify,
    clock: Clock,
    trusted: Vec<PublicKey>,
    identity: HostIdentity,
    /// Where a renewed token is persisted; `None` in dev mode.
    token_path: Option<PathBuf>,
    lifecycle: Option<Lifecycle>,
    /// Links the grace/expired/valid events of one outage.
    episode: Mutex<String>,
    /// Where the heartbeat history is saved; `None` in dev mode and tests.
    store: Option<StateStore>,
    /// SHA-256 of the token in force, saved with the history.
    token_sha256: Mutex<String>,
}

impl std::fmt::Debug for Licence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Licence")
            .field("state", &*self.state.borrow())
            .finish_non_exhaustive()
    }
}

impl Licence {
    /// Dev mode: no licence needed, said loudly.
    pub fn dev(lifecycle: Option<Lifecycle>) -> Arc<Licence> {
        tracing::warn!(
            env = DEV_MODE_ENV,
            "DEV MODE: running WITHOUT a licence; every batch is marked \"licence\":\"dev\". Never use in production"
        );
        Arc::new(Self::with(
            LicenceTracker::dev(),
            system_clock(),
            Vec::new(),
            HostIdentity {
                host_id: String::new(),
                fleet: None,
            },
            None,
            lifecycle,
        ))
    }

    /// [`Licence::start`] without a saved history: every start is a first
    /// start (tests and tools that keep no data directory state).
    pub fn start(
        section: &LicenceSection,
        host_id: &str,
        data_dir: &Path,
        clock: Clock,
        lifecycle: Option<Lifecycle>,
    ) -> Result<Arc<Licence>, LicenceStartError> {
        Self::start_with(section, host_id, data_dir, clock, lifecycle, None)
    }

    /// Verifies the configured token (or a renewed one persisted in
    /// `data_dir`) at `clock()`; refuses to start otherwise. With a
    /// `store`, the heartbeat history the last run saved is restored (and
    /// saved from now on), so the state continues where it was.
    pub fn start_with(
        section: &LicenceSection,
        host_id: &str,
        data_dir: &Path,
        clock: Clock,
        lifecycle: Option<Lifecycle>,
        store: Option<StateStore>,
    ) -> Result<Arc<Licence>, LicenceStartError> {
        let trusted = section
            .public_keys
            .iter()
            .enumerate()
            .filter(|(_, k)| !k.trim().is_empty())
            .map(|(index, k)| {
                k.trim()
                    .parse::<PublicKey>()
                    .map_err(|_| LicenceStartError::BadKey { index })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let identity = HostIdentity {
            host_id: host_id.to_owned(),
            fleet: section.fleet.clone(),
        };
        let now = clock();
        let configured = match (&section.token, &section.token_file) {
            (Some(t), _) if !t.trim().is_empty() => Some(Token::new(t.clone())),
            (_, Some(path)) => Some(Token::new(std::fs::read_to_string(path).map_err(
                |source| LicenceStartError::TokenFile {
                    path: path.clone(),
                    source,
                },
            )?)),
            _ => None,
        };
        let restored = store.as_ref().map(StateStore::restore);
        // The clock never reads earlier than the last saved history.
        let floor = match &restored {
            Some(Restored::Saved(s)) => s.saved_at,
            _ => 0,
        };
        let now = now.max(floor);
        let token_path = data_dir.join(RENEWED_TOKEN_FILE);
        let renewed = std::fs::read_to_string(&token_path)
            .ok()
            .map(|t| Token::new(t.trim().to_owned()))
            .and_then(|t| {
                licence::verify(t.expose(), &trusted, &identity, now)
                    .ok()
                    .map(|c| (c, t))
            });
        let (claims, token) = match (configured, renewed) {
            (None, None) => return Err(LicenceStartError::Missing),
            (Some(t), renewed) => match licence::verify(t.expose(), &trusted, &identity, now) {
                Ok(c) => match renewed {
                    Some(r) if r.0.expires_at > c.expires_at => r,
                    _ => (c, t),
                },
                Err(e) => renewed.ok_or(e)?,
            },
            (None, Some(r)) => r,
        };
        tracing::info!(licensee = %claims.licensee, expires_at = claims.expires_at,
            "licence verified");
        let config = tracker_config(section);
        let (tracker, floor) = match (&store, &restored) {
            (Some(store), Some(restored)) => store.tracker(restored, claims, config, now),
            _ => (LicenceTracker::licensed(claims, config, now), 0),
        };
        let inner = clock;
        let clock: Clock = Arc::new(move || inner().max(floor));
        let mut licence = Self::with(
            tracker,
            clock,
            trusted,
            identity,
            Some(token_path),
            lifecycle,
        );
        *licence
            .token_sha256
            .get_mut()
            .unwrap_or_else(|e| e.into_inner()) =
            halyard_trust::sha256_hex(token.expose().as_bytes());
        licence.store = store;
        licence.save();
        // A restart in grace or expired says so at once, with the deadline
        // it continues.
        let state = licence.state();
        if state != LicenceState::Valid {
            licence.announce(&state);
        }
        Ok(Arc::new(licence))
    }

    /// Saves the heartbeat history, if there is a store; a failure is
    /// logged (the next change tries again).
    fn save(&self) {
        let Some(store) = &self.store else {
            return;
        };
        let sha = self
            .token_sha256
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let tracker = self.tracker().clone();
        if let Err(error) = store.save(&tracker, &sha, (self.clock)()) {
            tracing::error!(%error, "cannot save the licence state; a restart would assume the worst");
        }
    }

    /// The state `run` would be in now, as one line for `config check`.
    pub fn verdict(&self) -> String {
        match self.state() {
            LicenceState::Valid => "valid".to_owned(),
            LicenceState::Grace { since, until } => format!(
                "grace: the licence server has not answered since {since}; shipping until {until} (Unix seconds)"
            ),
            LicenceState::Expired { since } => format!(
                "expired since {since} (Unix seconds): `run` would start but hold events in the buffer until a heartbeat succeeds or a renewed token arrives"
            ),
            other => other.name().to_owned(),
        }
    }

    fn with(
        tracker: LicenceTracker,
        clock: Clock,
        trusted: Vec<PublicKey>,
        identity: HostIdentity,
        token_path: Option<PathBuf>,
        lifecycle: Option<Lifecycle>,
    ) -> Licence {
        let state = tracker.state(clock());
        Licence {
            tracker: Mutex::new(tracker),
            state: watch::Sender::new(state),
            changed: Notify::new(),
            clock,
            trusted,
            identity,
            token_path,
            lifecycle,
            episode: Mutex::new(new_correlation_id()),
            store: None,
            token_sha256: Mutex::new(String::new()),
        }
    }

    fn tracker(&self) -> MutexGuard<'_, LicenceTracker> {
        self.tracker.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The state as last published.
    pub fn state(&self) -> LicenceState {
        self.state.borrow().clone()
    }

    /// Follows the state (the shipper waits on it while expired).
    pub fn subscribe(&self) -> watch::Receiver<LicenceState> {
        self.state.subscribe()
    }

    /// The claims in force, if licensed.
    pub fn claims(&self) -> Option<Claims> {
        self.tracker().claims().cloned()
    }

    /// Checks the plugins `config` names against the licence's features;
    /// dev mode and an unlicensed state allow everything.
    pub fn check_plugins(
        &self,
        config: &crate::config::HostConfig,
    ) -> Result<(), features::FeatureRefusal> {
        let Some(claims) = self.claims() else {
            return Ok(());
        };
        let plugins: Vec<_> = crate::reload::swap::targets(config)
            .into_iter()
            .map(|t| (t.role, t.key.kind))
            .collect();
        features::check(&claims.features, &plugins)
    }

    /// A heartbeat got a success answer, perhaps with a renewed token.
    pub fn heartbeat_succeeded(&self, renewed: Option<Token>) {
        let now = (self.clock)();
        if let Some(token) = renewed {
            self.renew(&token, now);
        }
        self.tracker().heartbeat_succeeded(now);
        self.save();
        self.refresh();
        self.changed.notify_one();
    }

    /// A heartbeat attempt failed.
    pub fn heartbeat_failed(&self) {
        let first = {
            let mut tracker = self.tracker();
            let before = tracker.failing_since();
            tracker.heartbeat_failed((self.clock)());
            before != tracker.failing_since()
        };
        if first {
            self.save();
        }
        self.refresh();
        self.changed.notify_one();
    }

    /// Verifies and installs a renewed token; a bad one is logged (never
    /// shown) and ignored, keeping the current licence.
    fn renew(&self, token: &Token, now: u64) {
        match licence::verify(token.expose(), &self.trusted, &self.identity, now) {
            Ok(claims) => {
                tracing::info!(expires_at = claims.expires_at, "licence renewed");
                self.tracker().renew(claims);
                *self.token_sha256.lock().unwrap_or_else(|e| e.into_inner()) =
                    halyard_trust::sha256_hex(token.expose().as_bytes());
                if let Some(path) = &self.token_path
                    && let Err(error) = write_private(path, token.expose().as_bytes())
                {
                    tracing::error!(%error, "cannot persist the renewed licence token");
                }
            }
            Err(error) => {
                tracing::warn!(%error, "renewed licence token refused; keeping the current one")
            }
        }
    }

    /// Recomputes the state at `clock()` and publishes it (with a lifecycle
    /// event) if it changed.
    pub fn refresh(&self) {
        let now = (self.clock)();
        let next = self.tracker().state(now);
        let changed = self.state.send_if_modified(|current| {
            if current.name() == next.name() && *current == next {
                return false;
            }
            *current = next.clone();
            true
        });
        if changed {
            self.announce(&next);
        }
    }

    /// Logs `next` and publishes it as a lifecycle event (`licence.grace`
    /// with `since`/`until`, `licence.expired` with `since`, …).
    fn announce(&self, next: &LicenceState) {
        let kind = format!("licence.{}", next.name());
        let payload = match next {
            LicenceState::Grace { since, until } => {
                serde_json::json!({"since": since, "until": until})
            }
            LicenceState::Expired { since } => {
                serde_json::json!({"since": since, "held": "events stay in the buffer until the licence is valid again"})
            }
            _ => serde_json::json!({}),
        };
        match next {
            LicenceState::Valid => tracing::info!("licence valid: shipping"),
            LicenceState::Grace { until, .. } => {
                tracing::warn!(until, "licence server unreachable: grace period")
            }
            LicenceState::Expired { .. } => {
                tracing::error!("licence expired: events are held in the buffer, not shipped")
            }
            other => tracing::warn!(state = other.name(), "licence state changed"),
        }
        let mut episode = self.episode.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(lifecycle) = &self.lifecycle {
            lifecycle.emit(&kind, &episode, payload);
        }
        if *next == LicenceState::Valid {
            *episode = new_correlation_id();
        }
    }

    /// Publishes state changes that happen by the passage of time (grace
    /// starting, grace running out) on time, until `stop`.
    pub async fn watch_time(self: Arc<Self>, stop: CancellationToken) {
        loop {
            self.refresh();
            let now = (self.clock)();
            let wait = self
                .tracker()
                .next_change(now)
                .map_or(Duration::from_secs(3600), |t| {
                    Duration::from_secs(t.saturating_sub(now))
                });
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.changed.notified() => {}
                _ = stop.cancelled() => return,
            }
        }
    }
}

/// Grace and "overdue" from the config: overdue after two intervals plus
/// their jitter, so one late heartbeat never starts grace.
fn tracker_config(section: &LicenceSection) -> TrackerConfig {
    let secs = |s: f64| Duration::try_from_secs_f64(s).unwrap_or(Duration::MAX);
    TrackerConfig {
        grace: secs(section.grace_hours * 3600.0),
        overdue_after: secs(section.heartbeat_interval_s * 2.0 * 1.15 + 1.0),
    }
}

/// Writes `bytes` to `path` owner-only (temp file, fsync, rename), so a
/// crash leaves the old file or the new one, never half of one.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests;
