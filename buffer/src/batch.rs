//! Records, batches, and the in-memory leases that mark batches in flight.

use std::collections::{BTreeMap, HashMap};

/// One opaque event as the host encoded it.
///
/// The buffer never looks inside `payload`; `id` is the event's stable id so
/// the receiving side can deduplicate the re-deliveries that at-least-once
/// delivery allows.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Record {
    /// The event's stable id, carried unchanged through the buffer.
    pub id: [u8; 16],
    /// The encoded event.
    pub payload: Vec<u8>,
}

/// Records handed to the transport, leased until `ack`, `nack` or
/// `dead_letter`.
///
/// A batch always covers a contiguous run of sequence numbers with no other
/// buffered record in between, which is what lets `ack` delete it with one
/// range statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Unique among the batches of one open buffer; combine with the random
    /// per-open prefix via [`Batch::key`] when it must be unique across runs.
    pub id: u64,
    /// The records, in sequence order.
    pub records: Vec<Record>,
    /// The records' kinds, as stored with their chunks.
    pub(crate) kinds: BatchKinds,
    /// Sequence number of the first record; sequence numbers are never reused.
    pub first_seq: u64,
    /// Sequence number of the last record.
    pub last_seq: u64,
    /// Random per-open prefix; private so a `Batch` can only come from `next_batch`.
    pub(crate) epoch: u64,
    /// The bit of the consumer that leased it: ack and dead-letter settle
    /// the batch for that consumer only.
    pub(crate) consumer: u8,
}

impl Batch {
    /// An idempotency key for the receiver (e.g. an `Idempotency-Key`
    /// header): unique per batch and different across restarts, because a
    /// batch re-read after a restart may be cut differently.
    pub fn key(&self) -> String {
        format!("{:016x}-{:016x}", self.epoch, self.id)
    }

    /// The kind of record `i`, as the producer gave it at the commit
    /// ([`crate::Commit::kinds`]) or the kind reader found it: read from
    /// the chunk, so counting delivered events by kind parses nothing.
    /// `None` when it was not stored (or `i` is out of range).
    pub fn kind(&self, i: usize) -> Option<&str> {
        self.kinds.get(i)
    }

    /// Sum of the payload lengths: what the transport will send.
    pub fn payload_bytes(&self) -> usize {
        self.records.iter().map(|r| r.payload.len()).sum()
    }
}

/// The kinds of a batch's records: a small table and one index per record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct BatchKinds {
    table: Vec<String>,
    index: Vec<Option<u16>>,
}

impl BatchKinds {
    pub(crate) fn push(&mut self, kind: Option<&str>) {
        let index = kind.and_then(|kind| match self.table.iter().position(|k| k == kind) {
            Some(i) => u16::try_from(i).ok(),
            None => {
                let i = u16::try_from(self.table.len()).ok()?;
                self.table.push(kind.to_owned());
                Some(i)
            }
        });
        self.index.push(index);
    }

    fn get(&self, i: usize) -> Option<&str> {
        let k = (*self.index.get(i)?)?;
        self.table.get(usize::from(k)).map(String::as_str)
    }
}

/// One batch in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Lease {
    pub(crate) batch_id: u64,
    pub(crate) first: i64,
    pub(crate) last: i64,
    pub(crate) count: u64,
    /// Accounted bytes (payload + overhead) of the leased records.
    pub(crate) bytes: u64,
}

/// Leases by first sequence number. Leases never overlap, so the unleased
/// records are exactly the gaps between them.
#[derive(Debug, Default)]
pub(crate) struct Leases {
    by_first: BTreeMap<i64, Lease>,
    first_by_id: HashMap<u64, i64>,
    pub(crate) records: u64,
    pub(crate) bytes: u64,
}

impl Leases {
    pub(crate) fn insert(&mut self, lease: Lease) {
        self.records += lease.count;
        self.bytes += lease.bytes;
        self.first_by_id.insert(lease.batch_id, lease.first);
        self.by_first.insert(lease.first, lease);
    }

    /// The lease matching `batch`, if `batch` came from this buffer and is
    /// still in flight.
    pub(crate) fn find(&self, batch: &Batch, epoch: u64) -> Option<Lease> {
        if batch.epoch != epoch {
            return None;
        }
        let first = self.first_by_id.get(&batch.id)?;
        let lease = self.by_first.get(first)?;
        let same = i64::try_from(batch.first_seq).ok() == Some(lease.first)
            && i64::try_from(batch.last_seq).ok() == Some(lease.last)
            && batch.records.len() as u64 == lease.count;
        same.then_some(*lease)
    }

    pub(crate) fn remove(&mut self, lease: &Lease) {
        if self.by_first.remove(&lease.first).is_some() {
            self.first_by_id.remove(&lease.batch_id);
            self.records = self.records.saturating_sub(lease.count);
            self.bytes = self.bytes.saturating_sub(lease.bytes);
        }
    }

    /// Every lease in flight, in sequence order.
    pub(crate) fn all(&self) -> Vec<Lease> {
        self.by_first.values().copied().collect()
    }

    /// Unleased sequence ranges in order, as exclusive bounds `(after, before)`.
    pub(crate) fn gaps(&self) -> Vec<(i64, i64)> {
        let mut gaps = Vec::with_capacity(self.by_first.len() + 1);
        let mut after = 0;
        for lease in self.by_first.values() {
            if lease.first > after + 1 {
                gaps.push((after, lease.first));
            }
            after = lease.last;
        }
        gaps.push((after, i64::MAX));
        gaps
    }
}
