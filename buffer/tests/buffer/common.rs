//! Helpers shared by the buffer tests.

use std::path::Path;

use halyard_buffer::{
    Batch, Buffer, BufferConfig, OpenReport, RECORD_OVERHEAD_BYTES, Record, WhenFull,
};

/// A record whose id encodes `n` and whose payload is `len` bytes derived from `n`.
pub fn rec(n: u64, len: usize) -> Record {
    let payload = (0..len)
        .map(|i| (n as usize).wrapping_add(i) as u8)
        .collect();
    Record {
        id: u128::from(n).to_be_bytes(),
        payload,
    }
}

/// Records `range` with `len`-byte payloads.
pub fn recs(range: std::ops::Range<u64>, len: usize) -> Vec<Record> {
    range.map(|n| rec(n, len)).collect()
}

/// The `n` a record was made from.
pub fn num(record: &Record) -> u64 {
    u64::try_from(u128::from_be_bytes(record.id)).expect("test ids fit in u64")
}

/// The numbers of a batch's records, checking each payload came back intact.
pub fn nums(batch: &Batch) -> Vec<u64> {
    batch
        .records
        .iter()
        .map(|r| {
            let n = num(r);
            assert_eq!(r, &rec(n, r.payload.len()), "payload of record {n} changed");
            n
        })
        .collect()
}

/// Payload length that makes a record account for exactly 100 bytes.
pub const LEN_100: usize = 100 - RECORD_OVERHEAD_BYTES as usize;

pub fn config(dir: &Path, max_bytes: u64, when_full: WhenFull) -> BufferConfig {
    BufferConfig {
        when_full,
        ..BufferConfig::new(dir.join("buffer.db"), max_bytes)
    }
}

pub fn open(config: &BufferConfig) -> (Buffer, OpenReport) {
    Buffer::open(config.clone()).expect("open buffer")
}

/// Reads and acks everything, returning the record numbers in delivery order.
pub fn drain(buffer: &Buffer, batch_records: usize) -> Vec<u64> {
    let mut out = Vec::new();
    while let Some(batch) = buffer
        .next_batch(batch_records, usize::MAX)
        .expect("next_batch")
    {
        out.extend(nums(&batch));
        buffer.ack(&batch).expect("ack");
    }
    out
}

pub fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// A dead letter as the record it was made from (it must keep its payload).
pub fn as_record(d: &halyard_buffer::DeadLetter) -> Record {
    Record {
        id: d.id,
        payload: d.payload().expect("payload kept").to_vec(),
    }
}

/// `records` as dead-lettered events with `reason`, payloads kept.
pub fn dead_events(records: &[Record], reason: &str) -> Vec<halyard_buffer::NewDeadLetter> {
    records
        .iter()
        .map(|r| halyard_buffer::NewDeadLetter::event(r, reason))
        .collect()
}
