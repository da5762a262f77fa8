//! Opening the SQLite file: pragmas, schema, version check, and — when the
//! file is damaged — moving it aside and salvaging its readable rows into a
//! fresh file, so a damaged buffer never blocks startup and loses only what
//! cannot be read.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, ErrorCode, OptionalExtension, TransactionBehavior};

use crate::config::BufferConfig;
use crate::damage::Damage;
use crate::error::{BufferError, Context};
use crate::salvage;

/// Schema version this build writes and understands.
/// Version 2 added `records.pending` and the `consumers` table (see
/// `consumer.rs`); version 3 made a row a chunk of events (`count`,
/// `lens`, `kinds`; see `chunk.rs`). Older files are upgraded on open:
/// their rows are chunks of one.
pub(crate) const SCHEMA_VERSION: i64 = 3;

/// How long a statement waits for a lock held by someone else before failing.
/// Only a foreign process can hold one (we lock the file exclusively), so this
/// is mostly the grace period for a previous instance that is still exiting.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// After a checkpoint, the WAL file is truncated to at most this many bytes,
/// so a burst does not leave a large WAL behind for good.
pub(crate) const JOURNAL_SIZE_LIMIT: i64 = 4 * 1024 * 1024;

pub(crate) const CREATE_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS records (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          BLOB NOT NULL,
    payload     BLOB NOT NULL,
    size        INTEGER NOT NULL,
    enqueued_ms INTEGER NOT NULL,
    pending     INTEGER NOT NULL DEFAULT -1,
    count       INTEGER NOT NULL DEFAULT 1,
    lens        BLOB,
    kinds       BLOB
);
CREATE TABLE IF NOT EXISTS consumers (
    name      TEXT PRIMARY KEY NOT NULL,
    bit       INTEGER NOT NULL UNIQUE,
    kinds     TEXT NOT NULL DEFAULT '',
    since_seq INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS dead_letter (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    id      BLOB NOT NULL,
    payload BLOB NOT NULL,
    reason  TEXT NOT NULL,
    at_ms   INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS cursors (
    name  TEXT PRIMARY KEY NOT NULL,
    value BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS kv (
    ns    TEXT NOT NULL,
    key   TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (ns, key)
);
";

/// A connection ready for use, plus what was found in the file.
pub(crate) struct Opened {
    pub(crate) conn: Connection,
    pub(crate) recovered_from_corruption: Option<PathBuf>,
    pub(crate) records: u64,
    pub(crate) bytes: u64,
    pub(crate) dead_letters: u64,
    pub(crate) dead_letter_bytes: u64,
    /// Records deleted at open because only removed consumers held them.
    pub(crate) removed_records: u64,
    /// What the salvage of a damaged file recovered and lost.
    pub(crate) damage: Option<Damage>,
}

/// Opens (creating if needed) the buffer file; a damaged file is moved
/// aside and its readable rows are copied into a fresh one.
pub(crate) fn open(config: &BufferConfig) -> Result<Opened, BufferError> {
    let path = &config.path;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| BufferError::Io {
            op: "create directory",
            path: dir.to_path_buf(),
            source,
        })?;
    }
    match try_open(config) {
        Ok(opened) => Ok(opened),
        Err(err) if err.is_corruption() => {
            let moved = move_aside(path)?;
            tracing::error!(buffer = %path.display(), moved_to = %moved.display(), error = %err,
                "buffer file is damaged; moved it aside, salvaging its readable rows into a fresh file");
            let scratch = with_suffix(path, SALVAGE_SUFFIX);
            let salvaged = salvage::salvage_file(&moved, &scratch);
            let damage = match salvaged {
                Ok(salvaged) => {
                    rename(&scratch, path, "move the salvaged file into place")?;
                    Damage::at_open(&err, &moved, &salvaged)
                }
                Err(salvage_err) => {
                    // Nothing could be copied (the file is not a database at
                    // all, or the copy failed): start empty; the moved file
                    // is kept for the operator.
                    tracing::error!(error = %salvage_err, "nothing could be salvaged from the damaged buffer file");
                    let _ = std::fs::remove_file(&scratch);
                    Damage::unreadable_at_open(&err, &moved)
                }
            };
            damage.log();
            let mut opened = try_open(config)?;
            opened.recovered_from_corruption = Some(moved);
            opened.damage = Some(damage);
            Ok(opened)
        }
        Err(err) if is_locked(&err) => Err(BufferError::InUse { path: path.clone() }),
        Err(err) => Err(err),
    }
}

/// Suffix of the scratch file a salvage writes before it is swapped in.
pub(crate) const SALVAGE_SUFFIX: &str = ".salvage";

fn is_locked(err: &BufferError) -> bool {
    matches!(
        err.sqlite_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

pub(crate) fn try_open(config: &BufferConfig) -> Result<Opened, BufferError> {
    let conn = Connection::open(&config.path).ctx("open: open file")?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .ctx("open: set busy_timeout")?;
    conn.set_prepared_statement_cache_capacity(32);
    // One owner per file: leases are in memory, so a second process would
    // re-deliver in-flight batches and could evict them. EXCLUSIVE before WAL
    // also keeps the WAL index in heap memory (no -shm file).
    conn.pragma_update(None, "locking_mode", "EXCLUSIVE")
        .ctx("open: set locking_mode")?;
    // Only takes effect on a new file; must precede the first CREATE TABLE.
    conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
        .ctx("open: set auto_vacuum")?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .ctx("open: enable WAL")?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(buffer = %config.path.display(), journal_mode = %mode,
            "could not enable WAL; commits are still durable but slower");
    }
    let sync = if config.synchronous_full {
        "FULL"
    } else {
        "NORMAL"
    };
    conn.pragma_update(None, "synchronous", sync)
        .ctx("open: set synchronous")?;
    conn.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT)
        .ctx("open: set journal_size_limit")?;
    // A negative size is in KiB.
    conn.pragma_update(None, "cache_size", -i64::from(config.cache_kib))
        .ctx("open: set cache_size")?;

    let mut conn = conn;
    let removed_records = prepare_schema(&mut conn, config)?;

    let auto_vacuum: i64 = conn
        .pragma_query_value(None, "auto_vacuum", |row| row.get(0))
        .ctx("open: read auto_vacuum")?;
    if auto_vacuum != 2 {
        tracing::warn!(buffer = %config.path.display(), auto_vacuum,
            "buffer file was created without incremental auto-vacuum; a drained buffer will not shrink \
             (delete the file while it is empty to fix)");
    }

    // Covered by records_seq_size, so this reads the index, not the payloads.
    let (records, bytes): (i64, i64) = conn
        .query_row(
            "SELECT COALESCE(SUM(count), 0), COALESCE(SUM(size), 0) FROM records",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .ctx("open: count records")?;
    let (dead_letters, dead_letter_bytes) = crate::dead_letter::totals(&conn)?;
    Ok(Opened {
        conn,
        recovered_from_corruption: None,
        damage: None,
        records: records.max(0) as u64,
        bytes: bytes.max(0) as u64,
        dead_letters,
        dead_letter_bytes,
        removed_records,
    })
}

/// Creates the schema in a new file, or checks the version of an existing
/// one — before touching it, so a newer schema is never modified — then
/// upgrades a version-1 file and reconciles the consumers with the config.
/// Returns the records deleted because only removed consumers held them.
fn prepare_schema(conn: &mut Connection, config: &BufferConfig) -> Result<u64, BufferError> {
    let path = &config.path;
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .ctx("open: begin schema transaction")?;
    let has_meta: bool = tx
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta')",
            [],
            |row| row.get(0),
        )
        .ctx("open: read schema")?;
    if has_meta {
        let found: Option<i64> = tx
            .query_row(
                "SELECT value FROM meta WHERE key = 'schema_version'",
                [],
                |row| row.get(0),
            )
            .optional()
            .ctx("open: read schema version")?;
        if let Some(found) = found.filter(|v| *v > SCHEMA_VERSION) {
            return Err(BufferError::SchemaTooNew {
                path: path.to_path_buf(),
                found,
                supported: SCHEMA_VERSION,
            });
        }
    }
    tx.execute_batch(CREATE_SCHEMA).ctx("open: create schema")?;
    crate::dead_letter::upgrade(&tx)?;
    upgrade_records(&tx)?;
    crate::usage::create(&tx)?;
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('schema_version', ?1) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [SCHEMA_VERSION],
    )
    .ctx("open: write schema version")?;
    let removed = crate::consumer::reconcile(&tx, config.consumers.as_deref())?;
    tx.commit().ctx("open: commit schema")?;
    Ok(removed)
}

