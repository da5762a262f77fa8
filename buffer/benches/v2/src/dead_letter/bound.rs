//! The dead-letter table's bound: at most `dead_letter_max_bytes` accounted
//! bytes and `dead_letter_max` rows. A commit that goes past either evicts
//! the oldest rows in its own transaction, so the bound holds after every
//! commit and a crash cannot leave the table over it. Evictions are counted
//! (rows and bytes, in [`Stats`](crate::Stats)) and logged once per
//! episode: a warning when eviction starts, an info line when a commit adds
//! dead letters without evicting again (or an operator makes room).
//!
//! Why the oldest: dead letters are for finding out what is wrong, and the
//! newest say the most about what is wrong now; a flood of bad input must
//! not fill the device's disk.

use rusqlite::Transaction;

use super::Change;
use crate::buffer::Inner;
use crate::error::{BufferError, Context};

/// Rows and accounted bytes evicted to keep the bound.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pruned {
    pub(crate) rows: u64,
    pub(crate) bytes: u64,
}

/// The table's size before a commit and its limits, taken before the
/// commit's transaction borrows the connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bound {
    rows: u64,
    bytes: u64,
    max_rows: u64,
    max_bytes: u64,
}

/// Evicts the oldest dead letters until the table, after `change`, is
/// within both limits of `bound` again.
pub(crate) fn prune(
    tx: &Transaction<'_>,
    bound: Bound,
    change: &Change,
) -> Result<Pruned, BufferError> {
    let rows = (bound.rows + change.added).saturating_sub(change.removed);
    let bytes = (bound.bytes + change.added_bytes).saturating_sub(change.removed_bytes);
    let (max_rows, max_bytes) = (bound.max_rows, bound.max_bytes);
    {
        if rows <= max_rows && bytes <= max_bytes {
            return Ok(Pruned::default());
        }
        let mut pruned = Pruned::default();
        let mut last = None;
        {
            // The (seq, size) index covers this scan: no payload is read.
            let mut scan = tx
                .prepare_cached("SELECT seq, size FROM dead_letter ORDER BY seq")
                .ctx("dead letter: prepare eviction scan")?;
            let mut found = scan.query([]).ctx("dead letter: scan for eviction")?;
            while rows.saturating_sub(pruned.rows) > max_rows
                || bytes.saturating_sub(pruned.bytes) > max_bytes
            {
                let Some(row) = found.next().ctx("dead letter: scan for eviction")? else {
                    break;
                };
                let seq: i64 = row.get(0).ctx("dead letter: read seq")?;
                let size: i64 = row.get(1).ctx("dead letter: read size")?;
                pruned.rows += 1;
                pruned.bytes += size.max(0) as u64;
                last = Some(seq);
            }
        }
        if let Some(last) = last {
            tx.prepare_cached("DELETE FROM dead_letter WHERE seq <= ?1")
                .and_then(|mut stmt| stmt.execute([last]))
                .ctx("dead letter: evict oldest")?;
        }
        Ok(pruned)
    }
}

impl Inner {
    /// The table's size and limits now, for [`prune`].
    pub(crate) fn dead_letter_bound(&self) -> Bound {
        Bound {
            rows: self.dead_letters,
            bytes: self.dead_letter_bytes,
            max_rows: self.config.dead_letter_max,
            max_bytes: self.config.dead_letter_max_bytes,
        }
    }

    /// Applies a committed `change` to the totals and logs the start and
    /// end of an eviction episode.
    pub(crate) fn note_dead_letters(&mut self, change: &Change) {
        let pruned = change.pruned;
        self.dead_letters = (self.dead_letters + change.added)
            .saturating_sub(change.removed)
            .saturating_sub(pruned.rows);
        self.dead_letter_bytes = (self.dead_letter_bytes + change.added_bytes)
            .saturating_sub(change.removed_bytes)
            .saturating_sub(pruned.bytes);
        self.counters.dead_letters_pruned += pruned.rows;
        self.counters.dead_letters_pruned_bytes += pruned.bytes;
        if pruned.rows > 0 && !self.dead_letters_evicting {
            tracing::warn!(
                max_bytes = self.config.dead_letter_max_bytes,
                max_rows = self.config.dead_letter_max,
                evicted = pruned.rows,
                evicted_bytes = pruned.bytes,
                "dead-letter table full: evicting the oldest dead letters (counted in \
                 halyard_buffer_dead_letters_evicted); inspect them with `halyard deadletter list`"
            );
            self.dead_letters_evicting = true;
        } else if pruned.rows == 0 && self.dead_letters_evicting {
            tracing::info!(
                evicted_total = self.counters.dead_letters_pruned,
                "dead-letter table no longer evicting"
            );
            self.dead_letters_evicting = false;
        }
    }
}
