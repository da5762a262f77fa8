//! The dead-letter table: what the pipeline or the transport gave up on,
//! kept with the reason so an operator can see it, fix the cause and replay
//! it, instead of it vanishing or blocking the queue forever.
//!
//! Invariants:
//! - **Bounded in bytes.** The table's accounted size (each row's kept
//!   bytes, reason and input name plus [`RECORD_OVERHEAD_BYTES`]) never
//!   exceeds `dead_letter_max_bytes`, nor its row count `dead_letter_max`:
//!   the oldest rows are evicted in the transaction that added the new ones,
//!   counted in [`Stats`](crate::Stats) and logged once per episode
//!   ([`bound`]).
//! - **Only what may be kept is kept.** The buffer stores what it is given;
//!   the host decides what that is ([`Kept`]): a screened payload, only a
//!   digest of a frame, or nothing but the id and the reason.
//! - **A replay settles a row once.** Rows a replay sends back are deleted
//!   in the same transaction as their new outcome
//!   ([`Commit::replayed`](crate::Commit::replayed)), so a crash neither
//!   loses nor duplicates them.

mod bound;
mod query;
mod schema;

use rusqlite::{Transaction, TransactionBehavior};

use crate::batch::{Batch, Record};
use crate::buffer::{Buffer, now_ms};
use crate::commit::Commit;
use crate::config::RECORD_OVERHEAD_BYTES;
use crate::error::{BufferError, Context};

pub(crate) use bound::{Bound, Pruned};
pub use query::{DeadLetterFilter, ReasonSummary};
pub(crate) use schema::{totals, upgrade};

/// Where a dead letter came from, which decides how it can be replayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// An event refused before the buffer (a validator's reject, a source
    /// event over a host cap), in its JSON form: replayed through the stage
    /// chains.
    Event,
    /// A frame from host input `input` that did not decode (or whose
    /// decoded events broke a host cap): replayed through that input's
    /// decoder.
    Frame {
        /// The input's name in the config.
        input: String,
    },
    /// A buffered record the transport gave up on: it already went through
    /// every stage and carries its provenance, so it is replayed straight
    /// into the buffer.
    Batch,
}

impl Origin {
    /// The name stored in the `origin` column.
    pub fn as_str(&self) -> &'static str {
        match self {
            Origin::Event => "event",
            Origin::Frame { .. } => "frame",
            Origin::Batch => "batch",
        }
    }

    fn input(&self) -> Option<&str> {
        match self {
            Origin::Frame { input } => Some(input),
            _ => None,
        }
    }

    fn from_columns(origin: &str, input: Option<String>) -> Origin {
        match (origin, input) {
            ("frame", Some(input)) => Origin::Frame { input },
            ("batch", _) => Origin::Batch,
            _ => Origin::Event,
        }
    }
}

/// What a dead letter keeps of what was given up on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kept {
    /// The bytes (for an event: after the privacy stages), so it can be
    /// inspected and replayed.
    Payload(Vec<u8>),
    /// Only the length and SHA-256 of a frame that could not be screened
    /// (it did not decode, so no privacy policy could run on it): enough to
    /// find the line in its source, nothing to leak.
    Digest {
        /// The frame's length in bytes.
        len: u64,
        /// The frame's SHA-256.
        sha256: [u8; 32],
    },
    /// Nothing but the id and the reason: the privacy stages would have
    /// dropped it (or failed, which drops too).
    Nothing,
}

impl Kept {
    fn as_str(&self) -> &'static str {
        match self {
            Kept::Payload(_) => "payload",
            Kept::Digest { .. } => "digest",
            Kept::Nothing => "none",
        }
    }

    fn stored_len(&self) -> u64 {
        match self {
            Kept::Payload(p) => p.len() as u64,
            Kept::Digest { .. } => 32,
            Kept::Nothing => 0,
        }
    }
}

