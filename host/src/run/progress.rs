//! Whether the pipeline thread is making progress: the watchdog behind
//! `/health`'s "no progress" verdict, and the stop deadline of shutdown.
//!
//! Every plugin call ends within its deadline, so a pipeline thread that
//! holds one piece of work for much longer than that is stuck in a way the
//! sandbox did not foresee (a commit that never returns, a deadline set very
//! high, a chain of plugins each using its whole deadline on every batch).
//! An operator must see that, not a green `/health`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Shared between the pipeline thread (which marks its work) and the
/// status server (which reads it).
#[derive(Debug)]
pub struct Progress {
    /// The origin of the millisecond clock below.
    origin: Instant,
    /// Per pipeline worker: when the work in hand started, in ms since
    /// `origin`, plus one; 0 while idle.
    busy_since: Vec<AtomicU64>,
    /// Work in hand for longer than this is a stall.
    stall_after: Duration,
}

impl Progress {
    /// A watchdog that calls work held past `stall_after` a stall.
    pub fn new(stall_after: Duration) -> Self {
        Self::for_workers(stall_after, 1)
    }

    /// A watchdog over `workers` pipeline workers: any one of them holding
    /// a piece of work past `stall_after` is a stall.
    pub fn for_workers(stall_after: Duration, workers: usize) -> Self {
        Progress {
            origin: Instant::now(),
            busy_since: (0..workers.max(1)).map(|_| AtomicU64::new(0)).collect(),
            stall_after,
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }

    /// The pipeline thread took a piece of work.
    pub fn begin(&self) {
        self.begin_on(0);
    }

    /// Pipeline worker `worker` took a piece of work.
    pub fn begin_on(&self, worker: usize) {
        if let Some(slot) = self.busy_since.get(worker) {
            slot.store(self.now_ms() + 1, Ordering::Relaxed);
        }
    }

    /// Pipeline worker `worker` finished it.
    pub fn end_on(&self, worker: usize) {
        if let Some(slot) = self.busy_since.get(worker) {
            slot.store(0, Ordering::Relaxed);
        }
    }

    /// The pipeline thread finished it.
    pub fn end(&self) {
        self.end_on(0);
    }

    /// How long the work in hand has been held, if that is past the stall
    /// limit.
    pub fn stalled(&self) -> Option<Duration> {
        let since = self
            .busy_since
            .iter()
            .map(|s| s.load(Ordering::Relaxed))
            .filter(|&s| s != 0)
            .min()?;
        let held = Duration::from_millis(self.now_ms().saturating_sub(since - 1));
        (held > self.stall_after).then_some(held)
    }

    /// Like [`Progress::stalled`], for slot `worker` alone (the systemd
    /// watchdog judges each transport's ship loop on its own, since a
    /// transport whose breaker is open is waiting, not stuck).
    pub fn stalled_on(&self, worker: usize) -> Option<Duration> {
        let since = self.busy_since.get(worker)?.load(Ordering::Relaxed);
        if since == 0 {
            return None;
        }
        let held = Duration::from_millis(self.now_ms().saturating_sub(since - 1));
        (held > self.stall_after).then_some(held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_work_held_past_the_limit_is_a_stall() {
        let progress = Progress::new(Duration::ZERO);
        assert_eq!(progress.stalled(), None, "idle is not stalled");
        progress.begin();
        let started = Instant::now();
        while progress.stalled().is_none() {
            assert!(started.elapsed() < Duration::from_secs(5));
            std::hint::spin_loop();
        }
        progress.end();
        assert_eq!(progress.stalled(), None);
        let patient = Progress::new(Duration::from_secs(3600));
        patient.begin();
        assert_eq!(patient.stalled(), None);
    }
}
