//! Chunks: many events in one `records` row (schema version 3).
//!
//! One row per event cost every event an insert (row, two index entries,
//! WAL frames), a read back and a delete. A commit now stores its events in
//! chunk rows of up to [`CHUNK_MAX_EVENTS`] events / [`CHUNK_MAX_BYTES`]
//! payload bytes: the events' wire payloads concatenated as they will be
//! shipped, their ids concatenated (16 bytes each), their lengths (`lens`,
//! 4 bytes little-endian each; NULL for a chunk of one, the shape of a
//! version-2 row) and their kinds (`kinds`, a small string table plus one
//! index per event; NULL when unknown), so a batch is read back, shipped
//! and counted by kind without parsing a payload.
//!
//! Invariants:
//! - **Events keep their own sequence numbers.** A chunk of `count` events
//!   is keyed by its *last* event's sequence number and covers
//!   `seq - count + 1 ..= seq`; numbers are taken from the AUTOINCREMENT
//!   high-water mark, so they are still never reused. Batches, leases,
//!   floors and `since_seq` are in event sequence numbers as before.
//! - **One mask per chunk.** A chunk only holds consecutive events with the
//!   same consumer mask; commits whose events go to different transports
//!   (kind filters) are cut where the mask changes, so order is kept and a
//!   consumer settles whole chunks.
//! - **Leases end on chunk boundaries.** When a batch limit cuts a chunk,
//!   the chunk is split in two rows before the lease is taken (see
//!   [`split`]), so ack, eviction and dead-lettering still work on whole
//!   rows in a sequence range. A shipper's lease
//!   (`Buffer::next_whole_batch_for`) stops before a chunk that would not
//!   fit whole instead, and splits only a first chunk over its limits.

use rusqlite::Transaction;

use crate::config::RECORD_OVERHEAD_BYTES;
use crate::error::{BufferError, Context};

/// Most events in one chunk: the host's default `[batch] max_events`, so a
/// full chunk is one batch and is rarely split.
pub(crate) const CHUNK_MAX_EVENTS: usize = 1000;

/// Most payload bytes in one chunk (a single larger event is a chunk alone).
pub(crate) const CHUNK_MAX_BYTES: usize = 1 << 20;

/// Kind index of an event whose kind is unknown.
const NO_KIND: u16 = u16::MAX;

/// A chunk being built from consecutive events of one mask.
#[derive(Debug, Default)]
pub(crate) struct Chunk {
    pub(crate) ids: Vec<u8>,
    pub(crate) payload: Vec<u8>,
    lens: Vec<u8>,
    kind_table: Vec<String>,
    kind_index: Vec<u16>,
    any_kind: bool,
    pub(crate) count: usize,
    /// Accounted bytes: payloads plus [`RECORD_OVERHEAD_BYTES`] per event.
    pub(crate) size: u64,
    pub(crate) mask: i64,
}

impl Chunk {
    /// Whether an event of `len` payload bytes and `mask` belongs in a new
    /// chunk instead of this one.
    pub(crate) fn must_cut(&self, mask: i64, len: usize) -> bool {
        self.count > 0
            && (self.mask != mask
                || self.count >= CHUNK_MAX_EVENTS
                || self.payload.len() + len > CHUNK_MAX_BYTES)
    }

    /// Makes room for the next `events` events of `bytes` payload bytes
    /// (each capped at what one chunk holds) before an empty chunk is
    /// filled: growing by doubling instead copied the payload about twice
    /// more, while the buffer's lock is held.
    pub(crate) fn reserve_for(&mut self, events: usize, bytes: usize) {
        if self.count == 0 {
            let events = events.min(CHUNK_MAX_EVENTS);
            self.payload.reserve(bytes.min(CHUNK_MAX_BYTES));
            self.ids.reserve(events * 16);
            self.lens.reserve(events * 4);
            self.kind_index.reserve(events);
        }
    }

    /// Appends one event.
    pub(crate) fn push(&mut self, id: &[u8], payload: &[u8], kind: Option<&str>, mask: i64) {
        self.mask = mask;
        self.ids.extend_from_slice(id);
        self.payload.extend_from_slice(payload);
        self.lens
            .extend_from_slice(&(payload.len() as u32).to_le_bytes());
        let index = match kind {
            Some(kind) => {
                self.any_kind = true;
                match self.kind_table.iter().position(|k| k == kind) {
                    Some(i) => i as u16,
                    None if self.kind_table.len() < usize::from(NO_KIND) => {
                        self.kind_table.push(kind.to_owned());
                        (self.kind_table.len() - 1) as u16
                    }
                    None => NO_KIND,
                }
            }
            None => NO_KIND,
        };
        self.kind_index.push(index);
        self.count += 1;
        self.size += payload.len() as u64 + RECORD_OVERHEAD_BYTES;
    }

