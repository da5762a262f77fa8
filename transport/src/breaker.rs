//! The circuit breaker: stop hammering a hub that is down, probe it now and
//! then, and resume at full speed once it answers.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, broadcast};
use tokio::time::Instant;

/// When the breaker trips and how long it stays tripped.
///
/// An open circuit first waits `first_probe` before its probe; each failed
/// probe doubles the wait, up to `recovery_timeout`. So a blip is probed
/// again within about a second, and however long an outage lasts, the first
/// probe after the hub's return comes at most `recovery_timeout` later
/// (5 s by default) — one request per host per interval is all a down hub
/// gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failed attempts that open the circuit (0 is treated as 1).
    pub failure_threshold: u32,
    /// The longest an open circuit refuses attempts before letting one
    /// probe through: the cap of the growing probe interval.
    pub recovery_timeout: Duration,
    /// How long the circuit stays open the first time, before the first
    /// probe; doubled after each failed probe, capped by `recovery_timeout`.
    pub first_probe: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            recovery_timeout: Duration::from_secs(5),
            first_probe: Duration::from_secs(1),
        }
    }
}

impl BreakerConfig {
    /// How long the circuit stays open after `previous`, the last open
    /// interval of this outage (`None` when it just opened).
    fn next_interval(&self, previous: Option<Duration>) -> Duration {
        let next = previous.map_or(self.first_probe, |p| p.saturating_mul(2));
        next.min(self.recovery_timeout)
    }
}

/// Where the breaker is; exported as a metric and as lifecycle events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    /// Attempts flow normally.
    Closed,
    /// The hub looks down; no attempts until the recovery timeout passes.
    Open,
    /// One probe attempt decides between closing and reopening.
    HalfOpen,
}

impl BreakerState {
    /// The stable name used in metrics and in `breaker.<name>` lifecycle
    /// events.
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }

    fn to_u8(self) -> u8 {
        self as u8
    }

    pub(crate) fn from_u8(value: u8) -> Self {
        match value {
            1 => BreakerState::Open,
            2 => BreakerState::HalfOpen,
            _ => BreakerState::Closed,
        }
    }
}

/// One change of state, in the order it happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    /// The state that was left.
    pub from: BreakerState,
    /// The state that was entered.
    pub to: BreakerState,
}

/// Whether an attempt may go ahead now, and if not, what to wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Go ahead; `probe` marks the single half-open probe.
    Allowed { probe: bool },
    /// Open: nothing to do until this much time has passed.
    OpenFor(Duration),
    /// Half-open and another task holds the probe: wait for its outcome.
    ProbeBusy,
}

#[derive(Debug)]
struct Inner {
    state: BreakerState,
    consecutive_failures: u32,
    opened_at: Instant,
    /// How long the current (or last) open period lasts; `None` while
    /// closed, so the next opening starts from `first_probe` again.
    open_for: Option<Duration>,
    probe_in_flight: bool,
}

