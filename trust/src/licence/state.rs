//! The licence state machine: valid → grace → expired, and back on renewal.
//!
//! ## Rules
//!
//! A licensed host starts **valid** (its token was just verified offline).
//! Grace starts at the *earlier* of:
//!
//! - the first failed heartbeat since the last successful one (the licence
//!   server was unreachable or refused), and
//! - `overdue_after` after the last success (or start) with no success
//!   since: a heartbeat task that is stuck, or a device whose network is
//!   down so long that no attempt completes, still ends up in grace.
//!
//! Grace lasts the token's `grace_hours`, or [`TrackerConfig::grace`]
//! (default 72 h). When it ends, the state is **expired**: the host keeps
//! accepting events into its buffer but holds them there. A successful
//! heartbeat at any time returns the host to valid (and a renewed token
//! replaces the claims), which releases the held events.
//!
//! Independently of heartbeats, the token's own `expires_at` is a hard end:
//! grace covers an unreachable licence server, not a licence that ran out.
//! In normal operation the server renews tokens long before they expire.
//!
//! **Dev** mode ([`DEV_MODE_ENV`]) needs no licence and never changes;
//! **invalid** means there is no usable token (the host refuses to start).
//!
//! Every method takes the time as a parameter (Unix seconds); the tracker
//! never reads a clock, so tests step through days of states without sleeping.

use std::time::Duration;

use super::{CLOCK_SKEW_LEEWAY_SECS, Claims, LicenceError};

/// The environment variable that turns on dev mode when set to `1` (or
/// `true`): run without a licence for local work. The host says so in its
/// log, `/health` and every batch's metadata; it is never on by default.
pub const DEV_MODE_ENV: &str = "HALYARD_DEV_MODE";

/// Default grace period when the licence server is unreachable.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(72 * 3600);

/// Default time without a successful heartbeat before grace starts on its
/// own: two default intervals (1 h each, ±15 % jitter) so one late
/// heartbeat does not trigger it.
pub const DEFAULT_OVERDUE_AFTER: Duration = Duration::from_secs(2 * 3600 + 20 * 60);

/// True if `value` (the content of [`DEV_MODE_ENV`]) asks for dev mode:
/// `1` or `true` (any case). Anything else, including `0`, is off, so a
/// typo never unlicenses a production host.
pub fn dev_mode_requested(value: Option<&str>) -> bool {
    value.is_some_and(|v| {
        let v = v.trim();
        v == "1" || v.eq_ignore_ascii_case("true")
    })
}

/// [`dev_mode_requested`] for the process environment.
pub fn dev_mode_from_env() -> bool {
    dev_mode_requested(std::env::var(DEV_MODE_ENV).ok().as_deref())
}

/// The licence state at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LicenceState {
    /// Licensed and in contact with the licence server: ship.
    Valid,
    /// The licence server has not been reached since `since`; shipping
    /// continues until `until` (Unix seconds), when the state becomes
    /// expired unless a heartbeat succeeds first.
    Grace {
        /// When grace started.
        since: u64,
        /// When grace ends.
        until: u64,
    },
    /// The grace period or the token ran out at `since`: accept events but
    /// hold them in the buffer until a heartbeat succeeds or a valid token
    /// arrives.
    Expired {
        /// When the licence stopped being usable.
        since: u64,
    },
    /// No usable licence: the host must not start (or, for a bad renewed
    /// token, keeps the previous one).
    Invalid(LicenceError),
    /// Dev mode: no licence, said loudly everywhere.
    Dev,
}

impl LicenceState {
    /// The state's name as shown in `/health`, logs and lifecycle events.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Valid => "valid",
            Self::Grace { .. } => "grace",
            Self::Expired { .. } => "expired",
            Self::Invalid(_) => "invalid",
            Self::Dev => "dev",
        }
    }

    /// True if batches may leave the buffer in this state; false means
    /// events are kept (never dropped) until it changes.
    pub fn ships(&self) -> bool {
        matches!(self, Self::Valid | Self::Grace { .. } | Self::Dev)
    }
}

