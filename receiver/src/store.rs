//! The SQLite store: one transaction per batch, de-duplication by event id.
//!
//! Schema (version 1, `PRAGMA user_version`):
//!
//! ```sql
//! events(id TEXT PRIMARY KEY, batch_id TEXT, host_id TEXT, received_at_ms INTEGER, json TEXT)
//! batches(batch_id TEXT, host_id TEXT, received_at_ms INTEGER, events INTEGER, new_events INTEGER)
//! ```
//!
//! `events` is an ordinary rowid table, so its rowid is the arrival order that
//! `GET /v1/events?after=` pages through. Every accepted request adds one
//! `batches` row, replays included, which is how tests count re-sends.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};

use crate::error::ReceiverError;
use crate::stats::Stats;

/// The schema version this build writes and understands.
const SCHEMA_VERSION: i64 = 1;

/// How long a statement waits for a lock held by another connection (for
/// example `open_stats` from another process) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY,
    batch_id TEXT,
    host_id TEXT,
    received_at_ms INTEGER NOT NULL,
    json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS batches (
    batch_id TEXT,
    host_id TEXT,
    received_at_ms INTEGER NOT NULL,
    events INTEGER NOT NULL,
    new_events INTEGER NOT NULL
);
";

/// Who sent a batch; both parts are optional on the wire and stored as NULL
/// when absent.
#[derive(Debug, Clone, Default)]
pub(crate) struct BatchMeta {
    pub(crate) batch_id: Option<String>,
    pub(crate) host_id: Option<String>,
}

/// One event of a batch: its id and its JSON text exactly as sent.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NewEvent<'a> {
    pub(crate) id: &'a str,
    pub(crate) json: &'a str,
}

/// What storing one batch did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Outcome {
    pub(crate) accepted: u64,
    pub(crate) duplicates: u64,
}

/// One stored event as `GET /v1/events` returns it.
#[derive(Debug, Clone)]
pub(crate) struct StoredEvent {
    pub(crate) rowid: i64,
    pub(crate) batch_id: Option<String>,
    pub(crate) host_id: Option<String>,
    pub(crate) received_at_ms: i64,
    pub(crate) json: String,
}

/// The open store: one writer connection (SQLite allows one writer at a time
/// anyway, the mutex makes the queue explicit) and one reader connection so
/// stats and paging never wait behind a large batch (WAL readers don't block).
pub(crate) struct Store {
    path: PathBuf,
    writer: Mutex<Connection>,
    reader: Mutex<Connection>,
}

impl Store {
    /// Opens or creates the store at `path`, creating tables as needed.
    pub(crate) fn open(path: &Path) -> Result<Self, ReceiverError> {
        let err = |context| move |source| store_err(path, context, source);
        let writer = Connection::open(path).map_err(err("open"))?;
        writer
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(err("set busy timeout"))?;
        check_version(&writer, path)?;
        let mode: String = writer
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .map_err(err("enable WAL"))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(store = %path.display(), mode, "store is not in WAL mode");
        }
        // FULL: a 200 promises the batch survives a power cut, not just a crash.
        writer
            .pragma_update(None, "synchronous", "FULL")
            .map_err(err("set synchronous"))?;
        writer.execute_batch(SCHEMA).map_err(err("create schema"))?;
        writer
            .pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(err("set schema version"))?;