/// A three-state circuit breaker driven by [`tokio::time`], so paused-time
/// tests control it exactly.
///
/// Closed → Open after `failure_threshold` consecutive failures (or at once
/// on a [`trip`](Self::trip): the receiver refuses the sender) → HalfOpen
/// once the open interval has passed (`first_probe`, doubling per failed
/// probe up to `recovery_timeout`) → exactly one probe: success closes,
/// failure reopens and restarts the timer. The Open → HalfOpen move is made
/// lazily by the first [`state`](Self::state) or [`allow`](Self::allow) call
/// after the timeout; the delivery loop sleeps until exactly then, so with
/// batches waiting it happens on time.
///
/// Only connection-level failures count: a hub that answers "400 Bad
/// Request" is up, so callers report that as [`on_success`](Self::on_success).
#[derive(Debug)]
pub struct Breaker {
    config: BreakerConfig,
    inner: Mutex<Inner>,
    gauge: Arc<AtomicU8>,
    transitions: broadcast::Sender<Transition>,
    changed: Notify,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Self {
        let (transitions, _) = broadcast::channel(64);
        Self {
            config,
            inner: Mutex::new(Inner {
                state: BreakerState::Closed,
                consecutive_failures: 0,
                opened_at: Instant::now(),
                open_for: None,
                probe_in_flight: false,
            }),
            gauge: Arc::new(AtomicU8::new(BreakerState::Closed.to_u8())),
            transitions,
            changed: Notify::new(),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    /// The current state, after applying an expired recovery timeout.
    pub fn state(&self) -> BreakerState {
        let mut inner = self.lock();
        self.expire(&mut inner);
        inner.state
    }

    /// Failures since the last success; reset by any success.
    pub fn consecutive_failures(&self) -> u32 {
        self.lock().consecutive_failures
    }

    /// Every future state change, in order, for publishing `breaker.*`
    /// lifecycle events. A receiver that falls more than 64 changes behind
    /// gets `Lagged` and skips ahead; [`state`](Self::state) is always exact.
    pub fn subscribe(&self) -> broadcast::Receiver<Transition> {
        self.transitions.subscribe()
    }

    /// Asks to make one attempt now. In HalfOpen only the first caller gets
    /// `true` (the probe) until its outcome is reported, so a caller that
    /// gets `true` must report [`on_success`](Self::on_success) or
    /// [`on_failure`](Self::on_failure) (an abandoned probe counts as a
    /// failure); [`Delivery`](crate::Delivery) does this itself.
    pub fn allow(&self) -> bool {
        matches!(self.admit(), Admission::Allowed { .. })
    }

    /// Reports that an allowed attempt reached the hub and got an answer.
    pub fn on_success(&self) {
        let mut inner = self.lock();
        inner.consecutive_failures = 0;
        inner.probe_in_flight = false;
        inner.open_for = None;
        self.set_state(&mut inner, BreakerState::Closed);
        drop(inner);
        self.changed.notify_waiters();
    }

    /// Reports that an allowed attempt could not reach the hub or the hub
    /// failed (retryable).
    pub fn on_failure(&self) {
        let mut inner = self.lock();
        inner.consecutive_failures = inner.consecutive_failures.saturating_add(1);
        let reopen = match inner.state {
            BreakerState::Closed => {
                inner.consecutive_failures >= self.config.failure_threshold.max(1)
            }
            BreakerState::HalfOpen => true,
            // A straggler from before the circuit opened: the timer stands.
            BreakerState::Open => false,
        };
        if reopen {
            self.open(&mut inner);
        }
        drop(inner);
        self.changed.notify_waiters();
    }

    /// Opens the circuit now, whatever the failure count: the receiver
    /// answered, but refuses this sender (a rejected key, a wrong endpoint),
    /// so sending more batches before an operator acts only repeats the
    /// refusal. An already open circuit keeps its timer.
    pub fn trip(&self) {
        let mut inner = self.lock();
        inner.consecutive_failures = inner.consecutive_failures.saturating_add(1);
        if inner.state != BreakerState::Open {
            self.open(&mut inner);
        }
        drop(inner);
        self.changed.notify_waiters();
    }

    /// Enters Open with the next probe interval of this outage.
    fn open(&self, inner: &mut Inner) {
        inner.probe_in_flight = false;
        inner.opened_at = Instant::now();
        inner.open_for = Some(self.config.next_interval(inner.open_for));
        self.set_state(inner, BreakerState::Open);
    }

    /// Hands back the half-open probe slot of an attempt abandoned without
    /// an answer (shutdown mid-send), so another batch can probe.
    pub(crate) fn release_probe(&self) {
        let mut inner = self.lock();
        let was_probe = inner.state == BreakerState::HalfOpen && inner.probe_in_flight;
        inner.probe_in_flight = false;
        drop(inner);
        if was_probe {
            self.changed.notify_waiters();
        }
    }

    /// The admission decision behind [`allow`](Self::allow), with what to
    /// wait for when refused.
    pub(crate) fn admit(&self) -> Admission {
        let mut inner = self.lock();
        self.expire(&mut inner);
        match inner.state {
            BreakerState::Closed => Admission::Allowed { probe: false },
            BreakerState::Open => {
                let reopen_at = inner.opened_at + inner.open_for.unwrap_or_default();
                Admission::OpenFor(reopen_at.saturating_duration_since(Instant::now()))
            }
            BreakerState::HalfOpen if inner.probe_in_flight => Admission::ProbeBusy,
            BreakerState::HalfOpen => {
                inner.probe_in_flight = true;
                Admission::Allowed { probe: true }
            }
        }
    }

    /// Woken on every reported outcome, so tasks waiting on a busy probe can
    /// look again.
    pub(crate) fn changed(&self) -> &Notify {
        &self.changed
    }

    /// The lock-free copy of the state that [`TransportStats`](crate::TransportStats) reads.
    pub(crate) fn gauge(&self) -> Arc<AtomicU8> {
        Arc::clone(&self.gauge)
    }

    fn expire(&self, inner: &mut Inner) {
        if inner.state == BreakerState::Open
            && Instant::now() >= inner.opened_at + inner.open_for.unwrap_or_default()
        {
            inner.probe_in_flight = false;
            self.set_state(inner, BreakerState::HalfOpen);
        }
    }

    /// Changes state under the lock, so the gauge and the transition stream
    /// see changes in the order they happened.
    fn set_state(&self, inner: &mut Inner, to: BreakerState) {
        let from = inner.state;
        if from == to {
            return;
        }
        inner.state = to;
        self.gauge.store(to.to_u8(), Ordering::Relaxed);
        match to {
            BreakerState::Open => tracing::warn!(
                failures = inner.consecutive_failures,
                probe_in = ?inner.open_for.unwrap_or_default(),
                "transport circuit breaker opened"
            ),
            _ => tracing::info!(
                from = from.as_str(),
                to = to.as_str(),
                "transport circuit breaker"
            ),
        }
        // No receivers is fine: nobody is publishing lifecycle events.
        let _ = self.transitions.send(Transition { from, to });
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The critical sections cannot panic half-way, so a poisoned lock
        // still holds a consistent state.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}
