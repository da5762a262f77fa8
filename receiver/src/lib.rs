//! # Halyard's batch receiver
//!
//! The peer the host ships telemetry to in the quickstart and in end-to-end
//! tests (`halyard receive --listen ADDR --store FILE`). It accepts batches
//! over HTTP (`POST /v1/batches`), stores their events in SQLite and reports
//! exact counts (`GET /v1/stats`), so a test can prove what arrived.
//!
//! ## Invariants
//!
//! 1. **200 means committed.** A batch is answered 200 only after the SQLite
//!    transaction holding all its events has committed (WAL, `synchronous =
//!    FULL`). Any other answer means nothing of that request was stored, so
//!    the sender may re-send it.
//! 2. **De-duplication by event id.** Events are keyed by their `id`; an id
//!    already stored is counted as a duplicate and not stored again, whether
//!    it was re-sent in another batch, the same batch, or before a restart.
//!    `accepted + duplicates` always equals the events in the batch.
//! 3. **A batch is all or nothing.** A body that is not valid (size, gzip,
//!    JSON, an event without a string `id`, more than `max_batch_events`
//!    events, an event from a refused `source`) is refused whole with 4xx
//!    before the store is touched; a 400 about events names every one of
//!    them (`"rejected": [{"index", "reason"}]`) so the sender can drop just
//!    those; a store failure rolls back and answers 503.
//! 4. **Counts come from the store.** `batches`, `events_received`,
//!    `events_stored` and `duplicates` are computed from the database, so they
//!    survive restarts and can be read offline with [`open_stats`].
//! 5. **Bounded memory per request.** Bodies and their decompressed form are
//!    both capped at [`ReceiverConfig::max_body_bytes`] (413 beyond).
//! 6. **The API key is never logged or kept in plaintext**; it is compared as
//!    a SHA-256 digest in constant time.
//!
//! The wire format, answers and stats are documented in `receiver/README.md`.

#![warn(missing_docs)]

mod config;
mod error;
mod http;
mod stats;
mod store;

use std::future::Future;
use std::net::SocketAddr;

use tokio::net::TcpListener;

pub use config::{DEFAULT_API_KEY_HEADER, DEFAULT_MAX_BODY_BYTES, ReceiverConfig};
pub use error::ReceiverError;
pub use stats::{Stats, open_stats};

/// A receiver whose store is open and whose socket is bound but which does
/// not yet serve: split from [`Receiver::run`] so a caller that bound port 0
/// can learn the real port before traffic starts.
pub struct Receiver {
    listener: TcpListener,
    local_addr: SocketAddr,
    router: axum::Router,
}

impl Receiver {
    /// The address actually bound (the real port when the config said 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until `shutdown` completes, then stops accepting, lets requests
    /// in progress finish (so every 200 sent was committed) and closes the
    /// store.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ReceiverError> {
        tracing::info!(listen = %self.local_addr, "receiver serving");
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(|source| ReceiverError::Serve { source })?;
        tracing::info!(listen = %self.local_addr, "receiver stopped");
        Ok(())
    }
}

/// Opens (or creates) the store and binds the listen address, reporting
/// config, store and socket problems before any request is served.
pub async fn bind(config: ReceiverConfig) -> Result<Receiver, ReceiverError> {
    let path = config.store.clone();
    let store = tokio::task::spawn_blocking(move || store::Store::open(&path))
        .await
        .map_err(|_| ReceiverError::Unavailable("store open panicked"))??;
    let state = http::AppState::new(&config, store)?;
    let listener =
        TcpListener::bind(config.listen)
            .await
            .map_err(|source| ReceiverError::Bind {
                addr: config.listen,
                source,
            })?;
    let local_addr = listener
        .local_addr()
        .map_err(|source| ReceiverError::Bind {
            addr: config.listen,
            source,
        })?;
    tracing::info!(
        listen = %local_addr,
        store = %config.store.display(),
        api_key = config.api_key.is_some(),
        max_body_bytes = config.max_body_bytes,
        "receiver bound"
    );
    Ok(Receiver {
        listener,
        local_addr,
        router: http::router(state),
    })
}

/// [`bind`] then [`Receiver::run`], for callers that know their port.
pub async fn serve(
    config: ReceiverConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ReceiverError> {
    bind(config).await?.run(shutdown).await
}
