//! What one transaction may hold besides new records: dead letters found
//! while producing them, and an input's read position.
//!
//! An input that reads from something it can re-read (a file) must not
//! move its position before the events it read are committed, or a crash
//! loses them; and if it moves the position *after* the commit, a crash in
//! between re-reads them. Committing the position in the same transaction
//! as the events closes that window: after any crash the position and the
//! buffer agree, so a restart neither skips nor repeats a line.

use rusqlite::{OptionalExtension, Transaction};

use crate::batch::Record;
use crate::buffer::Buffer;
use crate::dead_letter::NewDeadLetter;
use crate::error::{BufferError, Context};
use crate::staging::Staged;
use crate::usage::UsageCounts;

/// Everything one [`Buffer::commit`] stores atomically.
#[derive(Debug, Default, Clone, Copy)]
pub struct Commit<'a> {
    /// Records staged ahead of this commit ([`Buffer::stage`]); they come
    /// before `records`, and the two are one sequence for the size bound
    /// and the `when_full` policy. The caller still owns the staging and
    /// calls [`Buffer::discard`] afterwards.
    pub staged: Option<&'a Staged>,
    /// New records, subject to the size bound and the `when_full` policy.
    pub records: &'a [Record],
    /// What was rejected on the way in; it goes to the dead-letter table
    /// (not counted against `max_bytes`, bounded by its own limits).
    pub dead_letters: &'a [NewDeadLetter],
    /// An input position to store (or clear) with them.
    pub cursor: Option<Cursor<'a>>,
    /// The producer was let in by [`Buffer::admit`] before it did the work
    /// (ran plugins) that made these records. Under
    /// [`crate::WhenFull::Block`] they are then stored even if they take the
    /// buffer past `max_bytes` (by at most this commit), because refusing
    /// now would make the producer redo that work; without it a commit that
    /// does not fit fails with [`BufferError::Full`].
    pub admitted: bool,
    /// Dead letters (by [`DeadLetter::seq`](crate::DeadLetter::seq)) that
    /// these records and dead letters replay: deleted in the same
    /// transaction, so after a crash each is either still a dead letter or
    /// has its new outcome, never both or neither. A commit that replays is
    /// all or nothing whatever the `when_full` policy: if its records do
    /// not fit it fails with [`BufferError::Full`] and writes nothing, so a
    /// replay never drops what it replays nor evicts other records for it.
    pub replayed: &'a [i64],
    /// Store `records` for this consumer (transport) alone instead of for
    /// every consumer that wants them: a replay of what one transport
    /// refused must not send it again through the transports that
    /// delivered it. A name that is not a consumer now (the transport was
    /// removed) falls back to every consumer that wants them.
    pub only_for: Option<&'a str>,
    /// Usage counters to add in the same transaction (see `usage.rs`),
    /// computed from the commit's outcome; `None` adds none.
    pub usage: Option<UsageCounts<'a>>,
    /// The kinds of the offered records (staged first, then `records`),
    /// run-length encoded, when the producer knows them: stored with the
    /// chunk so transports are routed by kind and delivered events are
    /// counted by kind without parsing a payload. Ignored unless the runs
    /// add up to exactly the records offered; without them the kind
    /// reader ([`Buffer::set_kind_reader`]) is asked when a consumer
    /// filters by kind, and the kind is otherwise not stored.
    pub kinds: &'a [(String, u64)],
    /// Detector key-value changes staged while producing these records
    /// (see `kv.rs`), applied in the same transaction, in order.
    pub kv: &'a [crate::KvWrite],
}

impl Commit<'_> {
    /// True when there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
            && self.staged.is_none_or(Staged::is_empty)
            && self.dead_letters.is_empty()
            && self.cursor.is_none()
            && self.replayed.is_empty()
            && self.usage.is_none()
            && self.kv.is_empty()
    }
}

/// A named, opaque input position (e.g. a file's identity and offset).
#[derive(Debug, Clone, Copy)]
pub struct Cursor<'a> {
    /// The input's name; one position per name.
    pub name: &'a str,
    /// The new position, or `None` to forget it (the file was rotated).
    pub value: Option<&'a [u8]>,
}

impl Buffer {
    /// The stored position of input `name`, as last committed.
    pub fn cursor(&self, name: &str) -> Result<Option<Vec<u8>>, BufferError> {
        self.repairing(|| {
            let inner = self.lock();
            inner
                .conn
                .prepare_cached("SELECT value FROM cursors WHERE name = ?1")
                .and_then(|mut stmt| stmt.query_row([name], |row| row.get(0)).optional())
                .ctx("cursor: read")
        })
    }
}

/// Stores or clears `cursor` inside `tx`.
pub(crate) fn write_cursor(tx: &Transaction<'_>, cursor: &Cursor<'_>) -> Result<(), BufferError> {
    match cursor.value {
        Some(value) => tx
            .prepare_cached(
                "INSERT INTO cursors (name, value) VALUES (?1, ?2) \
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            )
            .and_then(|mut stmt| stmt.execute((cursor.name, value)))
            .ctx("commit: store cursor")?,
        None => tx
            .prepare_cached("DELETE FROM cursors WHERE name = ?1")
            .and_then(|mut stmt| stmt.execute([cursor.name]))
            .ctx("commit: clear cursor")?,
    };
    Ok(())
}
