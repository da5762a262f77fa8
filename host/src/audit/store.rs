//! The audit table: one SQLite file of its own (`data_dir/audit.db`),
//! bounded in rows, read by `halyard audit` while the host runs.
//!
//! Why a file of its own rather than a table in the buffer: the running host
//! holds the buffer with exclusive locking (so nothing else could read it),
//! and damage to the buffer file is itself something the trail must keep.
//! The audit file uses normal locking in WAL mode, so one writer (the host)
//! and any number of readers (`halyard audit`) work at once.

use std::path::Path;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use crate::lifecycle::LifecycleEvent;

/// The most payload bytes kept per row; a longer payload (a guest's trap
/// message can be long) is kept as its first bytes under `truncated`.
pub const MAX_PAYLOAD_BYTES: usize = 4096;

/// What can go wrong with the audit file.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// SQLite refused an operation (open, write, read).
    #[error("audit trail {path}: {source}")]
    Sqlite {
        /// The audit file.
        path: String,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// The audit file's permissions could not be set, or its writer
    /// thread could not start.
    #[error("audit trail {path}: {source}")]
    Io {
        /// The audit file.
        path: String,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// `halyard audit` found no audit file: the host never ran with this
    /// `data_dir`, or ran with `[audit] enabled = false`.
    #[error("no audit trail at {0} (has the host run with this data_dir?)")]
    Missing(String),
}

/// One kept lifecycle event.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AuditRow {
    /// Position in the trail; increases by one per event, never reused, so
    /// a gap at the start is what `max_rows` evicted.
    pub seq: i64,
    /// The event as it was published.
    #[serde(flatten)]
    pub event: LifecycleEvent,
}

/// Which rows `halyard audit` prints.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only events at or after this Unix time, in milliseconds.
    pub since_ms: Option<i64>,
    /// Only events of this kind (`plugin.loaded`), or of this family when
    /// it has no dot (`plugin` matches `plugin.*`).
    pub kind: Option<String>,
    /// At most this many rows: the newest ones, printed oldest first.
    pub limit: Option<u64>,
}

/// An open audit file.
pub struct AuditStore {
    conn: Connection,
    path: String,
    max_rows: u64,
}

impl AuditStore {
    /// Opens (creating) the audit file for the host to write, keeping at
    /// most `max_rows` rows.
    pub fn open(path: &Path, max_rows: u64) -> Result<AuditStore, AuditError> {
        let name = path.display().to_string();
        let err = |source| AuditError::Sqlite {
            path: name.clone(),
            source,
        };
        let conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(err)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             CREATE TABLE IF NOT EXISTS audit (
                 seq INTEGER PRIMARY KEY AUTOINCREMENT,
                 ts_ms INTEGER NOT NULL,
                 ts TEXT NOT NULL,
                 kind TEXT NOT NULL,
                 correlation_id TEXT NOT NULL,
                 schema_version INTEGER NOT NULL,
                 payload TEXT NOT NULL);
             CREATE INDEX IF NOT EXISTS audit_ts ON audit (ts_ms);
             CREATE TABLE IF NOT EXISTS audit_meta (
                 key TEXT PRIMARY KEY,
                 value INTEGER NOT NULL);",
        )
        .map_err(err)?;
        Ok(AuditStore {
            conn,
            path: name,
            max_rows: max_rows.max(1),
        })
    }

    /// Opens an existing audit file read-only (for `halyard audit`).
    pub fn open_read(path: &Path) -> Result<AuditStore, AuditError> {
        let name = path.display().to_string();
        if !path.exists() {
            return Err(AuditError::Missing(name));
        }
        let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .and_then(|c| {
                c.busy_timeout(std::time::Duration::from_secs(5))?;
                Ok(c)
            })
            .map_err(|source| AuditError::Sqlite {
                path: name.clone(),
                source,
            })?;
        Ok(AuditStore {
            conn,
            path: name,
            max_rows: u64::MAX,
        })
    }

    fn err(&self, source: rusqlite::Error) -> AuditError {
        AuditError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// Appends `events` in one transaction, then evicts the oldest rows
    /// past `max_rows` (counted in `evicted`).
    pub fn append(&mut self, events: &[LifecycleEvent]) -> Result<(), AuditError> {
        let max_rows = i64::try_from(self.max_rows).unwrap_or(i64::MAX);
        let tx = self.conn.transaction().map_err(|e| AuditError::Sqlite {
            path: self.path.clone(),
            source: e,
        })?;
        let written = (|| {
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO audit (ts_ms, ts, kind, correlation_id, schema_version, payload)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                for e in events {
                    insert.execute(params![
                        unix_ms_of(&e.ts),
                        e.ts,
                        e.kind,
                        e.correlation_id,
                        e.schema_version,
                        bounded_payload(&e.payload),
                    ])?;
                }
            }
            let evicted = tx.execute(
                "DELETE FROM audit WHERE seq <= (SELECT max(seq) FROM audit) - ?1",
                params![max_rows],
            )?;
            if evicted > 0 {
                tx.execute(
                    "INSERT INTO audit_meta (key, value) VALUES ('evicted', ?1)
                     ON CONFLICT (key) DO UPDATE SET value = value + ?1",
                    params![evicted as i64],
                )?;
            }
            Ok(())
        })();
        written.and_then(|()| tx.commit()).map_err(|e| self.err(e))
    }

    /// Rows evicted since the file was made (the trail keeps `max_rows`).
    pub fn evicted(&self) -> Result<u64, AuditError> {
        self.conn
            .query_row(
                "SELECT value FROM audit_meta WHERE key = 'evicted'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map(|v| v.unwrap_or(0).max(0) as u64)
            .map_err(|e| self.err(e))
    }

    /// The rows `filter` selects, oldest first.
    pub fn query(&self, filter: &AuditFilter) -> Result<Vec<AuditRow>, AuditError> {
        let (kind_exact, kind_family) = match filter.kind.as_deref() {
            Some(k) if k.contains('.') => (Some(k.to_string()), None),
            Some(k) => (None, Some(format!("{k}."))),
            None => (None, None),
        };
        let limit = filter
            .limit
            .map_or(i64::MAX, |l| i64::try_from(l).unwrap_or(i64::MAX));
        let mut stmt = self
            .conn
            .prepare(
                "SELECT seq, ts, kind, correlation_id, schema_version, payload FROM (
                   SELECT * FROM audit
                   WHERE ts_ms >= ?1
                     AND (?2 IS NULL OR kind = ?2)
                     AND (?3 IS NULL OR substr(kind, 1, length(?3)) = ?3)
                   ORDER BY seq DESC LIMIT ?4)
                 ORDER BY seq ASC",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map(
                params![
                    filter.since_ms.unwrap_or(i64::MIN),
                    kind_exact,
                    kind_family,
                    limit
                ],
                |r| {
                    let payload: String = r.get(5)?;
                    Ok(AuditRow {
                        seq: r.get(0)?,
                        event: LifecycleEvent {
                            ts: r.get(1)?,
                            kind: r.get(2)?,
                            correlation_id: r.get(3)?,
                            schema_version: r.get(4)?,
                            payload: serde_json::from_str(&payload)
                                .unwrap_or(serde_json::Value::String(payload)),
                        },
                    })
                },
            )
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(|e| self.err(e))
    }
}

