//! What can go wrong when emitting, and what it means for the events.
//!
//! The ingest's rule: a 2xx answer means every line was handled and the
//! accepted ones are durable; any other answer means nothing of the request
//! was stored. So each error says whether the events may have been stored.

use std::time::Duration;

/// Why an emit failed.
#[derive(Debug, thiserror::Error)]
pub enum EmitError {
    /// The endpoint is neither `http://host:port[/path]` nor a Unix socket
    /// path (`unix:/path` or an absolute path).
    #[error("bad endpoint `{endpoint}`: {reason}")]
    Endpoint {
        /// What was given.
        endpoint: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An event did not serialise to JSON; nothing was sent.
    #[error("event {index} cannot be serialised to JSON: {source}")]
    Serialize {
        /// Its index in the batch.
        index: usize,
        /// What serde_json said.
        source: serde_json::Error,
    },
    /// The batch is larger than one request may carry with per-event
    /// results; nothing was sent. Split it.
    #[error("a batch may hold at most {max} events, got {got}; nothing was sent")]
    BatchTooLarge {
        /// Events given.
        got: usize,
        /// The most one request takes.
        max: usize,
    },
    /// No connection could be made (retried within the retry policy);
    /// nothing was sent.
    #[error("cannot connect to {target}: {source}; nothing was sent")]
    Connect {
        /// The endpoint.
        target: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The connection failed after the request was sent: the host may or
    /// may not have stored the events. Not retried (a retry could store
    /// them twice).
    #[error(
        "the exchange with {target} failed after the request was sent ({message}); the events \
         may or may not have been stored"
    )]
    Interrupted {
        /// The endpoint.
        target: String,
        /// What failed.
        message: String,
    },
    /// No answer within the per-attempt timeout: the host may or may not
    /// have stored the events. Not retried.
    #[error("no answer within {0:?}; the events may or may not have been stored")]
    Timeout(Duration),
    /// The host refused the request with an answer that retrying does not
    /// fix (401, 413, 400, …); nothing was stored.
    #[error("refused with {status} `{code}`: {message}; nothing was stored")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The answer's `error` code (`unauthorized`, `payload_too_large`, …).
        code: String,
        /// The answer's message.
        message: String,
    },
    /// Still refused (503, 429) or unreachable when the retry policy ran
    /// out of attempts or time; nothing was stored.
    #[error("gave up after {attempts} attempts in {elapsed:?} (last: {last}); nothing was stored")]
    RetriesExhausted {
        /// Attempts made.
        attempts: u32,
        /// Time spent.
        elapsed: Duration,
        /// The last refusal or connection error.
        last: String,
    },
    /// A 2xx answer that does not carry one result per event: the events
    /// *were* stored as the host says, but this client cannot say which.
    #[error("the host's answer could not be read ({0}); the events were committed")]
    BadAnswer(String),
}
