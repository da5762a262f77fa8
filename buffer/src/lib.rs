//! # Halyard's durable buffer
//!
//! Sits between the pipeline's stages and the transport so that telemetry
//! survives crashes, restarts, power cuts and long network outages on an edge
//! device, within a fixed disk budget.
//!
//! ## Invariants
//!
//! 1. **Accepted means committed.** A record is accepted only once the SQLite
//!    transaction holding it has committed (WAL mode); [`Buffer::append`]
//!    returns only after the commit. One `append` call is one transaction.
//! 2. **Only an ack removes a record.** A record leaves the buffer only when
//!    every transport it is for (its [consumers](Consumer)) acknowledged its
//!    batch ([`Buffer::ack`]) or gave up on it explicitly
//!    ([`Buffer::dead_letter`]), or when the `DropOldest` policy evicts it
//!    (counted). Each consumer leases and settles on its own, so one
//!    transport's outage grows its backlog without blocking the others
//!    (see `consumer.rs`). A crash, `kill -9` or power loss loses nothing that
//!    was accepted: on reopen every unacknowledged record is served again.
//!    Delivery is therefore at-least-once; duplicates are possible only for
//!    batches that were in flight (leased but not acked) at the crash. Each
//!    record carries the event's stable 16-byte id so receivers can dedupe.
//!    Power-loss safety needs `synchronous_full`; with the default `NORMAL`
//!    a power cut may roll back the last commits, but a process crash cannot.
//! 3. **Leases are memory-only.** [`Buffer::next_batch_for`] marks records as
//!    in flight to one consumer in memory; a lease never survives a restart, so nothing can be
//!    stranded by a crash between send and ack.
//! 4. **Bounded startup.** Opening runs one aggregate query over the
//!    `(seq, size)` index (not the payloads) and never loads the backlog;
//!    records are read in bounded batches by sequence number. (Only a
//!    damaged file is read in full, once, to salvage it; see 7.)
//! 5. **Bounded size, counted losses.** The accounted size (below) never
//!    exceeds `max_bytes`, with one exception: under [`WhenFull::Block`] a
//!    producer that was let in by [`Buffer::admit`] before running its
//!    plugins has its commit stored whole ([`Commit::admitted`]), which may
//!    pass `max_bytes` by at most that one commit — the price of never
//!    running plugins twice on the same input. When a slice does not fit,
//!    [`WhenFull`] decides, and every dropped or evicted record is counted in
//!    [`AppendOutcome`] and [`Stats`]. Records in flight are never evicted.
//!    Large commits can be staged ahead in slices ([`Buffer::stage`]) so
//!    their producer need not hold them all in memory.
//! 6. **Space comes back.** The file uses `auto_vacuum = INCREMENTAL`; when
//!    the buffer drains (or 16 MiB have been deleted since the last time)
//!    `PRAGMA incremental_vacuum` returns free pages to the filesystem, and
//!    `journal_size_limit` truncates the WAL after checkpoints.
//! 7. **Damage is contained to the damaged part.** When opening, reading,
//!    acknowledging or appending meets a damaged page (SQLite says corrupt,
//!    not a database, or a truncated file), every row that can still be read
//!    is copied, with its sequence number and id, into a fresh file; the
//!    damaged file is renamed to `<name>.corrupt-<unix-time>` (with its
//!    `-wal`) for the operator, and the operation is retried once on the
//!    fresh file, so delivery resumes right after the damaged range instead
//!    of retrying a failing read for ever. Each episode is a [`Damage`]
//!    report with exact counts of what was recovered and lost
//!    ([`Buffer::take_damage`], [`OpenReport::damage`],
//!    [`Stats::damage_lost_total`]); the host publishes it as
//!    `buffer.damaged`. Corruption never blocks startup.
//! 8. **One owner.** The file is locked exclusively (`locking_mode =
//!    EXCLUSIVE`); a second opener gets [`BufferError::InUse`].
//!
//! ## Size accounting
//!
//! A record counts `payload.len() + RECORD_OVERHEAD_BYTES` (64) against
//! `max_bytes`. The overhead approximates the per-row cost (sequence number,
//! id, size, timestamp, cell header, index entry), so many tiny records cannot
//! evade the bound. `max_bytes` bounds this logical figure, not the file size:
//! the file also holds free pages, page slack, the WAL and index pages, which
//! depend on SQLite internals and checkpoint timing; see
//! [`BufferConfig::max_bytes`].
//!
//! ## On-disk format (schema version 3)
//!
//! One SQLite file plus its `-wal` (no `-shm`: exclusive locking keeps the WAL
//! index in memory). Pragmas: `journal_mode = WAL`, `auto_vacuum =
//! INCREMENTAL` (set at creation), `synchronous = NORMAL | FULL`,
//! `locking_mode = EXCLUSIVE`, `journal_size_limit = 4 MiB`,
//! `busy_timeout = 5 s`.
//!
//! ```sql
//! CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL);
//!   -- ('schema_version', 1); a file with a newer version is refused untouched
//! CREATE TABLE records (              -- one row per chunk of events (see chunk.rs)
//!     seq         INTEGER PRIMARY KEY AUTOINCREMENT, -- the chunk's LAST event's sequence
//!                                     -- number; it covers seq - count + 1 ..= seq; never reused
//!     id          BLOB NOT NULL,      -- the events' 16-byte stable ids, concatenated
//!     payload     BLOB NOT NULL,      -- the events' payloads (opaque, encoded by the host),
//!                                     -- concatenated
//!     size        INTEGER NOT NULL,   -- accounted bytes: length(payload) + 64 * count
//!     enqueued_ms INTEGER NOT NULL,   -- wall clock, Unix ms; for oldest_age
//!     pending     INTEGER NOT NULL DEFAULT -1, -- bits of the consumers still to settle it
//!     count       INTEGER NOT NULL DEFAULT 1,  -- events in the chunk
//!     lens        BLOB,               -- u32 LE payload length per event; NULL if count = 1
//!     kinds       BLOB);              -- kind table + u16 index per event; NULL if unknown
//! CREATE INDEX records_seq_size ON records (seq, size, count); -- covers the open-time SUMs
//! CREATE INDEX records_seq_pending ON records (seq, pending, size, enqueued_ms, count);
//!   -- covers per-consumer counts, oldest ages and the eviction scan
//! CREATE TABLE consumers (            -- the transports draining the buffer
//!     name      TEXT PRIMARY KEY NOT NULL,
//!     bit       INTEGER NOT NULL UNIQUE, -- its bit in records.pending (0..=62)
//!     kinds     TEXT NOT NULL DEFAULT '', -- kind prefixes, newline-separated
//!     since_seq INTEGER NOT NULL DEFAULT 0); -- the last seq before it was added
//! CREATE TABLE dead_letter (
//!     seq     INTEGER PRIMARY KEY AUTOINCREMENT,
//!     id      BLOB NOT NULL,
//!     payload BLOB NOT NULL,          -- empty unless kept = 'payload'
//!     reason  TEXT NOT NULL,
//!     at_ms   INTEGER NOT NULL,       -- when it was dead-lettered, Unix ms
//!     -- added on open to older files (see dead_letter/schema.rs):
//!     origin TEXT, input TEXT, kept TEXT, payload_len INTEGER, sha256 BLOB, size INTEGER,
//!     transport TEXT);                -- the consumer that refused a record
//! CREATE INDEX dead_letter_seq_size ON dead_letter (seq, size);
//! CREATE TABLE cursors (              -- input positions, committed with their events
//!     name  TEXT PRIMARY KEY NOT NULL,
//!     value BLOB NOT NULL);
//! CREATE TABLE usage (                -- licence usage not yet reported (usage.rs)
//!     name TEXT PRIMARY KEY NOT NULL, -- the caller's counter name
//!     n    INTEGER NOT NULL);
//! -- meta also holds usage_epoch, usage_seq, usage_reported_at
//! ```
//!
//! `AUTOINCREMENT` keeps sequence numbers increasing even after the table has
//! been emptied, so order holds across restarts. A batch is a contiguous
//! sequence range with no other buffered record inside it, so acking deletes
//! one range. Version 3 stores a commit's records as chunks of up to 1000
//! (1 MiB) consecutive records with one consumer mask; a batch, an
//! eviction or a dead-lettering that ends inside a chunk splits it into two
//! rows first, so records are still leased, evicted, counted and settled
//! one by one (see `chunk.rs`). A version-2 file is upgraded on open by
//! adding the three columns: each old row is a chunk of one. The dead-letter table is not counted in `max_bytes`; it has its
//! own bound, `dead_letter_max_bytes` accounted bytes (and `dead_letter_max`
//! rows), evicting the oldest (counted; see `dead_letter/bound.rs`). The
//! `cursors` table was added without a version bump: `CREATE TABLE IF NOT
//! EXISTS` adds it to a version-1 file on open; so was `usage`, which an
//! older build ignores (it then reports no stored usage). Version 2 added
//! `records.pending` and `consumers`: opening a version-1 file adds the
//! column (default -1: every bit), so records stored before the upgrade go
//! to every configured consumer; a version-2 file is refused by a version-1
//! build, which would ignore the masks.
//!
//! ## Usage
//!
//! ```no_run
//! use halyard_buffer::{Buffer, BufferConfig, Record};
//! # fn main() -> Result<(), halyard_buffer::BufferError> {
//! let (buffer, report) = Buffer::open(BufferConfig::new("/var/lib/halyard/buffer.db", 256 << 20))?;
//! if report.recovered_from_corruption.is_some() { /* emit buffer.recovered */ }
//! buffer.append(&[Record { id: [7; 16], payload: b"{...}".to_vec() }])?;
//! while let Some(batch) = buffer.next_batch(1000, 1 << 20)? {
//!     // send batch.records with idempotency key batch.key(); then:
//!     buffer.ack(&batch)?; // or buffer.nack(&batch) to retry later
//! }
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod batch;
mod buffer;
mod chunk;
mod commit;
mod config;
mod consumer;
mod damage;
mod dead_letter;
mod delivery;
mod error;
mod kv;
mod salvage;
mod schema;
mod staging;
mod stats;
mod usage;

pub use batch::{Batch, Record};
pub use buffer::{AppendOutcome, Buffer, OpenReport};
pub use commit::{Commit, Cursor};
pub use config::{
    BufferConfig, DEFAULT_CACHE_KIB, DEFAULT_DEAD_LETTER_MAX, DEFAULT_DEAD_LETTER_MAX_BYTES,
    RECORD_OVERHEAD_BYTES, WhenFull,
};
pub use consumer::{Consumer, ConsumerStats, DEFAULT_CONSUMER, KindReader, MAX_CONSUMERS};
pub use damage::{Damage, FoundAt};
pub use dead_letter::{DeadLetter, DeadLetterFilter, Kept, NewDeadLetter, Origin, ReasonSummary};
pub use error::{BufferError, Cause};
pub use kv::KvWrite;
pub use staging::Staged;
pub use stats::Stats;
pub use usage::{StoredUsage, UsageCounts, last_usage_report};
