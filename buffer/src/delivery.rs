//! Handing batches to the transports and settling them: `next_batch_for`,
//! `ack`, `nack`. Each consumer (transport) leases and settles on its own;
//! a record is deleted when the last consumer it was for settles it.

use rusqlite::{OptionalExtension, Transaction, TransactionBehavior};

use crate::batch::{Batch, BatchKinds, Lease, Record};
use crate::buffer::{Buffer, Inner, now_ms};
use crate::chunk::{COLUMNS, Stored, split};
use crate::config::RECORD_OVERHEAD_BYTES;
use crate::consumer::ConsumerStats;
use crate::dead_letter::{self, NewDeadLetter};
use crate::error::{BufferError, Context};

impl Buffer {
    /// [`Buffer::next_batch_for`] the first consumer: for a buffer with one
    /// consumer (tools, tests, a single `[transport]`).
    pub fn next_batch(
        &self,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Option<Batch>, BufferError> {
        let name = {
            let inner = self.lock();
            match inner.consumers.first() {
                Some(i) => inner.consumers.list[i].config.name.clone(),
                None => return Ok(None),
            }
        };
        self.next_batch_for(&name, max_records, max_bytes)
    }

    /// Leases the oldest records `consumer` has not settled and that are
    /// not already in flight to it, in sequence order, or returns `None`
    /// when there are none.
    ///
    /// The batch stops at `max_records`, before the record that would take
    /// the payload total past `max_bytes` (but always holds at least one
    /// record, so an oversized record cannot wedge the queue), and before the
    /// next record that is already leased to this consumer. `max_records ==
    /// 0` is treated as 1. Other consumers' leases do not matter: each
    /// transport reads at its own pace.
    ///
    /// The lease is in memory only: after a restart every unacknowledged
    /// record is served again, which is where at-least-once duplicates come
    /// from. Several batches may be in flight at once.
    ///
    /// A read that meets a damaged page salvages the file and reads again
    /// (see `damage.rs`), so the batch comes from the rows after the damage.
    /// While reads keep failing, [`crate::Stats::read_error`] says why.
    pub fn next_batch_for(
        &self,
        consumer: &str,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Option<Batch>, BufferError> {
        self.lease_for(consumer, max_records, max_bytes, Fill::Exact)
    }

    /// Like [`Buffer::next_batch_for`], but the batch takes whole chunks
    /// (the events of one commit are stored together, up to 1000 a chunk)
    /// and stops before a chunk that would not fit whole, so it may hold
    /// fewer than `max_records`; only a first chunk over the limits alone
    /// is cut. Why: cutting a chunk rewrites its row in a transaction of
    /// its own (its payload written again), which cost ~10 % of the host's
    /// CPU when commits and batch limits did not line up. A shipper wants
    /// this; a caller that needs batches filled to the limit does not.
    pub fn next_whole_batch_for(
        &self,
        consumer: &str,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Option<Batch>, BufferError> {
        self.lease_for(consumer, max_records, max_bytes, Fill::WholeChunks)
    }

    fn lease_for(
        &self,
        consumer: &str,
        max_records: usize,
        max_bytes: usize,
        fill: Fill,
    ) -> Result<Option<Batch>, BufferError> {
        let result =
            self.repairing(|| self.next_batch_once(consumer, max_records, max_bytes, fill));
        let mut inner = self.lock();
        match &result {
            Ok(_) => inner.read_error = None,
            Err(err) => inner.read_error = Some(err.to_string()),
        }
        result
    }

    fn next_batch_once(
        &self,
        consumer: &str,
        max_records: usize,
        max_bytes: usize,
        fill: Fill,
    ) -> Result<Option<Batch>, BufferError> {
        let max_records = max_records.max(1);
        let mut guard = self.lock();
        let inner = &mut *guard;
        let index =
            inner
                .consumers
                .by_name(consumer)
                .ok_or_else(|| BufferError::UnknownConsumer {
                    name: consumer.to_string(),
                })?;
        let c = &inner.consumers.list[index];
        if c.pending <= c.leases.records {
            return Ok(None);
        }
        let (mask, floor) = (c.mask(), c.floor);
        let mut records = Vec::new();
        let mut kinds = BatchKinds::default();
        let (mut first, mut last, mut payload_bytes, mut accounted) = (0i64, 0i64, 0usize, 0u64);
        // A chunk the limits cut: split after the events taken.
        let mut cut: Option<(Stored, usize)> = None;
        {
            // Which chunks, from the covering index: a chunk's `pending`,
            // `count` and `size` are stored after its payload, so filtering
            // or sizing it from the table walks its whole overflow chain,
            // and a chunk that then did not fit was read for nothing.
            let mut candidates = inner
                .conn
                .prepare_cached(
                    "SELECT seq, count, size FROM records INDEXED BY records_seq_pending \
                     WHERE seq > ?1 AND seq < ?2 AND (pending & ?4) != 0 ORDER BY seq LIMIT ?3",
                )
                .ctx("next_batch: prepare index read")?;
            let mut read = inner
                .conn
                .prepare_cached(&format!("SELECT {COLUMNS} FROM records WHERE seq = ?1"))
                .ctx("next_batch: prepare read")?;
            'gaps: for (after, before) in c.leases.gaps() {
                if before <= floor + 1 {
                    continue;
                }
                let after = after.max(floor);
                let limit = i64::try_from(max_records).unwrap_or(i64::MAX);
                let mut rows = candidates
                    .query((after, before, limit, mask))
                    .ctx("next_batch: read records")?;
                while let Some(row) = rows.next().ctx("next_batch: read records")? {
                    let seq: i64 = row.get(0).ctx("next_batch: read seq")?;
                    if fill == Fill::WholeChunks && !records.is_empty() {
                        let count: i64 = row.get(1).ctx("next_batch: read count")?;
                        let size: i64 = row.get(2).ctx("next_batch: read size")?;
                        let (count, bytes) = indexed_extent(count, size);
                        if records.len() + count > max_records || payload_bytes + bytes > max_bytes
                        {
                            break 'gaps;
                        }
                    }
                    let mut found = read.query([seq]).ctx("next_batch: read chunk")?;
                    let Some(row) = found.next().ctx("next_batch: read chunk")? else {
                        continue;
                    };
                    let chunk = Stored::read(row)?;
                    // See `next_whole_batch_for`.
                    if fill == Fill::WholeChunks
                        && !records.is_empty()
                        && (records.len() + chunk.count > max_records
                            || payload_bytes + chunk.payload.len() > max_bytes)
                    {
                        break 'gaps;
                    }
                    let mut taken = 0;
                    while taken < chunk.count && records.len() < max_records {
                        let payload = chunk.event(taken);
                        if !records.is_empty() && payload_bytes + payload.len() > max_bytes {
                            break;
                        }
                        payload_bytes += payload.len();
                        accounted += payload.len() as u64 + RECORD_OVERHEAD_BYTES;
                        records.push(Record {
                            id: chunk.id(taken),
                            payload: payload.to_vec(),
                        });
                        kinds.push(chunk.kind(taken));
                        taken += 1;
                    }
                    if taken == 0 {
                        break 'gaps;
                    }
                    if first == 0 {
                        first = chunk.first_seq();
                    }
                    last = chunk.first_seq() + taken as i64 - 1;
                    if taken < chunk.count {
                        cut = Some((chunk, taken));
                        break 'gaps;
                    }
                    if records.len() >= max_records {
                        break 'gaps;
                    }
                }
                // A batch never spans a range leased to this consumer, so ack
                // can settle it by range.
                if !records.is_empty() {
                    break;
                }
            }
        }
        if records.is_empty() {
            return Ok(None);
        }
        if let Some((chunk, taken)) = cut {
            // The lease must end on a row boundary (see `chunk.rs`).
            let tx = inner
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .ctx("next_batch: begin split")?;
            split(&tx, &chunk, taken)?;
            tx.commit().ctx("next_batch: commit split")?;
        }
        let batch_id = inner.next_batch_id;
        inner.next_batch_id += 1;
        let c = &mut inner.consumers.list[index];
        // Every record of this consumer up to `last` is now leased: the
        // gaps before the batch held none (they were read from `floor`).
        c.floor = c.floor.max(last);
        c.leases.insert(Lease {
            batch_id,
            first,
            last,
            count: records.len() as u64,
            bytes: accounted,
        });
        Ok(Some(Batch {
            id: batch_id,
            records,
            kinds,
            first_seq: first as u64,
            last_seq: last as u64,
            epoch: inner.epoch,
            consumer: c.bit,
        }))
    }

    /// Settles the batch for the consumer that leased it and releases the
    /// lease; records no other consumer still has to deliver are deleted
    /// (one transaction): an acknowledgement is the only thing that
    /// removes a record from the buffer.
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
    /// neither. The dead letters name the consumer that refused them.
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
        let (index, lease) = inner
            .find_lease(batch)
            .ok_or_else(|| BufferError::UnknownBatch { key: batch.key() })?;
        let bound = inner.dead_letter_bound();
        let c = &inner.consumers.list[index];
        let (mask, name) = (c.mask(), c.config.name.clone());
        let tx = inner
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx("ack: begin transaction")?;
        let dead = dead_letter::apply(&tx, bound, dead_letters, &[], now_ms(), Some(&name))?;
        let settled = settle_range(&tx, &lease, mask)?;
        tx.commit().ctx("ack: commit")?;
        if dead.added + dead.removed > 0 {
            inner.note_dead_letters(&dead);
        }
        let unreadable = inner
            .unreadable
            .get(&lease.batch_id)
            .map_or(0, |u| u.records);
        if settled.cleared + unreadable != lease.count {
            tracing::warn!(batch = %batch.key(), settled = settled.cleared, expected = lease.count,
                "buffer ack settled an unexpected number of records");
        }
        inner.counters.acked += settled.deleted + unreadable;
        inner.consumers.list[index].acked += lease.count;
        inner.remove_settled(index, &lease, &settled, false);
        Ok(())
    }

    /// Releases the lease so the records are served again, in order, by the
    /// next `next_batch_for` of the same consumer — for a failed send that
    /// should be retried. A batch that is not in flight is ignored.
    pub fn nack(&self, batch: &Batch) {
        let mut guard = self.lock();
        let inner = &mut *guard;
        match inner.find_lease(batch) {
            Some((index, lease)) => {
                // Rows a repair could not copy exist only in this batch.
                let missing = inner
                    .unreadable
                    .get(&lease.batch_id)
                    .map_or(0, |u| u.records);
                inner.settle_unreadable(&lease, true, true);
                let c = &mut inner.consumers.list[index];
                c.pending = c.pending.saturating_sub(missing);
                c.leases.remove(&lease);
                c.floor = c.floor.min(lease.first - 1);
            }
            None => tracing::debug!(batch = %batch.key(), "nack of a batch that is not in flight"),
        }
    }

    /// Every consumer's delivery progress, in bit order.
    pub fn consumer_stats(&self) -> Vec<ConsumerStats> {
        let inner = self.lock();
        inner
            .consumers
            .list
            .iter()
            .map(|c| inner.progress(c))
            .collect()
    }

    /// One consumer's delivery progress (what its ship loop waits on), or
    /// `None` if the buffer has no such consumer.
    pub fn consumer_progress(&self, consumer: &str) -> Option<ConsumerStats> {
        let inner = self.lock();
        let index = inner.consumers.by_name(consumer)?;
        Some(inner.progress(&inner.consumers.list[index]))
    }

    /// The names of the consumers, in bit order.
    pub fn consumer_names(&self) -> Vec<String> {
        let inner = self.lock();
        inner
            .consumers
            .list
            .iter()
            .map(|c| c.config.name.clone())
            .collect()
    }
}

impl Inner {
    /// `c`'s progress; its oldest pending record is read from the
    /// `(seq, pending, …)` index, starting where it can first be.
    fn progress(&self, c: &crate::consumer::ConsumerState) -> ConsumerStats {
        let oldest_ms: Option<i64> = if c.pending == 0 {
            None
        } else {
            self.conn
                .prepare_cached(
                    "SELECT enqueued_ms FROM records INDEXED BY records_seq_pending \
                     WHERE seq > ?1 AND (pending & ?2) != 0 ORDER BY seq LIMIT 1",
                )
                .and_then(|mut stmt| {
                    stmt.query_row((c.floor.min(first_leased(c)), c.mask()), |row| row.get(0))
                        .optional()
                })
                .unwrap_or_else(|err| {
                    tracing::warn!(error = %err, consumer = %c.config.name,
                        "buffer stats: could not read the oldest pending record");
                    None
                })
        };
        ConsumerStats {
            name: c.config.name.clone(),
            pending: c.pending,
            leased: c.leases.records,
            oldest_age: oldest_ms.map(|ms| {
                std::time::Duration::from_millis(now_ms().saturating_sub(ms).max(0) as u64)
            }),
            acked_total: c.acked,
            dead_lettered_total: c.dead_lettered,
        }
    }
}

/// Where a consumer's oldest pending record may be: before its first
/// lease, or after its floor.
fn first_leased(c: &crate::consumer::ConsumerState) -> i64 {
    c.leases.all().first().map_or(i64::MAX, |l| l.first - 1)
}

/// What settling one lease did to the records in its range.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Settled {
    /// Records whose bit for the consumer was cleared (deleted or not).
    pub(crate) cleared: u64,
    /// Of those, records no consumer needs any more, now deleted.
    pub(crate) deleted: u64,
    /// Their accounted bytes.
    pub(crate) deleted_bytes: u64,
}

