//! Counters the host exports as metrics.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use serde::Serialize;
use tokio::sync::watch;

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
    events_dead_lettered: AtomicU64,
    refused: AtomicU64,
    bytes_sent: AtomicU64,
    breaker: Arc<AtomicU8>,
    refusal: watch::Sender<Option<Refusal>>,
}

/// The receiver refuses this sender (see
/// [`Attempt::Refused`](crate::Attempt::Refused)): batches are held until a
/// delivery succeeds again. Shown by `/health` and published as a
/// `transport.refused` lifecycle event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    /// The HTTP status, or `None` for a TLS failure.
    pub status: Option<u16>,
    /// What the receiver said, e.g. `401 Unauthorized: <body start>`.
    pub reason: String,
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
    /// Batches, or parts of batches, in which the host gave events up
    /// because the receiver refused them for good (400/422 naming them, 413
    /// for a single event).
    pub dead_lettered: u64,
    /// The events in those, each moved to the dead-letter table.
    pub events_dead_lettered: u64,
    /// Attempts the receiver refused as coming from this sender (401, 403,
    /// 404, …, TLS): each one held its batch and opened the breaker.
    pub refused: u64,
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
            events_dead_lettered: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            breaker,
            refusal: watch::Sender::new(None),
        }
    }

    /// Reads every counter once.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            batches_sent: self.batches_sent.load(Ordering::Relaxed),
            batches_failed: self.batches_failed.load(Ordering::Relaxed),
            retries: self.retries.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            events_dead_lettered: self.events_dead_lettered.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
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

    /// Counts `events` given up on, as one part: the host calls this when
    /// it dead-letters events the receiver refused (the transport itself
    /// never discards a batch).
    pub fn record_dead_letter(&self, events: u64) {
        self.dead_lettered.fetch_add(1, Ordering::Relaxed);
        self.events_dead_lettered
            .fetch_add(events, Ordering::Relaxed);
    }

    /// The refusal in force, if the receiver's last word to this sender
    /// was one.
    pub fn refusal(&self) -> Option<Refusal> {
        self.refusal.borrow().clone()
    }

    /// Every change of [`refusal`](Self::refusal): a new refusal (or a
    /// different one), and its end (`None`) when a delivery succeeds.
    pub fn subscribe_refusals(&self) -> watch::Receiver<Option<Refusal>> {
        self.refusal.subscribe()
    }

    /// Records a refused attempt; returns true if it starts the refusal in
    /// force or changes its status, so the caller logs it once, not per attempt.
    pub(crate) fn record_refusal(&self, refusal: Refusal) -> bool {
        self.refused.fetch_add(1, Ordering::Relaxed);
        // Keyed by status: a body that differs per answer (a request id)
        // updates the reason without counting as a new refusal.
        self.refusal.send_if_modified(|now| {
            let changed = now.as_ref().map(|r| r.status) != Some(refusal.status);
            *now = Some(refusal);
            changed
        })
    }

    /// The receiver answered without refusing the sender: any refusal in
    /// force is over.
    pub(crate) fn clear_refusal(&self) {
        self.refusal.send_if_modified(|now| now.take().is_some());
    }
}
