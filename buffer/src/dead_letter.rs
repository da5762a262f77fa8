//! The dead-letter table: records the transport or the pipeline gave up on,
//! kept with the reason so an operator can inspect or replay them instead of
//! them vanishing or blocking the queue forever.

use rusqlite::TransactionBehavior;

use rusqlite::Transaction;

use crate::batch::{Batch, Record};
use crate::buffer::{Buffer, Inner, now_ms};
use crate::commit::Commit;
use crate::error::{BufferError, Context};

/// A record that was given up on, with why and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The event's stable id, to correlate with pipeline logs.
    pub id: [u8; 16],
    /// The encoded event, unchanged, so it can be replayed once fixed.
    pub payload: Vec<u8>,
    /// Why it was given up on, as the caller put it.
    pub reason: String,
    /// When it was dead-lettered, in Unix milliseconds (wall clock, so it
    /// means something after a restart).
    pub at_unix_ms: i64,
}

impl Buffer {
    /// Moves a leased batch's records to the dead-letter table in one
    /// transaction — for a batch the receiver rejects permanently (e.g. HTTP
    /// 400), which retrying would only resend forever.
    ///
    /// Fails with [`BufferError::UnknownBatch`] if the batch is not in flight.
    pub fn dead_letter(&self, batch: &Batch, reason: &str) -> Result<(), BufferError> {
        self.repairing(|| self.dead_letter_once(batch, reason))
    }

    fn dead_letter_once(&self, batch: &Batch, reason: &str) -> Result<(), BufferError> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let lease = inner
            .leases
            .find(batch, inner.epoch)
            .ok_or_else(|| BufferError::UnknownBatch { key: batch.key() })?;
        let tx = inner
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx("dead_letter: begin transaction")?;
        let moved = tx
            .prepare_cached(
                "INSERT INTO dead_letter (id, payload, reason, at_ms) \
                 SELECT id, payload, ?3, ?4 FROM records WHERE seq >= ?1 AND seq <= ?2 ORDER BY seq",
            )
            .and_then(|mut stmt| stmt.execute((lease.first, lease.last, reason, now_ms())))
            .ctx("dead_letter: copy records")?;
        tx.prepare_cached("DELETE FROM records WHERE seq >= ?1 AND seq <= ?2")
            .and_then(|mut stmt| stmt.execute((lease.first, lease.last)))
            .ctx("dead_letter: delete records")?;
        let pruned = prune(
            &tx,
            inner.dead_letters + moved as u64,
            inner.config.dead_letter_max,
        )?;
        tx.commit().ctx("dead_letter: commit")?;
        tracing::warn!(batch = %batch.key(), records = moved, reason, "batch dead-lettered");
        inner.settle_unreadable(&lease, true, false);
        inner.leases.remove(&lease);
        inner.records = inner.records.saturating_sub(lease.count);
        inner.bytes = inner.bytes.saturating_sub(lease.bytes);
        inner.note_dead_letters(moved as u64, pruned);
        inner.after_delete(lease.bytes);
        Ok(())
    }

    /// Stores records that were rejected before they were ever buffered
    /// (validator rejects, decode errors), so they are kept for inspection
    /// rather than dropped. One transaction; see [`Buffer::commit`] to store
    /// them together with the accepted records.
    pub fn dead_letter_records(&self, records: &[Record], reason: &str) -> Result<(), BufferError> {
        let dead = [(reason.to_string(), records.to_vec())];
        self.commit(&Commit {
            dead_letters: &dead,
            ..Commit::default()
        })
        .map(|_| ())
    }

    /// The oldest `limit` dead letters, oldest first, for an operator or a
    /// replay tool. Reading does not remove them.
    pub fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, BufferError> {
        self.repairing(|| self.dead_letters_once(limit))
    }

    fn dead_letters_once(&self, limit: usize) -> Result<Vec<DeadLetter>, BufferError> {
        let inner = self.lock();
        let mut stmt = inner
            .conn
            .prepare_cached(
                "SELECT id, payload, reason, at_ms FROM dead_letter ORDER BY seq LIMIT ?1",
            )
            .ctx("dead_letters: prepare")?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = stmt
            .query_map([limit], |row| {
                Ok(DeadLetter {
                    id: row.get(0)?,
                    payload: row.get(1)?,
                    reason: row.get(2)?,
                    at_unix_ms: row.get(3)?,
                })
            })
            .ctx("dead_letters: read")?;
        rows.collect::<Result<Vec<_>, _>>()
            .ctx("dead_letters: read")
    }
}

/// Inserts `records` as dead letters with `reason` inside `tx`.
pub(crate) fn insert(
    tx: &Transaction<'_>,
    records: &[Record],
    reason: &str,
    now: i64,
) -> Result<u64, BufferError> {
    let mut insert = tx
        .prepare_cached(
            "INSERT INTO dead_letter (id, payload, reason, at_ms) VALUES (?1, ?2, ?3, ?4)",
        )
        .ctx("dead letter: prepare insert")?;
    for record in records {
        insert
            .execute((&record.id, &record.payload, reason, now))
            .ctx("dead letter: insert")?;
    }
    Ok(records.len() as u64)
}

/// Deletes the oldest dead letters beyond `max`, given that the table now
/// holds `count` rows; returns how many were deleted.
pub(crate) fn prune(tx: &Transaction<'_>, count: u64, max: u64) -> Result<u64, BufferError> {
    if count <= max {
        return Ok(0);
    }
    let keep = i64::try_from(max).unwrap_or(i64::MAX);
    let deleted = tx
        .prepare_cached(
            "DELETE FROM dead_letter WHERE seq <= \
             (SELECT seq FROM dead_letter ORDER BY seq DESC LIMIT 1 OFFSET ?1)",
        )
        .and_then(|mut stmt| stmt.execute([keep]))
        .ctx("dead letter: prune oldest")?;
    Ok(deleted as u64)
}

impl Inner {
    /// Updates the dead-letter totals after a commit that added `added` and
    /// pruned `pruned`; warns once when pruning starts.
    pub(crate) fn note_dead_letters(&mut self, added: u64, pruned: u64) {
        if pruned > 0 && self.counters.dead_letters_pruned == 0 {
            tracing::warn!(
                max = self.config.dead_letter_max,
                "dead-letter table full: deleting the oldest dead letters (counted in stats)"
            );
        }
        self.dead_letters = (self.dead_letters + added).saturating_sub(pruned);
        self.counters.dead_letters_pruned += pruned;
    }
}
