//! Errors the buffer reports, worded so an operator knows what to do next.

use std::path::PathBuf;

/// Everything that can go wrong in the buffer.
///
/// The variants separate what a caller handles differently: [`BufferError::Full`]
/// is back-pressure (retry later), [`BufferError::InUse`] and
/// [`BufferError::SchemaTooNew`] are deployment mistakes a person must fix,
/// and [`BufferError::Sqlite`] / [`BufferError::Io`] are disk problems whose
/// `context` says which operation failed and whose message names the cause
/// ([`BufferError::cause`]): a damaged file, a full disk, an I/O error or
/// missing permissions each need a different fix, so the hint says which.
#[derive(Debug, thiserror::Error)]
pub enum BufferError {
    /// SQLite failed; `context` names the buffer operation that was running.
    ///
    /// There is deliberately no `From<rusqlite::Error>`: every call site must say
    /// what it was doing, or the message is useless in a field log.
    #[error("buffer {context}: {source} ({hint})", hint = Cause::of(source).hint())]
    Sqlite {
        /// The buffer operation that failed, e.g. "append: insert record".
        context: &'static str,
        /// The underlying SQLite error.
        #[source]
        source: rusqlite::Error,
    },

    /// Under [`crate::WhenFull::Block`] the slice did not fit; nothing was written.
    ///
    /// The caller should push back on its producer (e.g. HTTP 503 with
    /// `Retry-After`) and retry once the transport has acknowledged batches.
    #[error(
        "buffer full: {needed} bytes needed but only {free} free; nothing was accepted — \
         retry after the transport drains the buffer, or raise max_bytes"
    )]
    Full {
        /// Accounted bytes the rejected slice needs (payloads + per-record overhead).
        needed: u64,
        /// Accounted bytes still free under `max_bytes` when the slice was rejected.
        free: u64,
    },

    /// A filesystem operation outside SQLite failed (creating the directory,
    /// moving a corrupt file aside).
    #[error("buffer {op} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. "create directory".
        op: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// Another process (or another `Buffer` in this process) holds the file.
    ///
    /// Leases live in memory, so two owners would deliver the same records
    /// twice and could evict each other's in-flight batches; the buffer takes an
    /// exclusive lock instead and refuses to share.
    #[error(
        "buffer file {} is in use by another process or Buffer; \
         stop the other halyard instance or configure a different buffer path",
        path.display()
    )]
    InUse {
        /// The buffer file that is locked.
        path: PathBuf,
    },

    /// The file was written by a newer Halyard with a schema this build does
    /// not understand. It is left untouched so a downgrade loses no data.
    #[error(
        "buffer file {} has schema version {found}, newer than the {supported} this build supports; \
         run the newer halyard to drain it, or point this one at a different buffer path",
        path.display()
    )]
    SchemaTooNew {
        /// The buffer file.
        path: PathBuf,
        /// Schema version stored in the file.
        found: i64,
        /// Newest schema version this build understands.
        supported: i64,
    },

    /// `ack` or `dead_letter` was given a batch this buffer does not have on
    /// lease: already acknowledged, nacked, or from a previous run.
    ///
    /// Nothing was deleted; if the records are still buffered they will be
    /// delivered again (at-least-once), so the caller can log this and carry on.
    #[error(
        "batch {key} is not leased from this buffer (already acked or nacked, or from an earlier run); nothing was changed"
    )]
    UnknownBatch {
        /// The batch's idempotency key.
        key: String,
    },

    /// Records staged for a commit ([`crate::Buffer::stage`]) were no longer
    /// all there at the commit (the file was salvaged after damage in
    /// between); nothing was committed, and the producer should run the
    /// ingest again (or answer its client with an error).
    #[error(
        "{expected} staged records were expected at the commit but {found} were left (the buffer was repaired meanwhile); nothing was accepted — retry"
    )]
    StagedLost {
        /// Records the staging wrote.
        expected: usize,
        /// Records still staged at the commit.
        found: usize,
    },

    /// A chunk row's parts (ids, lengths, payload, kinds) do not agree:
    /// SQLite read the row, but it is not one this buffer wrote (e.g. an
    /// overflow page overwritten with bytes SQLite cannot tell from data).
    /// Treated as damage: the salvage leaves such rows out and counts
    /// their records as lost.
    #[error("buffer chunk ending at sequence {seq} is inconsistent: {why}")]
    BadChunk {
        /// The chunk's key (its last event's sequence number).
        seq: i64,
        /// Which part does not agree.
        why: String,
    },

    /// More consumers were configured than a record's `pending` mask has
    /// bits for; nothing was changed.
    #[error("{configured} buffer consumers configured; at most {max} are supported")]
    TooManyConsumers {
        /// How many were configured.
        configured: usize,
        /// The limit ([`crate::MAX_CONSUMERS`]).
        max: usize,
    },

    /// `next_batch_for` named a consumer this buffer was not opened with.
    #[error("no buffer consumer named `{name}`")]
    UnknownConsumer {
        /// The name asked for.
        name: String,
    },
}

