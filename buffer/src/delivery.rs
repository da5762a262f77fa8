//! Handing batches to the transport and settling them: `next_batch`, `ack`,
//! `nack`.

use rusqlite::TransactionBehavior;

use crate::batch::{Batch, Lease, Record};
use crate::buffer::{Buffer, Inner, now_ms};
use crate::dead_letter::{self, NewDeadLetter};
use crate::error::{BufferError, Context};

impl Buffer {
    /// Leases the oldest records that are not already in flight, in sequence
    /// order, or returns `None` when there are none.
    ///
    /// The batch stops at `max_records`, before the record that would take
    /// the payload total past `max_bytes` (but always holds at least one
    /// record, so an oversized record cannot wedge the queue), and before the
    /// next record that is already leased. `max_records == 0` is treated as 1.
    ///
    /// The lease is in memory only: after a restart every unacknowledged
    /// record is served again, which is where at-least-once duplicates come
    /// from. Several batches may be in flight at once.
    ///
    /// A read that meets a damaged page salvages the file and reads again
    /// (see `damage.rs`), so the batch comes from the rows after the damage.
    /// While reads keep failing, [`crate::Stats::read_error`] says why.
    pub fn next_batch(
        &self,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Option<Batch>, BufferError> {
        let result = self.repairing(|| self.next_batch_once(max_records, max_bytes));
        let mut inner = self.lock();
        match &result {
            Ok(_) => inner.read_error = None,
            Err(err) => inner.read_error = Some(err.to_string()),
        }
        result
    }

    fn next_batch_once(
        &self,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Option<Batch>, BufferError> {
        let max_records = max_records.max(1);
        let mut guard = self.lock();
        let inner = &mut *guard;
        if inner.records == inner.leases.records {
            return Ok(None);
        }
        let mut records = Vec::new();
        let (mut first, mut last, mut payload_bytes, mut accounted) = (0i64, 0i64, 0usize, 0u64);
        let mut stmt = inner
            .conn
            .prepare_cached(
                "SELECT seq, id, payload, size FROM records \
                 WHERE seq > ?1 AND seq < ?2 ORDER BY seq LIMIT ?3",
            )
            .ctx("next_batch: prepare read")?;
        for (after, before) in inner.leases.gaps() {
            let limit = i64::try_from(max_records).unwrap_or(i64::MAX);
            let mut rows = stmt
                .query((after, before, limit))
                .ctx("next_batch: read records")?;
            while let Some(row) = rows.next().ctx("next_batch: read records")? {
                let payload: Vec<u8> = row.get(2).ctx("next_batch: read payload")?;
                if !records.is_empty() && payload_bytes + payload.len() > max_bytes {
                    break;
                }
                let seq: i64 = row.get(0).ctx("next_batch: read seq")?;
                let id: [u8; 16] = row.get(1).ctx("next_batch: read record id")?;
                let size: i64 = row.get(3).ctx("next_batch: read size")?;
                if records.is_empty() {
                    first = seq;
                }
                last = seq;
                payload_bytes += payload.len();
                accounted += size.max(0) as u64;
                records.push(Record { id, payload });
            }
            // A batch never spans a leased range, so ack can delete by range.
            if !records.is_empty() {
                break;
            }
        }
        drop(stmt);
        if records.is_empty() {
            return Ok(None);
        }
        let batch_id = inner.next_batch_id;
        inner.next_batch_id += 1;
        inner.leases.insert(Lease {
            batch_id,
            first,
            last,
            count: records.len() as u64,
            bytes: accounted,
        });
        Ok(Some(Batch {
            id: batch_id,
            records,
            first_seq: first as u64,
            last_seq: last as u64,
            epoch: inner.epoch,
        }))
    }

    /// Deletes the batch's records (one statement, hence one transaction)
    /// and releases its lease: the transport's acknowledgement is the only
    /// thing that removes a record from the buffer.
    ///
    /// Fails with [`BufferError::UnknownBatch`] if the batch is not in flight
    /// (acked twice, nacked, or from a previous run); nothing is deleted then.
    /// On a SQLite error the lease is kept, so the ack can be retried; a
    /// damaged page salvages the file and deletes from the fresh one.
    pub fn ack(&self, batch: &Batch) -> Result<(), BufferError> {
        self.repairing(|| self.ack_once(batch, &[]))
    }

    /// Like [`Buffer::ack`], and stores `dead_letters` (events of this batch
    /// the receiver refused for their content) in the same transaction: a
    /// crash cannot leave them both delivered-pending and dead-lettered, nor
    /// neither.
    pub fn ack_with_dead_letters(
        &self,
        batch: &Batch,
        dead_letters: &[NewDeadLetter],
    ) -> Result<(), BufferError> {
        self.repairing(|| self.ack_once(batch, dead_letters))
    }

    fn ack_once(&self, batch: &Batch, dead_letters: &[NewDeadLetter]) -> Result<(), BufferError> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let lease = inner
            .leases
            .find(batch, inner.epoch)
            .ok_or_else(|| BufferError::UnknownBatch { key: batch.key() })?;
        let bound = inner.dead_letter_bound();
        let tx = inner
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx("ack: begin transaction")?;
        let dead = dead_letter::apply(&tx, bound, dead_letters, &[], now_ms())?;
        let deleted = tx
            .prepare_cached("DELETE FROM records WHERE seq >= ?1 AND seq <= ?2")
            .and_then(|mut stmt| stmt.execute((lease.first, lease.last)))
            .ctx("ack: delete records")?;
        tx.commit().ctx("ack: commit")?;
        if dead.added + dead.removed > 0 {
            inner.note_dead_letters(&dead);
        }
        let unreadable = inner
            .unreadable
            .get(&lease.batch_id)
            .map_or(0, |u| u.records);
        if deleted as u64 + unreadable != lease.count {
            tracing::warn!(batch = %batch.key(), deleted, expected = lease.count,
                "buffer ack deleted an unexpected number of records");
        }
        inner.counters.acked += lease.count;
        inner.remove_settled(&lease, false);
        Ok(())
    }

    /// Releases the lease so the records are served again, in order, by the
    /// next `next_batch` — for a failed send that should be retried. A batch
    /// that is not in flight is ignored.
    pub fn nack(&self, batch: &Batch) {
        let mut guard = self.lock();
        let inner = &mut *guard;
        match inner.leases.find(batch, inner.epoch) {
            Some(lease) => {
                // Rows a repair could not copy exist only in this batch.
                inner.settle_unreadable(&lease, true, true);
                inner.leases.remove(&lease);
            }
            None => tracing::debug!(batch = %batch.key(), "nack of a batch that is not in flight"),
        }
    }
}

impl Inner {
    /// After the transaction that deleted `lease`'s records committed
    /// (acked, or dead-lettered when `dead_lettered`): drops the lease and
    /// takes its records out of the totals.
    pub(crate) fn remove_settled(&mut self, lease: &Lease, dead_lettered: bool) {
        self.settle_unreadable(lease, dead_lettered, false);
        self.leases.remove(lease);
        self.records = self.records.saturating_sub(lease.count);
        self.bytes = self.bytes.saturating_sub(lease.bytes);
        self.after_delete(lease.bytes);
    }
}