/// Knobs of the state machine that are the host's to choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrackerConfig {
    /// Grace period when the token does not set `grace_hours`.
    pub grace: Duration,
    /// Time without a successful heartbeat after which grace starts even if
    /// no failure was recorded. Should exceed the heartbeat interval plus
    /// its jitter.
    pub overdue_after: Duration,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self {
            grace: DEFAULT_GRACE,
            overdue_after: DEFAULT_OVERDUE_AFTER,
        }
    }
}

/// What the tracker's states are computed from.
#[derive(Debug, Clone)]
enum Basis {
    Dev,
    Licensed(Claims),
    Invalid(LicenceError),
}

/// Tracks the licence state from verified claims and heartbeat outcomes.
///
/// Feed it [`heartbeat_succeeded`](Self::heartbeat_succeeded),
/// [`heartbeat_failed`](Self::heartbeat_failed) and
/// [`renew`](Self::renew); ask it [`state`](Self::state) and
/// [`next_change`](Self::next_change) (when to look again, e.g. to emit the
/// "licence in grace/expired" lifecycle event on time without polling).
#[derive(Debug, Clone)]
pub struct LicenceTracker {
    /// Claims, dev mode or the reason there is no licence.
    basis: Basis,
    /// Grace and overdue spans.
    config: TrackerConfig,
    /// Last successful heartbeat, or the start: the reference for "overdue".
    last_success: u64,
    /// First failed heartbeat after `last_success`, if any.
    failing_since: Option<u64>,
}

impl LicenceTracker {
    /// A host licensed by `claims` (already verified with
    /// [`super::verify`]) that started at `started_at`.
    pub fn licensed(claims: Claims, config: TrackerConfig, started_at: u64) -> Self {
        Self {
            basis: Basis::Licensed(claims),
            config,
            last_success: started_at,
            failing_since: None,
        }
    }

    /// A host licensed by `claims` whose heartbeat history was persisted
    /// by an earlier run: `last_success` (or that run's start) and the
    /// first failure since, if any. A restart continues the history
    /// instead of starting a fresh one, so grace keeps its original
    /// deadline and an expired host stays expired until a heartbeat
    /// succeeds or a renewed token arrives.
    pub fn restored(
        claims: Claims,
        config: TrackerConfig,
        last_success: u64,
        failing_since: Option<u64>,
    ) -> Self {
        Self {
            basis: Basis::Licensed(claims),
            config,
            last_success,
            failing_since: failing_since.filter(|f| *f >= last_success),
        }
    }

    /// The last successful heartbeat (or the start of the history), for
    /// persisting.
    pub fn last_success(&self) -> u64 {
        self.last_success
    }

    /// The first failed heartbeat since [`last_success`](Self::last_success),
    /// for persisting.
    pub fn failing_since(&self) -> Option<u64> {
        self.failing_since
    }

    /// A host in dev mode: always [`LicenceState::Dev`].
    pub fn dev() -> Self {
        Self {
            basis: Basis::Dev,
            config: TrackerConfig::default(),
            last_success: 0,
            failing_since: None,
        }
    }

    /// A host whose token failed verification; [`LicenceState::Invalid`]
    /// until [`renew`](Self::renew) supplies valid claims.
    pub fn invalid(reason: LicenceError, config: TrackerConfig, at: u64) -> Self {
        Self {
            basis: Basis::Invalid(reason),
            config,
            last_success: at,
            failing_since: None,
        }
    }

    /// The claims in force, if licensed.
    pub fn claims(&self) -> Option<&Claims> {
        match &self.basis {
            Basis::Licensed(c) => Some(c),
            _ => None,
        }
    }

    /// The grace period in force: the token's `grace_hours`, else the config.
    pub fn grace(&self) -> Duration {
        self.claims()
            .and_then(|c| c.grace_hours)
            .map_or(self.config.grace, |h| {
                Duration::from_secs(u64::from(h) * 3600)
            })
    }

    /// A heartbeat got a success answer at `at`: grace (or expiry by grace)
    /// ends.
    pub fn heartbeat_succeeded(&mut self, at: u64) {
        self.last_success = self.last_success.max(at);
        self.failing_since = None;
    }

