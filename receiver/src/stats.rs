//! The counts `GET /v1/stats` serves and `open_stats` reads offline.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::ReceiverError;
use crate::store;

/// What has arrived, computed from the store itself rather than kept in
/// memory, so the numbers survive restarts and end-to-end tests can assert
/// exact delivery (`events_stored`) and exact re-sending (`duplicates`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Accepted requests, replays included (one `batches` row each).
    pub batches: u64,
    /// Events in all accepted requests, duplicates included.
    pub events_received: u64,
    /// Distinct event ids stored.
    pub events_stored: u64,
    /// `events_received - events_stored`: events the receiver already had,
    /// i.e. how much the sender re-sent (within a batch or across batches).
    pub duplicates: u64,
}

/// Reads the counts of a store without running a receiver, for the host CLI
/// and for tests that inspect a store after the server stopped. Opens the file
/// read-only and never creates it; safe while a receiver is running on it.
pub fn open_stats(store: &Path) -> Result<Stats, ReceiverError> {
    let conn = store::open_read_only(store)?;
    store::read_stats(&conn, store)
}
