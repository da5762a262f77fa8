//! Usage accounting for the licence heartbeat.
//!
//! ## Invariant: every count is reported exactly once
//!
//! The host adds to a [`UsageWindow`] from any thread. The heartbeat takes a
//! [`UsageWindow::snapshot`], sends it, and only if the licence server
//! answered with success calls [`UsageWindow::commit`] with that same
//! snapshot, which subtracts exactly the snapshot's counters. Hence:
//!
//! - counts added while a send is in flight stay in the window for the next
//!   heartbeat (they were not in the snapshot, so are not subtracted);
//! - a failed send commits nothing, so the next snapshot still holds the
//!   whole period since the last success, plus whatever came since;
//! - a snapshot can be committed at most once: each snapshot carries the
//!   window's sequence number `seq`, a commit bumps it, and committing a
//!   snapshot whose `seq` is stale is refused ([`UsageError::Stale`]).
//!
//! On the wire, reports with the same `seq` are *cumulative*: a later one
//! contains everything an earlier one did. A server that saw a report whose
//! answer was lost (a timeout after it counted) keeps only the last report
//! per `(host, seq)` and so never double-counts. `seq` restarts at 0 when
//! the host restarts; a server should key on a boot id as well (the
//! heartbeat payload is the host's to extend).
//!
//! Gauges (buffer depth, uptime) are last values, not sums: they are
//! reported as they are and never subtracted.
//!
//! ## Timing
//!
//! [`heartbeat_delay`] spreads heartbeats ±15 % around the interval so a
//! fleet started together does not call in together. Retries after a failed
//! heartbeat should use `halyard_transport::Backoff` with its default
//! `RetryConfig` (1 s doubling to a 60 s cap, full jitter), the same curve
//! batch delivery uses; this crate does not duplicate it.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

/// The default heartbeat interval.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(3600);

/// Heartbeat jitter: each delay is the interval × a uniform factor in
/// `[1 - JITTER, 1 + JITTER]`.
pub const JITTER: f64 = 0.15;

/// Why a commit was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UsageError {
    /// The snapshot belongs to a window period that was already committed:
    /// committing it again would subtract its counts twice.
    #[error("usage snapshot {snapshot} is stale (window is at {current}); not committed")]
    Stale {
        /// The snapshot's `seq`.
        snapshot: u64,
        /// The window's current `seq`.
        current: u64,
    },
}

/// One event counter, per event kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    /// Events that entered the pipeline (decoded or produced by a source).
    Received,
    /// Events committed to the buffer.
    Accepted,
    /// Events a validator rejected (dead-lettered).
    Rejected,
    /// Events dropped: by privacy, by buffer overflow, by a failure policy.
    Dropped,
    /// Events the hub acknowledged.
    Delivered,
}

/// The counters of one event kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventCounts {
    /// See [`Counter::Received`]; `"in"` on the wire.
    #[serde(rename = "in")]
    pub received: u64,
    /// See [`Counter::Accepted`].
    pub accepted: u64,
    /// See [`Counter::Rejected`].
    pub rejected: u64,
    /// See [`Counter::Dropped`].
    pub dropped: u64,
    /// See [`Counter::Delivered`].
    pub delivered: u64,
}

impl EventCounts {
    fn get_mut(&mut self, counter: Counter) -> &mut u64 {
        match counter {
            Counter::Received => &mut self.received,
            Counter::Accepted => &mut self.accepted,
            Counter::Rejected => &mut self.rejected,
            Counter::Dropped => &mut self.dropped,
            Counter::Delivered => &mut self.delivered,
        }
    }

    fn is_zero(&self) -> bool {
        *self == Self::default()
    }

    /// Subtracts `sent`; saturating, though within one `seq` counters only
    /// grow, so the snapshot is never larger than the window.
    fn subtract(&mut self, sent: &Self) {
        self.received = self.received.saturating_sub(sent.received);
        self.accepted = self.accepted.saturating_sub(sent.accepted);
        self.rejected = self.rejected.saturating_sub(sent.rejected);
        self.dropped = self.dropped.saturating_sub(sent.dropped);
        self.delivered = self.delivered.saturating_sub(sent.delivered);
    }
}

/// What one heartbeat reports: the usage since the last successful send.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageSnapshot {
    /// The window period this snapshot belongs to (see the module docs).
    pub seq: u64,
    /// Event counters by event kind; kinds with no events are left out.
    pub events: BTreeMap<String, EventCounts>,
    /// Traps by plugin name; plugins without traps are left out.
    pub traps: BTreeMap<String, u64>,
    /// Events in the buffer when the snapshot was taken (a gauge).
    pub buffer_depth: u64,
    /// Host uptime in seconds when the snapshot was taken (a gauge).
    pub uptime_secs: u64,
}

impl UsageSnapshot {
    /// True if no event or trap was counted (gauges do not count).
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.traps.is_empty()
    }
}

/// The usage accumulated since the last successful heartbeat; shared by
/// every thread that counts (wrap it in an `Arc`).
#[derive(Debug, Default)]
pub struct UsageWindow {
    /// One lock for all counters so a snapshot is consistent across them
    /// (a heartbeat never reports an event delivered but not accepted
    /// because it read two counters at different moments).
    inner: Mutex<UsageSnapshot>,
}