        let reader = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(err("open reader"))?;
        reader
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(err("set busy timeout"))?;
        Ok(Self {
            path: path.to_owned(),
            writer: Mutex::new(writer),
            reader: Mutex::new(reader),
        })
    }

    /// Stores a batch in one transaction: every event with `INSERT OR IGNORE`
    /// and one `batches` row. Returns only after the commit, so the caller may
    /// answer 200; on error the transaction rolls back and nothing is stored.
    pub(crate) fn insert_batch(
        &self,
        meta: &BatchMeta,
        events: &[NewEvent<'_>],
        received_at_ms: i64,
    ) -> Result<Outcome, ReceiverError> {
        let err = |context| move |source| store_err(&self.path, context, source);
        let mut conn = lock(&self.writer);
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err("begin batch"))?;
        let mut accepted: u64 = 0;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT OR IGNORE INTO events (id, batch_id, host_id, received_at_ms, json)
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(err("prepare insert event"))?;
            for event in events {
                let changed = insert
                    .execute(params![
                        event.id,
                        meta.batch_id,
                        meta.host_id,
                        received_at_ms,
                        event.json
                    ])
                    .map_err(err("insert event"))?;
                accepted += changed as u64;
            }
        }
        let total = events.len() as u64;
        tx.execute(
            "INSERT INTO batches (batch_id, host_id, received_at_ms, events, new_events)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                meta.batch_id,
                meta.host_id,
                received_at_ms,
                total as i64,
                accepted as i64
            ],
        )
        .map_err(err("insert batch"))?;
        tx.commit().map_err(err("commit batch"))?;
        Ok(Outcome {
            accepted,
            duplicates: total - accepted,
        })
    }

    /// Counts from the database itself, so they are right after a restart.
    pub(crate) fn stats(&self) -> Result<Stats, ReceiverError> {
        read_stats(&lock(&self.reader), &self.path)
    }

    /// Up to `limit` stored events with rowid greater than `after`, in arrival order.
    pub(crate) fn events_after(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, ReceiverError> {
        let err = |context| move |source| store_err(&self.path, context, source);
        let conn = lock(&self.reader);
        let mut stmt = conn
            .prepare_cached(
                "SELECT rowid, batch_id, host_id, received_at_ms, json FROM events
                 WHERE rowid > ?1 ORDER BY rowid LIMIT ?2",
            )
            .map_err(err("prepare list events"))?;
        let rows = stmt
            .query_map(params![after, limit], |row| {
                Ok(StoredEvent {
                    rowid: row.get(0)?,
                    batch_id: row.get(1)?,
                    host_id: row.get(2)?,
                    received_at_ms: row.get(3)?,
                    json: row.get(4)?,
                })
            })
            .map_err(err("list events"))?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(err("read event"))
    }
}

/// Reads the counters with one consistent snapshot (one statement).
pub(crate) fn read_stats(conn: &Connection, path: &Path) -> Result<Stats, ReceiverError> {
    let (batches, received, stored): (i64, i64, i64) = conn
        .query_row(
            "SELECT (SELECT COUNT(*) FROM batches),
                    (SELECT COALESCE(SUM(events), 0) FROM batches),
                    (SELECT COALESCE(SUM(new_events), 0) FROM batches)",
            [],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
        )
        .map_err(|source| store_err(path, "read stats", source))?;
    let [batches, events_received, events_stored] =
        [batches, received, stored].map(|n| u64::try_from(n).unwrap_or(0));
    Ok(Stats {
        batches,
        events_received,
        events_stored,
        duplicates: events_received.saturating_sub(events_stored),
    })
}

/// Opens an existing store read-only, for [`crate::open_stats`].
pub(crate) fn open_read_only(path: &Path) -> Result<Connection, ReceiverError> {
    if !path.exists() {
        return Err(ReceiverError::Missing {
            path: path.to_owned(),
        });
    }
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|source| store_err(path, "open read-only", source))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|source| store_err(path, "set busy timeout", source))?;
    check_version(&conn, path)?;
    Ok(conn)
}

/// Refuses files from a newer receiver so they are never modified by an older one.
fn check_version(conn: &Connection, path: &Path) -> Result<(), ReceiverError> {
    let found: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .optional()
        .map_err(|source| store_err(path, "read schema version", source))?
        .unwrap_or(0);
    if found > SCHEMA_VERSION {
        return Err(ReceiverError::SchemaTooNew {
            path: path.to_owned(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(())
}

fn store_err(path: &Path, context: &'static str, source: rusqlite::Error) -> ReceiverError {
    ReceiverError::Store {
        path: path.to_owned(),
        context,
        source,
    }
}

/// A panic while a connection was held can only have happened inside a
/// transaction, which rusqlite rolls back on drop, so the connection is still
/// sound: recover it instead of answering 503 forever.
fn lock(conn: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    conn.lock().unwrap_or_else(PoisonError::into_inner)
}
