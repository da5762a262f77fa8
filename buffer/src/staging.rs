//! Records written ahead of their commit, so one large ingest does not have
//! to hold every encoded event in memory until its single transaction.
//!
//! An HTTP request of 15 MiB decodes into ~200k events; held in memory until
//! the commit they cost several times the request. Instead the producer
//! *stages* them in slices ([`Buffer::stage`]): each slice goes into the
//! `staged` table in a short transaction of its own, and the final
//! [`Buffer::commit`] (with [`crate::Commit::staged`]) moves them into
//! `records` in the same transaction as the rest of the commit. So:
//!
//! - all-or-nothing still holds: staged rows are not records; nothing is
//!   delivered, counted or visible in stats until the commit;
//! - the size bound and the `when_full` policy apply at the commit, to the
//!   staged records followed by the in-memory ones, exactly as if all had
//!   been passed in memory;
//! - a crash before the commit leaves only staged rows, which
//!   [`Buffer::open`](crate::Buffer::open) drops (the producer never
//!   acknowledged them); an ingest that fails calls [`Buffer::discard`].
//!
//! The table lives in the buffer file (on the same disk as the records it
//! becomes), not in SQLite's temp store, which is often RAM on devices.
//! It is created on first use and dropped at open, so it is no part of the
//! file format.

use rusqlite::{Connection, TransactionBehavior};

use crate::batch::Record;
use crate::buffer::{Buffer, accounted_size};
use crate::chunk::Chunk;
use crate::error::{BufferError, Context};

/// Records staged for one future commit. Each staging owns its rows by a
/// random token, so two producers never mix.
#[derive(Debug)]
pub struct Staged {
    pub(crate) token: i64,
    /// Accounted sizes of the staged records, in order: the `when_full`
    /// policy needs them at the commit without reading the payloads back.
    pub(crate) sizes: Vec<u64>,
    /// Each staged record's consumer mask (0: no consumer wants it, it
    /// will not be stored), routed when staged like an in-memory record.
    pub(crate) masks: Vec<i64>,
}

impl Staged {
    /// Records staged so far.
    pub fn len(&self) -> usize {
        self.sizes.len()
    }

    /// True when nothing was staged.
    pub fn is_empty(&self) -> bool {
        self.sizes.is_empty()
    }
}

impl Default for Staged {
    fn default() -> Self {
        Staged {
            token: rand::random::<i64>(),
            sizes: Vec::new(),
            masks: Vec::new(),
        }
    }
}

impl Buffer {
    /// Writes `records` ahead of the commit that will accept them, after
    /// those already in `staged`. Not durable and not accepted: see the
    /// module docs.
    pub fn stage(&self, staged: &mut Staged, records: &[Record]) -> Result<(), BufferError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut guard = self.lock();
        let inner = &mut *guard;
        ensure_table(&inner.conn)?;
        let tx = inner
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx("stage: begin transaction")?;
        let mut sizes = Vec::with_capacity(records.len());
        let mut masks = Vec::with_capacity(records.len());
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO staged (token, id, payload, size, pending) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .ctx("stage: prepare insert")?;
            for record in records {
                let size = accounted_size(record);
                let mask = inner.consumers.mask_of(record);
                insert
                    .execute((staged.token, &record.id, &record.payload, size as i64, mask))
                    .ctx("stage: insert record")?;
                sizes.push(size);
                masks.push(mask);
            }
        }
        tx.commit().ctx("stage: commit")?;
        staged.sizes.extend(sizes);
        staged.masks.extend(masks);
        Ok(())
    }

    /// Calls `f` with the payload of each of the first `limit` staged
    /// records, in order, reading them back in bounded memory (e.g. to show
    /// what a commit accepted to a live tap).
    pub fn for_each_staged(
        &self,
        staged: &Staged,
        limit: usize,
        mut f: impl FnMut(&[u8]),
    ) -> Result<(), BufferError> {
        if staged.is_empty() || limit == 0 {
            return Ok(());
        }
        let inner = self.lock();
        let mut stmt = inner
            .conn
            .prepare_cached("SELECT payload FROM staged WHERE token = ?1 ORDER BY rowid LIMIT ?2")
            .ctx("stage: prepare read")?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut rows = stmt.query((staged.token, limit)).ctx("stage: read")?;
        while let Some(row) = rows.next().ctx("stage: read")? {
            let payload = row.get_ref(0).ctx("stage: read payload")?;
            f(payload.as_blob().unwrap_or_default());
        }
        Ok(())
    }

    /// Deletes what `staged` wrote, whether or not it was committed (a
    /// commit copies staged rows; it does not move them). Call it once the
    /// ingest is over, on success and on failure alike.
    pub fn discard(&self, staged: Staged) -> Result<(), BufferError> {
        if staged.is_empty() {
            return Ok(());
        }
        let inner = self.lock();
        inner
            .conn
            .prepare_cached("DELETE FROM staged WHERE token = ?1")
            .and_then(|mut stmt| stmt.execute([staged.token]))
            .ctx("stage: discard")?;
        Ok(())
    }
}

/// Creates the `staged` table if this open has not yet.
fn ensure_table(conn: &Connection) -> Result<(), BufferError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS staged (
            token   INTEGER NOT NULL,
            id      BLOB NOT NULL,
            payload BLOB NOT NULL,
            size    INTEGER NOT NULL,
            pending INTEGER NOT NULL
        )",
    )
    .ctx("stage: create table")
}

/// Drops staged rows a previous run left behind: their commit never
/// happened, so their producer never took them as accepted.
pub(crate) fn drop_leftovers(conn: &Connection) -> Result<(), BufferError> {
    conn.execute_batch("DROP TABLE IF EXISTS staged")
        .ctx("open: drop staged records of an unfinished ingest")
}

/// Moves the first `n` routed records (a consumer wants them) of `staged`
/// into `records` as chunks (with `kinds[i]`, the kind of the `i`th staged
/// record, if known), inside the commit's transaction, stamped
/// `enqueued_ms`. Fails (and the caller's transaction rolls back) if fewer
/// are there: a salvage after damage copies only the buffer's own tables.
pub(crate) fn promote(
    tx: &rusqlite::Transaction<'_>,
    staged: &Staged,
    n: usize,
    kinds: &[Option<&str>],
    enqueued_ms: i64,
) -> Result<(), BufferError> {
    if n == 0 {
        return Ok(());
    }
    let mut found = 0usize;
    let mut chunk = Chunk::default();
    {
        let mut stmt = tx
            .prepare_cached(
                "SELECT id, payload, pending FROM staged WHERE token = ?1 ORDER BY rowid",
            )
            .ctx("commit: read staged records")?;
        let mut rows = stmt
            .query([staged.token])
            .ctx("commit: read staged records")?;
        let mut i = 0usize;
        while found < n {
            let Some(row) = rows.next().ctx("commit: read staged records")? else {
                break;
            };
            let kind = kinds.get(i).copied().flatten();
            i += 1;
            let mask: i64 = row.get(2).ctx("commit: read staged mask")?;
            if mask == 0 {
                continue;
            }
            let id: Vec<u8> = row.get(0).ctx("commit: read staged id")?;
            let payload: Vec<u8> = row.get(1).ctx("commit: read staged payload")?;
            if chunk.must_cut(mask, payload.len()) {
                chunk.insert(tx, enqueued_ms)?;
            }
            chunk.push(&id, &payload, kind, mask);
            found += 1;
        }
    }
    chunk.insert(tx, enqueued_ms)?;
    if found == n {
        Ok(())
    } else {
        Err(BufferError::StagedLost { expected: n, found })
    }
}
