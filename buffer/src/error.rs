//! Errors the buffer reports, worded so an operator knows what to do next.

use std::path::PathBuf;

/// Everything that can go wrong in the buffer.
///
/// The variants separate what a caller handles differently: [`BufferError::Full`]
/// is back-pressure (retry later), [`BufferError::InUse`] and
/// [`BufferError::SchemaTooNew`] are deployment mistakes a person must fix,
/// and [`BufferError::Sqlite`] / [`BufferError::Io`] are disk problems whose
/// `context` says which operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BufferError {
    /// SQLite failed; `context` names the buffer operation that was running.
    ///
    /// There is deliberately no `From<rusqlite::Error>`: every call site must say
    /// what it was doing, or the message is useless in a field log.
    #[error(
        "buffer {context}: {source} (check free disk space and that the buffer directory is writable)"
    )]
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
}