/// The payload as JSON text of at most [`MAX_PAYLOAD_BYTES`]; a longer one
/// becomes `{"truncated": true, "bytes": N, "head": "<first bytes>"}`.
fn bounded_payload(payload: &serde_json::Value) -> String {
    let text = payload.to_string();
    if text.len() <= MAX_PAYLOAD_BYTES {
        return text;
    }
    let mut end = MAX_PAYLOAD_BYTES - 256;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    serde_json::json!({"truncated": true, "bytes": text.len(), "head": &text[..end]}).to_string()
}

/// The Unix milliseconds of an RFC 3339 time the host wrote; now if it
/// does not parse (it always does: the host formats it).
pub fn unix_ms_of(ts: &str) -> i64 {
    humantime::parse_rfc3339_weak(ts)
        .ok()
        .unwrap_or_else(std::time::SystemTime::now)
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str, n: u64) -> LifecycleEvent {
        LifecycleEvent::new(kind, "c", serde_json::json!({"n": n}))
    }

    #[test]
    fn keeps_max_rows_and_counts_what_it_evicted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.db");
        let mut store = AuditStore::open(&path, 5).unwrap();
        for n in 0..12 {
            store.append(&[event("plugin.loaded", n)]).unwrap();
        }
        let rows = store.query(&AuditFilter::default()).unwrap();
        assert_eq!(rows.len(), 5);
        assert_eq!(rows[0].seq, 8);
        assert_eq!(rows[4].event.payload["n"], 11);
        assert_eq!(store.evicted().unwrap(), 7);
        drop(store);
        let read = AuditStore::open_read(&path).unwrap();
        assert_eq!(read.query(&AuditFilter::default()).unwrap().len(), 5);
    }

    #[test]
    fn filters_by_kind_family_and_limit() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = AuditStore::open(&dir.path().join("a.db"), 100).unwrap();
        let kinds = [
            "plugin.loaded",
            "breaker.open",
            "plugin.trap",
            "pluginx.odd",
        ];
        let events: Vec<_> = kinds.iter().map(|k| event(k, 0)).collect();
        store.append(&events).unwrap();
        let q = |kind: &str, limit| AuditFilter {
            kind: Some(kind.into()),
            limit,
            ..Default::default()
        };
        let kinds_of = |rows: Vec<AuditRow>| -> Vec<String> {
            rows.into_iter().map(|r| r.event.kind).collect()
        };
        assert_eq!(
            kinds_of(store.query(&q("plugin", None)).unwrap()),
            ["plugin.loaded", "plugin.trap"]
        );
        assert_eq!(
            kinds_of(store.query(&q("plugin.trap", None)).unwrap()),
            ["plugin.trap"]
        );
        assert_eq!(
            kinds_of(store.query(&q("plugin", Some(1))).unwrap()),
            ["plugin.trap"]
        );
    }

    #[test]
    fn a_huge_payload_is_kept_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = AuditStore::open(&dir.path().join("a.db"), 10).unwrap();
        let long = "é".repeat(10_000);
        store
            .append(&[LifecycleEvent::new(
                "plugin.trap",
                "c",
                serde_json::json!({"reason": long}),
            )])
            .unwrap();
        let rows = store.query(&AuditFilter::default()).unwrap();
        assert_eq!(rows[0].event.payload["truncated"], true);
        assert!(rows[0].event.payload["head"].as_str().unwrap().len() < MAX_PAYLOAD_BYTES);
    }

    #[test]
    fn since_compares_event_times() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = AuditStore::open(&dir.path().join("a.db"), 10).unwrap();
        let mut old = event("config.reloaded", 1);
        old.ts = "2020-01-01T00:00:00.000Z".into();
        store.append(&[old, event("config.reloaded", 2)]).unwrap();
        let since = unix_ms_of("2025-01-01T00:00:00.000Z");
        let rows = store
            .query(&AuditFilter {
                since_ms: Some(since),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].event.payload["n"], 2);
    }
}