    /// A heartbeat failed at `at` (after its retries, or on each retry: only
    /// the first failure since the last success counts).
    pub fn heartbeat_failed(&mut self, at: u64) {
        if self.failing_since.is_none() && at >= self.last_success {
            self.failing_since = Some(at);
        }
    }

    /// Replaces the claims with a renewed token's (verified by the caller).
    /// Dev mode stays dev mode.
    pub fn renew(&mut self, claims: Claims) {
        if !matches!(self.basis, Basis::Dev) {
            self.basis = Basis::Licensed(claims);
        }
    }

    /// When grace starts (or started) given the heartbeats so far.
    fn grace_start(&self) -> u64 {
        let overdue = self
            .last_success
            .saturating_add(self.config.overdue_after.as_secs());
        self.failing_since.map_or(overdue, |f| f.min(overdue))
    }

    /// The state at `now` (Unix seconds).
    pub fn state(&self, now: u64) -> LicenceState {
        let claims = match &self.basis {
            Basis::Dev => return LicenceState::Dev,
            Basis::Invalid(reason) => return LicenceState::Invalid(reason.clone()),
            Basis::Licensed(claims) => claims,
        };
        if now.saturating_add(CLOCK_SKEW_LEEWAY_SECS) < claims.issued_at {
            return LicenceState::Invalid(LicenceError::NotYetValid {
                issued_at: claims.issued_at,
                now,
            });
        }
        let start = self.grace_start();
        let grace_end = start
            .saturating_add(self.grace().as_secs())
            .min(claims.expires_at);
        if now >= claims.expires_at || now >= grace_end {
            return LicenceState::Expired { since: grace_end };
        }
        if now < start {
            LicenceState::Valid
        } else {
            LicenceState::Grace {
                since: start,
                until: grace_end,
            }
        }
    }

    /// The first instant after `now` at which [`state`](Self::state) will
    /// differ, assuming no further heartbeat outcome is recorded; `None` if
    /// it never changes on its own (dev, invalid, expired).
    pub fn next_change(&self, now: u64) -> Option<u64> {
        let Basis::Licensed(claims) = &self.basis else {
            return None;
        };
        let start = self.grace_start();
        let mut candidates = [
            claims.issued_at.saturating_sub(CLOCK_SKEW_LEEWAY_SECS),
            start,
            start.saturating_add(self.grace().as_secs()),
            claims.expires_at,
        ];
        candidates.sort_unstable();
        let current = self.state(now);
        candidates
            .into_iter()
            .filter(|&t| t > now)
            .find(|&t| self.state(t) != current)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Features, Scope};
    use super::*;

    const H: u64 = 3600;
    const T0: u64 = 1_795_000_000;

    fn claims(grace_hours: Option<u32>) -> Claims {
        Claims {
            licensee: "Acme".to_owned(),
            scope: Scope::default(),
            issued_at: T0,
            expires_at: T0 + 30 * 24 * H,
            features: Features::default(),
            grace_hours,
        }
    }

    fn tracker() -> LicenceTracker {
        LicenceTracker::licensed(claims(None), TrackerConfig::default(), T0)
    }

    #[test]
    fn grace_starts_at_the_first_failure_and_ends_on_time() {
        let mut t = tracker();
        t.heartbeat_succeeded(T0 + H);
        assert_eq!(t.state(T0 + 2 * H), LicenceState::Valid);
        t.heartbeat_failed(T0 + 2 * H);
        t.heartbeat_failed(T0 + 3 * H); // later failures do not move the start
        let grace = LicenceState::Grace {
            since: T0 + 2 * H,
            until: T0 + 74 * H,
        };
        assert_eq!(t.state(T0 + 2 * H), grace);
        assert_eq!(t.next_change(T0 + 2 * H), Some(T0 + 74 * H));
        assert_eq!(t.state(T0 + 74 * H - 1), grace);
        assert_eq!(
            t.state(T0 + 74 * H),
            LicenceState::Expired { since: T0 + 74 * H }
        );
        assert!(!t.state(T0 + 74 * H).ships());
        assert_eq!(t.next_change(T0 + 74 * H), None);
        // The server comes back: valid again, events are released.
        t.heartbeat_succeeded(T0 + 80 * H);
        assert_eq!(t.state(T0 + 80 * H), LicenceState::Valid);
    }