/// A dead letter to store (see [`Commit::dead_letters`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDeadLetter {
    /// The event's id, or the frame's (its stable key when it has one), to
    /// correlate with logs and the receiver.
    pub id: [u8; 16],
    /// Where it came from.
    pub origin: Origin,
    /// What is kept of it.
    pub kept: Kept,
    /// Why it was given up on.
    pub reason: String,
}

impl NewDeadLetter {
    /// An event refused before the buffer, kept as given: for callers that
    /// have no privacy stages to apply.
    pub fn event(record: &Record, reason: &str) -> Self {
        NewDeadLetter {
            id: record.id,
            origin: Origin::Event,
            kept: Kept::Payload(record.payload.clone()),
            reason: reason.to_string(),
        }
    }

    /// What this row counts against `dead_letter_max_bytes`.
    pub fn accounted_size(&self) -> u64 {
        accounted(
            self.kept.stored_len(),
            &self.reason,
            self.origin.input().unwrap_or(""),
        )
    }
}

/// A stored dead letter, as an operator or a replay sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The row's number: increasing, never reused; names one row for
    /// `show`, `replay` and `purge`.
    pub seq: i64,
    /// The event's (or frame's) stable id.
    pub id: [u8; 16],
    /// Where it came from.
    pub origin: Origin,
    /// What is kept of it.
    pub kept: Kept,
    /// Why it was given up on, as the caller put it.
    pub reason: String,
    /// When it was dead-lettered, in Unix milliseconds (wall clock, so it
    /// means something after a restart).
    pub at_unix_ms: i64,
    /// What the row counts against `dead_letter_max_bytes`.
    pub size: u64,
    /// The transport (buffer consumer) that gave up on it, for a record
    /// refused after the buffer; `None` for what was refused before it.
    pub transport: Option<String>,
}

impl DeadLetter {
    /// The kept bytes, if the payload was kept.
    pub fn payload(&self) -> Option<&[u8]> {
        match &self.kept {
            Kept::Payload(p) => Some(p),
            _ => None,
        }
    }
}

/// Rows and accounted bytes a commit added to and removed from the table.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Change {
    pub(crate) added: u64,
    pub(crate) added_bytes: u64,
    pub(crate) removed: u64,
    pub(crate) removed_bytes: u64,
    pub(crate) pruned: Pruned,
}

impl Buffer {
    /// Moves a leased batch's records to the dead-letter table in one
    /// transaction — for a batch the receiver rejects permanently (e.g. HTTP
    /// 400), which retrying would only resend forever. The records keep
    /// their payload (they already went through the privacy stages).
    ///
    /// Fails with [`BufferError::UnknownBatch`] if the batch is not in flight.
    pub fn dead_letter(&self, batch: &Batch, reason: &str) -> Result<(), BufferError> {
        self.repairing(|| self.dead_letter_once(batch, reason))
    }