/// Clears `mask` from the records of `lease` inside `tx` and deletes those
/// left for no consumer.
pub(crate) fn settle_range(
    tx: &Transaction<'_>,
    lease: &Lease,
    mask: i64,
) -> Result<Settled, BufferError> {
    let mut settled = Settled::default();
    {
        let mut delete = tx
            .prepare_cached(
                "DELETE FROM records WHERE seq >= ?1 AND seq <= ?2 AND pending = ?3 \
                 RETURNING size, count",
            )
            .ctx("ack: prepare delete")?;
        let mut rows = delete
            .query((lease.first, lease.last, mask))
            .ctx("ack: delete records")?;
        while let Some(row) = rows.next().ctx("ack: delete records")? {
            let size: i64 = row.get(0).ctx("ack: read size")?;
            let count: i64 = row.get(1).ctx("ack: read count")?;
            settled.deleted += count.max(0) as u64;
            settled.deleted_bytes += size.max(0) as u64;
        }
    }
    let kept: i64 = tx
        .prepare_cached(
            "UPDATE records SET pending = pending & ~?3 \
             WHERE seq >= ?1 AND seq <= ?2 AND (pending & ?3) != 0 RETURNING count",
        )
        .and_then(|mut stmt| {
            stmt.query_map((lease.first, lease.last, mask), |row| row.get::<_, i64>(0))?
                .sum::<Result<i64, _>>()
        })
        .ctx("ack: clear the consumer's bit")?;
    settled.cleared = settled.deleted + kept.max(0) as u64;
    Ok(settled)
}