    /// Stores the chunk under fresh sequence numbers inside `tx`, then
    /// empties it for reuse.
    pub(crate) fn insert(
        &mut self,
        tx: &Transaction<'_>,
        enqueued_ms: i64,
    ) -> Result<(), BufferError> {
        if self.count == 0 {
            return Ok(());
        }
        let kinds = self
            .any_kind
            .then(|| encode_kinds(&self.kind_table, &self.kind_index));
        let lens = (self.count > 1).then_some(&self.lens[..]);
        tx.prepare_cached(
            "INSERT INTO records (seq, id, payload, size, enqueued_ms, pending, count, lens, kinds) \
             VALUES (COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'records'), 0) + ?1, \
                     ?2, ?3, ?4, ?5, ?6, ?1, ?7, ?8)",
        )
        .and_then(|mut stmt| {
            stmt.execute((
                self.count as i64,
                &self.ids,
                &self.payload,
                self.size as i64,
                enqueued_ms,
                self.mask,
                lens,
                kinds,
            ))
        })
        .ctx("append: insert chunk")?;
        *self = Chunk::default();
        Ok(())
    }
}

/// A chunk row as read back.
#[derive(Debug)]
pub(crate) struct Stored {
    /// The last event's sequence number (the row's key).
    pub(crate) seq: i64,
    pub(crate) count: usize,
    pub(crate) ids: Vec<u8>,
    pub(crate) payload: Vec<u8>,
    /// Where each event's payload starts; `count + 1` entries.
    pub(crate) offsets: Vec<usize>,
    /// Each event's kind, by index into `kind_table`.
    pub(crate) kinds: Vec<Option<u16>>,
    pub(crate) kind_table: Vec<String>,
    pub(crate) enqueued_ms: i64,
    pub(crate) pending: i64,
}

/// The columns [`Stored::read`] expects, in order.
pub(crate) const COLUMNS: &str = "seq, count, id, payload, lens, kinds, enqueued_ms, pending";

impl Stored {
    /// Decodes a row selected with [`COLUMNS`]. A row whose parts do not
    /// agree (ids, lengths and payload) is reported as damaged.
    pub(crate) fn read(row: &rusqlite::Row<'_>) -> Result<Stored, BufferError> {
        let seq: i64 = row.get(0).ctx("read chunk: seq")?;
        let bad = |why: &str| BufferError::BadChunk {
            seq,
            why: why.to_owned(),
        };
        // A column of the wrong type is a row this buffer did not write.
        let count: i64 = row.get(1).map_err(|_| bad("count is not an integer"))?;
        let ids: Vec<u8> = row.get(2).map_err(|_| bad("ids are not a blob"))?;
        let payload: Vec<u8> = row.get(3).map_err(|_| bad("payload is not a blob"))?;
        let lens: Option<Vec<u8>> = row.get(4).map_err(|_| bad("lengths are not a blob"))?;
        let kinds: Option<Vec<u8>> = row.get(5).map_err(|_| bad("kinds are not a blob"))?;
        let count = usize::try_from(count)
            .ok()
            .filter(|c| *c >= 1)
            .ok_or_else(|| bad("count"))?;
        if ids.len() != count * 16 {
            return Err(bad("ids do not match the count"));
        }
        let mut offsets = Vec::with_capacity(count + 1);
        offsets.push(0);
        match lens {
            None if count == 1 => offsets.push(payload.len()),
            None => return Err(bad("lengths missing")),
            Some(lens) => {
                if lens.len() != count * 4 {
                    return Err(bad("lengths do not match the count"));
                }
                let mut at = 0usize;
                for len in lens.chunks_exact(4) {
                    at += u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
                    offsets.push(at);
                }
                if at != payload.len() {
                    return Err(bad("lengths do not add up to the payload"));
                }
            }
        }
        let (kind_table, kinds) = match kinds {
            None => (Vec::new(), vec![None; count]),
            Some(blob) => decode_kinds(&blob, count).ok_or_else(|| bad("kinds"))?,
        };
        Ok(Stored {
            seq,
            count,
            ids,
            payload,
            offsets,
            kinds,
            kind_table,
            enqueued_ms: row.get(6).map_err(|_| bad("enqueued_ms"))?,
            pending: row.get(7).map_err(|_| bad("pending"))?,
        })
    }