impl UsageWindow {
    /// An empty window at `seq` 0.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, UsageSnapshot> {
        // A panic elsewhere while holding the lock leaves plain integers
        // behind, which are still consistent enough to report.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds `n` to `counter` of events of `kind`.
    pub fn add(&self, kind: &str, counter: Counter, n: u64) {
        if n == 0 {
            return;
        }
        let mut inner = self.lock();
        let counts = match inner.events.get_mut(kind) {
            Some(counts) => counts,
            None => inner.events.entry(kind.to_owned()).or_default(),
        };
        let c = counts.get_mut(counter);
        *c = c.saturating_add(n);
    }

    /// Counts `n` traps of `plugin`.
    pub fn add_traps(&self, plugin: &str, n: u64) {
        if n == 0 {
            return;
        }
        let mut inner = self.lock();
        let traps = inner.traps.entry(plugin.to_owned()).or_default();
        *traps = traps.saturating_add(n);
    }

    /// Sets the buffer-depth gauge.
    pub fn set_buffer_depth(&self, events: u64) {
        self.lock().buffer_depth = events;
    }

    /// Sets the uptime gauge.
    pub fn set_uptime(&self, uptime: Duration) {
        self.lock().uptime_secs = uptime.as_secs();
    }

    /// What to send now: everything counted since the last commit, with the
    /// current gauges. Does not change the window.
    pub fn snapshot(&self) -> UsageSnapshot {
        self.lock().clone()
    }

    /// After a successful send of `sent`: subtracts exactly its counters and
    /// starts the next period (`seq + 1`). Counts added since the snapshot
    /// was taken stay. Refuses a snapshot that was already committed or is
    /// older than the last commit.
    pub fn commit(&self, sent: &UsageSnapshot) -> Result<(), UsageError> {
        let mut inner = self.lock();
        if sent.seq != inner.seq {
            return Err(UsageError::Stale {
                snapshot: sent.seq,
                current: inner.seq,
            });
        }
        for (kind, counts) in &sent.events {
            if let Some(have) = inner.events.get_mut(kind) {
                have.subtract(counts);
            }
        }
        inner.events.retain(|_, c| !c.is_zero());
        for (plugin, n) in &sent.traps {
            if let Some(have) = inner.traps.get_mut(plugin) {
                *have = have.saturating_sub(*n);
            }
        }
        inner.traps.retain(|_, n| *n != 0);
        inner.seq = inner.seq.wrapping_add(1);
        Ok(())
    }

    /// Takes everything counted, leaving the window empty at the next
    /// `seq`: for a counter that stores its counts elsewhere (with the
    /// commit that produced them) or forgets them (the work was undone).
    pub fn take(&self) -> UsageSnapshot {
        let mut inner = self.lock();
        let out = inner.clone();
        inner.events.clear();
        inner.traps.clear();
        inner.seq = inner.seq.wrapping_add(1);
        out
    }

    /// True if nothing was counted since the last commit.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }
}

