//! Counters the host exports as metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use serde::Serialize;

use crate::BreakerState;

/// Live counters of one [`Delivery`](crate::Delivery), updated lock-free on
/// the hot path and read by the metrics exporter at any time.
///
/// All counters are totals since the `Delivery` was created, so an exporter
/// should treat them as counters that reset on restart.
#[derive(Debug)]
pub struct TransportStats {
    batches_sent: AtomicU64,
    batches_failed: AtomicU64,
    retries: AtomicU64,
    dead_lettered: AtomicU64,
    bytes_sent: AtomicU64,
    breaker: Arc<AtomicU8>,
}

/// A consistent-enough copy of [`TransportStats`] for one scrape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StatsSnapshot {
    /// Batches the receiver accepted.
    pub batches_sent: u64,
    /// Attempts that did not deliver: retryable failures plus permanent
    /// refusals.
    pub batches_failed: u64,
    /// Attempts that were re-sends of a batch already tried.
    pub retries: u64,
    /// Batches given up on as permanently refused.
    pub dead_lettered: u64,
    /// Body bytes (before compression) of the delivered batches.
    pub bytes_sent: u64,
    /// The circuit breaker's state at the time of the snapshot.
    pub breaker_state: BreakerState,
}

impl TransportStats {
    pub(crate) fn new(breaker: Arc<AtomicU8>) -> Self {
        Self {
            batches_sent: AtomicU64::new(0),
            batches_failed: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            dead_lettered: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            breaker,
        }
    }

    /// Reads every counter once.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            batches_sent: self.batches_sent.load(Ordering::Relaxed),
            batches_failed: self.batches_failed.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
            breaker_state: self.breaker_state(),
        }
    }

    /// The breaker's state as last changed. An expired Open is only shown
    /// as HalfOpen once a delivery (or [`Breaker::state`](crate::Breaker::state))
    /// looks at it.
    pub fn breaker_state(&self) -> BreakerState {
        BreakerState::from_u8(self.breaker.load(Ordering::Relaxed))
    }

    pub(crate) fn record_delivered(&self, bytes: usize) {
        self.batches_sent.fetch_add(1, Ordering::Relaxed);
        let bytes = u64::try_from(bytes).unwrap_or(u64::MAX);
        self.bytes_sent.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn record_failed_attempt(&self) {
        self.batches_failed.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_dead_letter(&self) {
        self.dead_lettered.fetch_add(1, Ordering::Relaxed);
    }
}