/// Upgrades `records` to version 3. Version 1 -> 2 adds `records.pending`
/// (default -1, every bit: records stored before the upgrade are for every
/// consumer, and [`crate::consumer::reconcile`] then clears the bits no
/// consumer owns); 2 -> 3 adds `count` (default 1), `lens` and `kinds`
/// (NULL), so every old row is a chunk of one event and nothing is
/// rewritten (`ADD COLUMN` with a constant default rewrites no rows).
/// The two indexes gain `count`, so totals, per-consumer counts and
/// eviction scans read them instead of the payloads; an older index of
/// the same name is rebuilt.
pub(crate) fn upgrade_records(tx: &rusqlite::Transaction<'_>) -> Result<(), BufferError> {
    let has = |table: &str, column: &str| -> Result<bool, BufferError> {
        tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2)",
            [table, column],
            |row| row.get(0),
        )
        .ctx("open: read record columns")
    };
    if !has("records", "pending")? {
        tx.execute_batch("ALTER TABLE records ADD COLUMN pending INTEGER NOT NULL DEFAULT -1")
            .ctx("open: add records.pending")?;
        tracing::info!("buffer file upgraded to schema version 2 (per-transport delivery)");
    }
    if !has("records", "count")? {
        tx.execute_batch(
            "ALTER TABLE records ADD COLUMN count INTEGER NOT NULL DEFAULT 1; \
             ALTER TABLE records ADD COLUMN lens BLOB; \
             ALTER TABLE records ADD COLUMN kinds BLOB;",
        )
        .ctx("open: add chunk columns")?;
        tracing::info!("buffer file upgraded to schema version 3 (chunks of events)");
    }
    for (index, columns) in [
        ("records_seq_size", "seq, size, count"),
        (
            "records_seq_pending",
            "seq, pending, size, enqueued_ms, count",
        ),
    ] {
        let current: Vec<String> = tx
            .prepare("SELECT name FROM pragma_index_info(?1) ORDER BY seqno")
            .and_then(|mut stmt| stmt.query_map([index], |row| row.get(0))?.collect())
            .ctx("open: read record indexes")?;
        if current.join(", ") != columns {
            tx.execute_batch(&format!(
                "DROP INDEX IF EXISTS {index}; CREATE INDEX {index} ON records ({columns});"
            ))
            .ctx("open: index records")?;
        }
    }
    Ok(())
}