/// The delay before the next heartbeat: `interval` × uniform(0.85, 1.15).
/// The generator is the caller's so tests can seed it.
pub fn heartbeat_delay<R: Rng + ?Sized>(interval: Duration, rng: &mut R) -> Duration {
    let factor = rng.random_range((1.0 - JITTER)..=(1.0 + JITTER));
    // An interval so large that scaling it overflows is left as it is.
    Duration::try_from_secs_f64(interval.as_secs_f64() * factor).unwrap_or(interval)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use std::sync::Arc;

    fn counts(
        received: u64,
        accepted: u64,
        rejected: u64,
        dropped: u64,
        delivered: u64,
    ) -> EventCounts {
        EventCounts {
            received,
            accepted,
            rejected,
            dropped,
            delivered,
        }
    }

    #[test]
    fn two_failed_sends_then_one_success_report_the_whole_period_once() {
        let w = UsageWindow::new();
        w.add("temp", Counter::Received, 10);
        w.add("temp", Counter::Accepted, 9);
        w.add("temp", Counter::Rejected, 1);
        w.add_traps("range-validator", 2);

        let first = w.snapshot(); // send fails: nothing committed
        w.add("temp", Counter::Received, 5);
        w.add("temp", Counter::Accepted, 5);
        w.add("humidity", Counter::Received, 3);
        w.add("humidity", Counter::Dropped, 3);

        let second = w.snapshot(); // send fails too
        assert_eq!(first.seq, second.seq);
        w.add("temp", Counter::Delivered, 14);
        w.add_traps("range-validator", 1);
        w.set_buffer_depth(7);
        w.set_uptime(Duration::from_secs(3 * 3600));

        let third = w.snapshot(); // this one succeeds
        let mut expected = UsageSnapshot {
            seq: 0,
            buffer_depth: 7,
            uptime_secs: 3 * 3600,
            ..Default::default()
        };
        expected
            .events
            .insert("temp".into(), counts(15, 14, 1, 0, 14));
        expected
            .events
            .insert("humidity".into(), counts(3, 0, 0, 3, 0));
        expected.traps.insert("range-validator".into(), 3);
        assert_eq!(third, expected);
        w.commit(&third).unwrap();
        assert!(w.is_empty());
        let next = w.snapshot();
        assert_eq!(next.seq, 1);
        assert!(next.is_empty());
        // The gauges are still reported as they are.
        assert_eq!((next.buffer_depth, next.uptime_secs), (7, 3 * 3600));
    }

    #[test]
    fn counts_arriving_during_a_send_are_kept() {
        let w = UsageWindow::new();
        w.add("temp", Counter::Accepted, 4);
        let sent = w.snapshot();
        w.add("temp", Counter::Accepted, 2); // while the send is in flight
        w.add_traps("p", 1);
        w.commit(&sent).unwrap();
        let left = w.snapshot();
        assert_eq!(left.events["temp"], counts(0, 2, 0, 0, 0));
        assert_eq!(left.traps["p"], 1);
    }

    #[test]
    fn a_snapshot_cannot_be_committed_twice() {
        let w = UsageWindow::new();
        w.add("temp", Counter::Received, 4);
        let sent = w.snapshot();
        w.commit(&sent).unwrap();
        w.add("temp", Counter::Received, 4);
        assert_eq!(
            w.commit(&sent),
            Err(UsageError::Stale {
                snapshot: 0,
                current: 1
            })
        );
        assert_eq!(w.snapshot().events["temp"].received, 4);
    }

    #[test]
    fn the_wire_form_says_in() {
        let w = UsageWindow::new();
        w.add("temp", Counter::Received, 1);
        let json = serde_json::to_value(w.snapshot()).unwrap();
        assert_eq!(json["events"]["temp"]["in"], 1);
        assert_eq!(json["seq"], 0);
        let back: UsageSnapshot = serde_json::from_value(json).unwrap();
        assert_eq!(back, w.snapshot());
    }

    /// Many threads count while a heartbeat loop snapshots and randomly
    /// fails or commits: what was committed plus what is left equals
    /// exactly what was counted.
    #[test]
    fn concurrent_counting_loses_and_doubles_nothing() {
        const THREADS: u64 = 4;
        const PER_THREAD: u64 = 20_000;
        let w = Arc::new(UsageWindow::new());
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let w = Arc::clone(&w);
                std::thread::spawn(move || {
                    for i in 0..PER_THREAD {
                        let kind = if i % 3 == 0 { "a" } else { "b" };
                        w.add(kind, Counter::Received, 1);
                        w.add(kind, Counter::Delivered, t + 1);
                        if i % 100 == 0 {
                            w.add_traps("p", 1);
                        }
                    }
                })
            })
            .collect();
        let mut rng = StdRng::seed_from_u64(5);
        let mut reported = BTreeMap::<String, EventCounts>::new();
        let mut traps = 0u64;
        let mut tally = |snap: &UsageSnapshot| {
            for (k, c) in &snap.events {
                let r = reported.entry(k.clone()).or_default();
                r.received += c.received;
                r.delivered += c.delivered;
            }
            traps += snap.traps.get("p").copied().unwrap_or(0);
        };
        while workers.iter().any(|h| !h.is_finished()) {
            let snap = w.snapshot();
            if rng.random_bool(0.5) {
                w.commit(&snap).unwrap();
                tally(&snap);
            }
            std::thread::yield_now();
        }
        for h in workers {
            h.join().unwrap();
        }
        let last = w.snapshot();
        w.commit(&last).unwrap();
        tally(&last);
        assert!(w.is_empty());
        let total_received: u64 = reported.values().map(|c| c.received).sum();
        let total_delivered: u64 = reported.values().map(|c| c.delivered).sum();
        assert_eq!(total_received, THREADS * PER_THREAD);
        assert_eq!(total_delivered, PER_THREAD * (1..=THREADS).sum::<u64>());
        assert_eq!(traps, THREADS * PER_THREAD / 100);
        let a = PER_THREAD.div_ceil(3) * THREADS;
        assert_eq!(reported["a"].received, a);
    }

    #[test]
    fn heartbeat_delay_stays_within_15_percent_and_spreads() {
        let mut rng = StdRng::seed_from_u64(11);
        let interval = DEFAULT_HEARTBEAT_INTERVAL;
        let draws: Vec<Duration> = (0..2000)
            .map(|_| heartbeat_delay(interval, &mut rng))
            .collect();
        let (lo, hi) = (Duration::from_secs(3060), Duration::from_secs(4140));
        assert!(draws.iter().all(|d| (lo..=hi).contains(d)), "out of range");
        assert!(draws.iter().any(|d| *d < Duration::from_secs(3200)));
        assert!(draws.iter().any(|d| *d > Duration::from_secs(4000)));
        let mean = draws.iter().map(Duration::as_secs_f64).sum::<f64>() / 2000.0;
        assert!((mean - 3600.0).abs() < 30.0, "mean {mean}");
        // Extreme intervals do not panic.
        let _ = heartbeat_delay(Duration::MAX, &mut rng);
        assert_eq!(heartbeat_delay(Duration::ZERO, &mut rng), Duration::ZERO);
    }
}