impl Inner {
    /// The consumer (by index) and lease matching `batch`, if it came from
    /// this buffer and is still in flight.
    pub(crate) fn find_lease(&self, batch: &Batch) -> Option<(usize, Lease)> {
        let index = self.consumers.by_bit(batch.consumer)?;
        let lease = self.consumers.list[index].leases.find(batch, self.epoch)?;
        Some((index, lease))
    }

    /// After the transaction that settled `lease` for consumer `index`
    /// committed (acked, or dead-lettered when `dead_lettered`): drops the
    /// lease and takes the deleted records out of the totals.
    pub(crate) fn remove_settled(
        &mut self,
        index: usize,
        lease: &Lease,
        settled: &Settled,
        dead_lettered: bool,
    ) {
        let missing = self.unreadable.get(&lease.batch_id).copied();
        self.settle_unreadable(lease, dead_lettered, false);
        let c = &mut self.consumers.list[index];
        c.leases.remove(lease);
        c.pending = c.pending.saturating_sub(lease.count);
        let (gone, gone_bytes) = missing.map_or((0, 0), |m| (m.records, m.bytes));
        self.records = self.records.saturating_sub(settled.deleted + gone);
        self.bytes = self
            .bytes
            .saturating_sub(settled.deleted_bytes + gone_bytes);
        self.after_delete(settled.deleted_bytes + gone_bytes);
    }
}

/// A chunk's events and payload bytes from its indexed `count` and `size`
/// (each event accounts [`RECORD_OVERHEAD_BYTES`] beyond its payload), for
/// deciding whether it fits a batch before reading it. A row whose figures
/// make no sense gives zeros, so it is read and checked as before.
fn indexed_extent(count: i64, size: i64) -> (usize, usize) {
    let count = u64::try_from(count).unwrap_or(0);
    let size = u64::try_from(size).unwrap_or(0);
    let bytes = size.saturating_sub(count.saturating_mul(RECORD_OVERHEAD_BYTES));
    (
        usize::try_from(count).unwrap_or(usize::MAX),
        usize::try_from(bytes).unwrap_or(usize::MAX),
    )
}

/// How a lease fills a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fill {
    /// Up to the limits, cutting the last chunk if it must.
    Exact,
    /// Whole chunks only, unless the first alone is over the limits.
    WholeChunks,
}