/// Renames `path` (and its WAL/SHM side files) to `<name>.corrupt-<unix-time>`,
/// keeping them for forensics; a counter is appended if that name is taken.
pub(crate) fn move_aside(path: &Path) -> Result<PathBuf, BufferError> {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let base = with_suffix(path, &format!(".corrupt-{secs}"));
    let mut target = base.clone();
    let mut n = 1;
    while target.exists() {
        target = with_suffix(&base, &format!("-{n}"));
        n += 1;
    }
    rename(path, &target, "move corrupt file aside")?;
    for side in ["-wal", "-shm", "-journal"] {
        let from = with_suffix(path, side);
        if from.exists() {
            rename(
                &from,
                &with_suffix(&target, side),
                "move corrupt file aside",
            )?;
        }
    }
    Ok(target)
}

/// Renames `from` to `to` and syncs the directory, so the new name
/// survives a power cut.
pub(crate) fn rename(from: &Path, to: &Path, op: &'static str) -> Result<(), BufferError> {
    let io = |source| BufferError::Io {
        op,
        path: from.to_path_buf(),
        source,
    };
    std::fs::rename(from, to).map_err(io)?;
    if let Some(dir) = to.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
    }
    Ok(())
}

pub(crate) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The open-time totals and the eviction scan must read the small
    /// `(seq, size)` index, never the payloads: that is what keeps startup
    /// and eviction cheap with a large backlog.
    #[test]
    fn size_queries_use_the_covering_index() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(CREATE_SCHEMA).unwrap();
        let tx = conn.transaction().unwrap();
        upgrade_records(&tx).unwrap();
        tx.commit().unwrap();
        for sql in [
            "SELECT COALESCE(SUM(count), 0), COALESCE(SUM(size), 0) FROM records",
            "SELECT seq, size, count FROM records WHERE seq > 1 AND seq < 9 ORDER BY seq",
        ] {
            let plan: String = conn
                .query_row(&format!("EXPLAIN QUERY PLAN {sql}"), [], |r| r.get(3))
                .unwrap();
            assert!(
                plan.contains("COVERING INDEX records_seq_size"),
                "{sql}: {plan}"
            );
        }
    }

    /// The per-consumer counts at open, the eviction scan (which needs the
    /// masks) and a consumer's oldest record read the `(seq, pending, …)`
    /// index, never the payloads.
    #[test]
    fn consumer_queries_use_the_pending_index() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(CREATE_SCHEMA).unwrap();
        let tx = conn.transaction().unwrap();
        upgrade_records(&tx).unwrap();
        tx.commit().unwrap();
        for sql in [
            "SELECT pending, SUM(count) FROM records GROUP BY pending",
            "SELECT seq, size, pending, count FROM records WHERE seq > 1 AND seq < 9 ORDER BY seq",
            "SELECT enqueued_ms FROM records INDEXED BY records_seq_pending \
             WHERE seq > 3 AND (pending & 2) != 0 ORDER BY seq LIMIT 1",
        ] {
            let plan: Vec<String> = conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap()
                .query_map([], |r| r.get(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            assert!(
                plan.iter()
                    .any(|p| p.contains("COVERING INDEX records_seq_pending")),
                "{sql}: {plan:?}"
            );
        }
    }
}