    #[test]
    fn silence_alone_starts_grace_after_overdue_after() {
        let t = tracker();
        let overdue = T0 + DEFAULT_OVERDUE_AFTER.as_secs();
        assert_eq!(t.state(overdue - 1), LicenceState::Valid);
        assert_eq!(t.next_change(T0), Some(overdue));
        assert_eq!(
            t.state(overdue),
            LicenceState::Grace {
                since: overdue,
                until: overdue + 72 * H
            }
        );
    }

    #[test]
    fn the_tokens_grace_hours_override_the_default() {
        let mut t = LicenceTracker::licensed(claims(Some(1)), TrackerConfig::default(), T0);
        assert_eq!(t.grace(), Duration::from_secs(H));
        t.heartbeat_failed(T0 + 10);
        assert_eq!(
            t.state(T0 + 10 + H),
            LicenceState::Expired { since: T0 + 10 + H }
        );
    }

    #[test]
    fn token_expiry_is_a_hard_end_even_in_grace() {
        let mut t = tracker();
        let end = T0 + 30 * 24 * H;
        t.heartbeat_succeeded(end - 2 * H);
        t.heartbeat_failed(end - H);
        assert_eq!(
            t.state(end - 1),
            LicenceState::Grace {
                since: end - H,
                until: end
            }
        );
        assert_eq!(t.state(end), LicenceState::Expired { since: end });
        // Without failures too: a valid host expires with its token.
        let mut t = tracker();
        t.heartbeat_succeeded(end - 10);
        assert_eq!(t.next_change(end - 10), Some(end));
        assert_eq!(t.state(end), LicenceState::Expired { since: end });
        // A renewed token brings it back.
        let mut renewed = claims(None);
        renewed.expires_at = end + 30 * 24 * H;
        t.renew(renewed);
        t.heartbeat_succeeded(end + 5);
        assert_eq!(t.state(end + 5), LicenceState::Valid);
    }

    #[test]
    fn a_clock_before_issue_is_invalid_until_the_token_starts() {
        let t = tracker();
        let early = T0 - CLOCK_SKEW_LEEWAY_SECS - 100;
        assert!(matches!(
            t.state(early),
            LicenceState::Invalid(LicenceError::NotYetValid { .. })
        ));
        assert_eq!(t.next_change(early), Some(T0 - CLOCK_SKEW_LEEWAY_SECS));
    }

    #[test]
    fn dev_and_invalid_never_change_on_their_own() {
        let mut dev = LicenceTracker::dev();
        dev.renew(claims(None));
        assert_eq!(dev.state(T0), LicenceState::Dev);
        assert!(dev.state(T0).ships());
        assert_eq!(dev.next_change(T0), None);

        let mut bad =
            LicenceTracker::invalid(LicenceError::BadSignature, TrackerConfig::default(), T0);
        assert_eq!(
            bad.state(T0),
            LicenceState::Invalid(LicenceError::BadSignature)
        );
        assert_eq!(bad.state(T0).name(), "invalid");
        assert_eq!(bad.next_change(T0), None);
        bad.renew(claims(None));
        assert_eq!(bad.state(T0 + 1), LicenceState::Valid);
    }

    #[test]
    fn a_stale_failure_report_does_not_start_grace() {
        let mut t = tracker();
        t.heartbeat_succeeded(T0 + 2 * H);
        t.heartbeat_failed(T0 + H); // an answer that arrived out of order
        assert_eq!(t.state(T0 + 2 * H + 1), LicenceState::Valid);
    }

    #[test]
    fn dev_mode_is_explicit() {
        for on in ["1", "true", "TRUE", " 1 "] {
            assert!(dev_mode_requested(Some(on)), "{on}");
        }
        for off in ["", "0", "false", "yes please", "2"] {
            assert!(!dev_mode_requested(Some(off)), "{off}");
        }
        assert!(!dev_mode_requested(None));
    }
}