    /// The first event's sequence number.
    pub(crate) fn first_seq(&self) -> i64 {
        self.seq - self.count as i64 + 1
    }

    /// Event `i`'s id.
    pub(crate) fn id(&self, i: usize) -> [u8; 16] {
        let mut id = [0u8; 16];
        id.copy_from_slice(&self.ids[i * 16..i * 16 + 16]);
        id
    }

    /// Event `i`'s payload.
    pub(crate) fn event(&self, i: usize) -> &[u8] {
        &self.payload[self.offsets[i]..self.offsets[i + 1]]
    }

    /// Event `i`'s kind, if stored.
    pub(crate) fn kind(&self, i: usize) -> Option<&str> {
        self.kinds[i].and_then(|k| self.kind_table.get(usize::from(k)).map(String::as_str))
    }

    /// Events `range` as a new chunk (same mask).
    fn part(&self, range: std::ops::Range<usize>) -> Chunk {
        let mut chunk = Chunk::default();
        for i in range {
            chunk.push(
                &self.ids[i * 16..i * 16 + 16],
                self.event(i),
                self.kind(i),
                self.pending,
            );
        }
        chunk
    }
}

/// Splits `stored` after its first `head` events into two rows covering the
/// same sequence numbers, so a lease can end between them. Only the
/// layout changes: same events, ids, masks and enqueue time.
pub(crate) fn split(tx: &Transaction<'_>, stored: &Stored, head: usize) -> Result<(), BufferError> {
    debug_assert!(head > 0 && head < stored.count);
    let first = stored.part(0..head);
    let rest = stored.part(head..stored.count);
    let encode = |c: &Chunk| {
        (
            (c.count > 1).then(|| c.lens.clone()),
            c.any_kind
                .then(|| encode_kinds(&c.kind_table, &c.kind_index)),
        )
    };
    let (first_lens, first_kinds) = encode(&first);
    let (rest_lens, rest_kinds) = encode(&rest);
    tx.prepare_cached(
        "UPDATE records SET id = ?2, payload = ?3, size = ?4, count = ?5, lens = ?6, kinds = ?7 \
         WHERE seq = ?1",
    )
    .and_then(|mut stmt| {
        stmt.execute((
            stored.seq,
            &rest.ids,
            &rest.payload,
            rest.size as i64,
            rest.count as i64,
            rest_lens,
            rest_kinds,
        ))
    })
    .ctx("next_batch: split chunk (tail)")?;
    tx.prepare_cached(
        "INSERT INTO records (seq, id, payload, size, enqueued_ms, pending, count, lens, kinds) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )
    .and_then(|mut stmt| {
        stmt.execute((
            stored.first_seq() + head as i64 - 1,
            &first.ids,
            &first.payload,
            first.size as i64,
            stored.enqueued_ms,
            stored.pending,
            first.count as i64,
            first_lens,
            first_kinds,
        ))
    })
    .ctx("next_batch: split chunk (head)")?;
    Ok(())
}

/// `u16` table length, each entry as `u16` length + UTF-8, then one `u16`
/// index per event (all little-endian; `u16::MAX`: unknown).
fn encode_kinds(table: &[String], index: &[u16]) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(2 + table.iter().map(|k| k.len() + 2).sum::<usize>() + index.len() * 2);
    out.extend_from_slice(&(table.len() as u16).to_le_bytes());
    for kind in table {
        let bytes = &kind.as_bytes()[..kind.len().min(usize::from(u16::MAX))];
        out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
        out.extend_from_slice(bytes);
    }
    for i in index {
        out.extend_from_slice(&i.to_le_bytes());
    }
    out
}

fn decode_kinds(blob: &[u8], count: usize) -> Option<(Vec<String>, Vec<Option<u16>>)> {
    let u16_at = |at: usize| -> Option<u16> {
        blob.get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let n = usize::from(u16_at(0)?);
    let mut at = 2;
    let mut table = Vec::with_capacity(n);
    for _ in 0..n {
        let len = usize::from(u16_at(at)?);
        let text = std::str::from_utf8(blob.get(at + 2..at + 2 + len)?).ok()?;
        table.push(text.to_owned());
        at += 2 + len;
    }
    if blob.len() != at + count * 2 {
        return None;
    }
    let kinds = (0..count)
        .map(|i| u16_at(at + i * 2).filter(|k| usize::from(*k) < n))
        .collect();
    Some((table, kinds))
}