/// Attaches the buffer operation to a SQLite error.
pub(crate) trait Context<T> {
    /// Wraps the error in [`BufferError::Sqlite`] with `context`.
    fn ctx(self, context: &'static str) -> Result<T, BufferError>;
}

impl<T> Context<T> for Result<T, rusqlite::Error> {
    fn ctx(self, context: &'static str) -> Result<T, BufferError> {
        self.map_err(|source| BufferError::Sqlite { context, source })
    }
}

impl BufferError {
    /// The SQLite error code behind this error, if it came from SQLite.
    pub(crate) fn sqlite_code(&self) -> Option<rusqlite::ErrorCode> {
        match self {
            BufferError::Sqlite { source, .. } => source.sqlite_error_code(),
            _ => None,
        }
    }

    /// What kind of failure this is, so a caller (health, logs) can say
    /// what to fix without parsing messages.
    pub fn cause(&self) -> Cause {
        match self {
            BufferError::Sqlite { source, .. } => Cause::of(source),
            BufferError::Io { source, .. } => match source.kind() {
                std::io::ErrorKind::StorageFull => Cause::DiskFull,
                std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => {
                    Cause::Permission
                }
                _ => Cause::Io,
            },
            BufferError::InUse { .. } => Cause::Busy,
            BufferError::BadChunk { .. } => Cause::Corrupt,
            BufferError::Full { .. }
            | BufferError::SchemaTooNew { .. }
            | BufferError::UnknownBatch { .. }
            | BufferError::StagedLost { .. }
            | BufferError::TooManyConsumers { .. }
            | BufferError::UnknownConsumer { .. } => Cause::Other,
        }
    }

    /// Whether the file itself is damaged: the error the buffer answers by
    /// salvaging what it can read into a fresh file.
    pub(crate) fn is_corruption(&self) -> bool {
        self.cause() == Cause::Corrupt
    }
}

/// Why a SQLite or file operation failed, as far as the operator's next
/// step is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// The file's content is damaged (a bad page, a truncated file, not a
    /// database at all).
    Corrupt,
    /// The filesystem is full.
    DiskFull,
    /// The storage device failed a read or write.
    Io,
    /// The file or its directory cannot be written.
    Permission,
    /// Another process holds the file.
    Busy,
    /// Anything else.
    Other,
}

impl Cause {
    /// Classifies a SQLite error. A short read (the file ends before a page
    /// it should hold) is a truncated file, i.e. damage, not an I/O fault.
    pub fn of(err: &rusqlite::Error) -> Cause {
        use rusqlite::ErrorCode as C;
        let extended = err.sqlite_error().map(|e| e.extended_code);
        match err.sqlite_error_code() {
            Some(C::DatabaseCorrupt | C::NotADatabase) => Cause::Corrupt,
            Some(C::SystemIoFailure)
                if extended == Some(rusqlite::ffi::SQLITE_IOERR_SHORT_READ) =>
            {
                Cause::Corrupt
            }
            Some(C::DiskFull) => Cause::DiskFull,
            Some(C::SystemIoFailure) => Cause::Io,
            Some(C::CannotOpen | C::ReadOnly | C::PermissionDenied) => Cause::Permission,
            Some(C::DatabaseBusy | C::DatabaseLocked) => Cause::Busy,
            _ => Cause::Other,
        }
    }

    /// What the operator should do, appended to error messages.
    pub fn hint(self) -> &'static str {
        match self {
            Cause::Corrupt => {
                "the buffer file is damaged; halyard salvages the readable rows into a fresh file, \
                 moves the damaged one aside and reports what was lost"
            }
            Cause::DiskFull => "the disk is full: free space or lower [buffer] max_mb",
            Cause::Io => "the storage device reported an I/O error: check it (dmesg, SMART)",
            Cause::Permission => "check that the buffer file and its directory are writable",
            Cause::Busy => "another process holds the buffer file",
            Cause::Other => "unexpected SQLite error",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite(code: i32, context: &'static str) -> BufferError {
        BufferError::Sqlite {
            context,
            source: rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None),
        }
    }

    /// Each cause gets its own advice; damage is never blamed on disk space.
    #[test]
    fn messages_name_the_real_cause() {
        use rusqlite::ffi;
        let corrupt = sqlite(ffi::SQLITE_CORRUPT, "next_batch: read records");
        assert_eq!(corrupt.cause(), Cause::Corrupt);
        assert!(corrupt.is_corruption());
        let text = corrupt.to_string();
        assert!(
            text.contains("damaged") && !text.contains("disk space"),
            "{text}"
        );
        let short = sqlite(ffi::SQLITE_IOERR_SHORT_READ, "next_batch: read records");
        assert_eq!(short.cause(), Cause::Corrupt, "a truncated file is damage");
        let full = sqlite(ffi::SQLITE_FULL, "append: commit");
        assert_eq!(full.cause(), Cause::DiskFull);
        assert!(full.to_string().contains("disk is full"), "{full}");
        let io = sqlite(ffi::SQLITE_IOERR_READ, "next_batch: read records");
        assert_eq!(io.cause(), Cause::Io);
        assert!(io.to_string().contains("I/O error"), "{io}");
        let denied = sqlite(ffi::SQLITE_READONLY, "append: commit");
        assert_eq!(denied.cause(), Cause::Permission);
        assert!(denied.to_string().contains("writable"), "{denied}");
    }
}
