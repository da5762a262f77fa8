//! Errors from setting a sink up.
//!
//! Sending never returns an error: every way a send can go wrong is an
//! [`Attempt`](crate::Attempt), because the delivery loop must decide between
//! retrying and dead-lettering, not propagate.

use std::path::PathBuf;

/// Why a sink could not be built from its configuration.
///
/// These are configuration mistakes the host should report at startup and
/// refuse to run with, rather than discover on the first batch.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The hub URL does not parse, or is not `http` / `https`.
    #[error("invalid hub URL: {0}")]
    InvalidUrl(String),
    /// The configured API key header name is not a valid HTTP header name.
    #[error("invalid API key header name {0:?}")]
    InvalidHeaderName(String),
    /// The API key contains bytes an HTTP header cannot carry (the key
    /// itself is never included in the message).
    #[error("the API key is not a valid HTTP header value")]
    InvalidApiKey,
    /// The HTTP client could not be built (for example, TLS setup failed).
    #[error("could not build the HTTP client: {0}")]
    Client(String),
    /// The output file of a file sink could not be opened.
    #[error("could not open {path}: {source}")]
    Io {
        /// The file the sink was asked to append to.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// A broker or collector sink's configuration is inconsistent (a bad
    /// template, an unreadable CA file, a malformed URL); `sink` names it.
    #[error("{sink} sink: {reason}")]
    Config {
        /// `mqtt`, `nats`, `redis` or `otlp`.
        sink: &'static str,
        /// What is wrong, never including a credential.
        reason: String,
    },
}