    fn dead_letter_once(&self, batch: &Batch, reason: &str) -> Result<(), BufferError> {
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
            .ctx("dead_letter: begin transaction")?;
        let overhead = accounted(0, reason, "") as i64;
        let (mut moved, mut moved_bytes) = (0u64, 0u64);
        {
            let mut read = tx
                .prepare_cached(&format!(
                    "SELECT {} FROM records \
                     WHERE seq >= ?1 AND seq <= ?2 AND (pending & ?3) != 0 ORDER BY seq",
                    crate::chunk::COLUMNS
                ))
                .ctx("dead_letter: read records")?;
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO dead_letter \
                     (id, payload, reason, at_ms, origin, kept, size, transport) \
                     VALUES (?1, ?2, ?3, ?4, 'batch', 'payload', ?5, ?6)",
                )
                .ctx("dead_letter: prepare copy")?;
            let mut rows = read
                .query((lease.first, lease.last, mask))
                .ctx("dead_letter: read records")?;
            let at = now_ms();
            while let Some(row) = rows.next().ctx("dead_letter: read records")? {
                let chunk = crate::chunk::Stored::read(row)?;
                for i in 0..chunk.count {
                    let payload = chunk.event(i);
                    insert
                        .execute((
                            &chunk.id(i)[..],
                            payload,
                            reason,
                            at,
                            payload.len() as i64 + overhead,
                            &name,
                        ))
                        .ctx("dead_letter: copy records")?;
                    moved += 1;
                    moved_bytes += payload.len() as u64;
                }
            }
        }
        let settled = crate::delivery::settle_range(&tx, &lease, mask)?;
        let mut change = Change {
            added: moved,
            added_bytes: moved_bytes + moved * overhead.max(0) as u64,
            ..Change::default()
        };
        change.pruned = bound::prune(&tx, bound, &change)?;
        tx.commit().ctx("dead_letter: commit")?;
        tracing::warn!(batch = %batch.key(), records = moved, reason, transport = %name,
            "batch dead-lettered");
        inner.note_dead_letters(&change);
        inner.consumers.list[index].dead_lettered += lease.count;
        inner.remove_settled(index, &lease, &settled, true);
        Ok(())
    }

    /// Stores records that were rejected before they were ever buffered,
    /// kept as given ([`Origin::Event`], [`Kept::Payload`]). One
    /// transaction; see [`Buffer::commit`] to store dead letters of any
    /// origin together with the accepted records.
    pub fn dead_letter_records(&self, records: &[Record], reason: &str) -> Result<(), BufferError> {
        let dead: Vec<NewDeadLetter> = records
            .iter()
            .map(|r| NewDeadLetter::event(r, reason))
            .collect();
        self.commit(&Commit {
            dead_letters: &dead,
            ..Commit::default()
        })
        .map(|_| ())
    }
}

/// Inserts `dead` and deletes the `replayed` rows inside `tx`, then keeps
/// the table within its bounds; the caller applies the returned change to
/// the totals after the commit.
pub(crate) fn apply(
    tx: &Transaction<'_>,
    bound: Bound,
    dead: &[NewDeadLetter],
    replayed: &[i64],
    now: i64,
    transport: Option<&str>,
) -> Result<Change, BufferError> {
    let mut change = Change::default();
    if !replayed.is_empty() {
        let mut remove = tx
            .prepare_cached("DELETE FROM dead_letter WHERE seq = ?1 RETURNING size")
            .ctx("dead letter: prepare replay delete")?;
        for seq in replayed {
            let mut rows = remove.query([seq]).ctx("dead letter: delete replayed")?;
            while let Some(row) = rows.next().ctx("dead letter: delete replayed")? {
                let size: i64 = row.get(0).ctx("dead letter: read size")?;
                change.removed += 1;
                change.removed_bytes += size.max(0) as u64;
            }
        }
    }
    if !dead.is_empty() {
        let mut insert = tx
            .prepare_cached(
                "INSERT INTO dead_letter \
                 (id, payload, reason, at_ms, origin, input, kept, payload_len, sha256, size, \
                  transport) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )
            .ctx("dead letter: prepare insert")?;
        for d in dead {
            let (payload, len, sha256): (&[u8], Option<i64>, Option<&[u8]>) = match &d.kept {
                Kept::Payload(p) => (p, Some(p.len() as i64), None),
                Kept::Digest { len, sha256 } => (&[], Some(*len as i64), Some(sha256)),
                Kept::Nothing => (&[], None, None),
            };
            let size = d.accounted_size();
            insert
                .execute(rusqlite::params![
                    &d.id,
                    payload,
                    &d.reason,
                    now,
                    d.origin.as_str(),
                    d.origin.input(),
                    d.kept.as_str(),
                    len,
                    sha256,
                    size as i64,
                    transport,
                ])
                .ctx("dead letter: insert")?;
            change.added += 1;
            change.added_bytes += size;
        }
    }
    if change.added > 0 {
        change.pruned = bound::prune(tx, bound, &change)?;
    }
    Ok(change)
}

/// What a row counts against `dead_letter_max_bytes`: what it keeps, its
/// reason and input name, and the per-row overhead records pay too.
fn accounted(kept: u64, reason: &str, input: &str) -> u64 {
    kept + reason.len() as u64 + input.len() as u64 + RECORD_OVERHEAD_BYTES
}
