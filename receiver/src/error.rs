//! Errors the receiver reports, worded so an operator knows what to fix.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Everything that can stop the receiver from starting, serving or reading
/// its store.
///
/// Request-level failures (bad bodies, wrong keys) are not here: they are HTTP
/// answers to the sender, not errors of the receiver. A store failure while
/// serving becomes a 503 and is logged; it surfaces here only from [`crate::bind`]
/// and [`crate::open_stats`].
#[derive(Debug, thiserror::Error)]
pub enum ReceiverError {
    /// The configuration cannot work; `reason` says which field and why.
    #[error("invalid receiver config: {reason}")]
    Config {
        /// What is wrong, e.g. "api_key_header is not a valid header name".
        reason: String,
    },

    /// The listen address could not be bound (in use, not local, no permission).
    #[error("cannot listen on {addr}: {source} (is another receiver already running there?)")]
    Bind {
        /// The address from the config.
        addr: SocketAddr,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The server failed while running (accepting connections).
    #[error("receiver stopped: {source}")]
    Serve {
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// SQLite failed; `context` names the operation so a field log is useful.
    #[error(
        "receiver store {} ({context}): {source} (check free disk space and that the directory is writable)",
        path.display()
    )]
    Store {
        /// The store file.
        path: PathBuf,
        /// The store operation that failed, e.g. "insert event".
        context: &'static str,
        /// The underlying SQLite error.
        #[source]
        source: rusqlite::Error,
    },

    /// [`crate::open_stats`] was pointed at a file that does not exist;
    /// reading counts must never create an empty store by accident.
    #[error("receiver store {} does not exist", path.display())]
    Missing {
        /// The path that was asked for.
        path: PathBuf,
    },

    /// The store was written by a newer receiver; it is left untouched.
    #[error(
        "receiver store {} has schema version {found}, newer than the {supported} this build supports",
        path.display()
    )]
    SchemaTooNew {
        /// The store file.
        path: PathBuf,
        /// The version found in the file.
        found: i64,
        /// The newest version this build understands.
        supported: i64,
    },

    /// A store worker panicked or its lock was poisoned by an earlier panic;
    /// the store is no longer trusted and requests are answered 503.
    #[error("receiver store is unavailable: {0}")]
    Unavailable(&'static str),
}
