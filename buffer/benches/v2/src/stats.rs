//! What the buffer reports about itself, for metrics and health checks.

use std::time::Duration;

/// A snapshot of the buffer, cheap enough to take on every metrics scrape.
///
/// `records`, `bytes` and `dead_letters` describe the file (kept as running
/// totals in memory, seeded at open); the `*_total` counters count since this
/// open, so a metrics exporter should treat them as counters that reset on
/// restart.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Records in the buffer, in flight or not.
    pub records: u64,
    /// Accounted bytes of those records (payloads + per-record overhead), the
    /// figure `max_bytes` bounds.
    pub bytes: u64,
    /// How long the oldest record has waited: the freshness lag an operator
    /// alerts on. `None` when empty.
    pub oldest_age: Option<Duration>,
    /// Records currently leased to the transports (a record leased to two
    /// transports counts twice).
    pub leased_records: u64,
    /// Records no transport wanted (every transport's kind filter excluded
    /// them), since open: taken, never stored.
    pub unrouted_total: u64,
    /// Records in the dead-letter table.
    pub dead_letters: u64,
    /// Accounted bytes of the dead-letter table, the figure
    /// `dead_letter_max_bytes` bounds.
    pub dead_letter_bytes: u64,
    /// The oldest dead letters evicted to keep the table within
    /// `dead_letter_max_bytes` and `dead_letter_max`.
    pub dead_letters_pruned_total: u64,
    /// Accounted bytes of those evicted dead letters.
    pub dead_letters_pruned_bytes_total: u64,
    /// New records refused because the buffer was full (`DropNewest`, or
    /// `DropOldest` when evicting everything evictable was not enough).
    pub dropped_newest_total: u64,
    /// Buffered records evicted to make room under `DropOldest`.
    pub evicted_oldest_total: u64,
    /// Records accepted by `append`.
    pub appended_total: u64,
    /// Records deleted by `ack`.
    pub acked_total: u64,
    /// Records lost to a damaged file (unreadable rows, at open or while
    /// running); each episode is also reported by [`crate::Buffer::take_damage`].
    pub damage_lost_total: u64,
    /// Times a damaged file was salvaged into a fresh one while running.
    pub damage_repairs_total: u64,
    /// Why reading a batch is failing, while it is (the buffer cannot
    /// deliver anything then); `None` once a read succeeds.
    pub read_error: Option<String>,
}

/// Counters since open; only ever updated after the transaction they
/// describe has committed.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Counters {
    pub(crate) appended: u64,
    pub(crate) acked: u64,
    pub(crate) dropped_newest: u64,
    pub(crate) evicted_oldest: u64,
    pub(crate) dead_letters_pruned: u64,
    pub(crate) dead_letters_pruned_bytes: u64,
    pub(crate) damage_lost: u64,
}
