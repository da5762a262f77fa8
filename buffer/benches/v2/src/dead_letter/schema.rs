//! The dead-letter table's columns beyond the version-1 ones, added to
//! older files on open without a version bump (an older build still reads
//! and writes the table: its rows get the defaults), and the open-time
//! totals.
//!
//! ```sql
//! ALTER TABLE dead_letter ADD COLUMN origin TEXT NOT NULL DEFAULT 'event'; -- 'event' | 'frame' | 'batch'
//! ALTER TABLE dead_letter ADD COLUMN input TEXT;          -- a frame's input, for replay
//! ALTER TABLE dead_letter ADD COLUMN kept TEXT NOT NULL DEFAULT 'payload'; -- 'payload' | 'digest' | 'none'
//! ALTER TABLE dead_letter ADD COLUMN payload_len INTEGER; -- bytes of what arrived ('payload', 'digest')
//! ALTER TABLE dead_letter ADD COLUMN sha256 BLOB;         -- a 'digest' row's frame hash
//! ALTER TABLE dead_letter ADD COLUMN size INTEGER NOT NULL DEFAULT 0; -- accounted bytes
//! ALTER TABLE dead_letter ADD COLUMN transport TEXT;      -- the transport that refused a record
//! CREATE INDEX dead_letter_seq_size ON dead_letter (seq, size); -- covers the bound's scan and SUM
//! ```
//!
//! `payload` stays `NOT NULL`: a row that keeps no payload stores an empty
//! blob, and `kept` says why it is empty.

use rusqlite::{Connection, Transaction};

use super::accounted;
use crate::error::{BufferError, Context};

/// The columns added after schema version 1, with their definitions.
const COLUMNS: &[(&str, &str)] = &[
    ("origin", "TEXT NOT NULL DEFAULT 'event'"),
    ("input", "TEXT"),
    ("kept", "TEXT NOT NULL DEFAULT 'payload'"),
    ("payload_len", "INTEGER"),
    ("sha256", "BLOB"),
    ("size", "INTEGER NOT NULL DEFAULT 0"),
    ("transport", "TEXT"),
];

/// Adds the missing columns and the index inside the open-time schema
/// transaction; rows from before get their accounted size.
pub(crate) fn upgrade(tx: &Transaction<'_>) -> Result<(), BufferError> {
    let have: Vec<String> = tx
        .prepare("SELECT name FROM pragma_table_info('dead_letter')")
        .and_then(|mut stmt| {
            stmt.query_map([], |row| row.get(0))?
                .collect::<Result<_, _>>()
        })
        .ctx("open: read dead-letter columns")?;
    let mut added = false;
    for (name, definition) in COLUMNS {
        if !have.iter().any(|h| h == name) {
            tx.execute_batch(&format!(
                "ALTER TABLE dead_letter ADD COLUMN {name} {definition}"
            ))
            .ctx("open: add dead-letter column")?;
            // Only a file without sizes needs them computed.
            added |= *name == "size";
        }
    }
    if added {
        // Only when the columns were just added: a full scan, once per file.
        tx.execute(
            "UPDATE dead_letter SET payload_len = length(payload), \
             size = length(payload) + length(CAST(reason AS BLOB)) + ?1",
            [accounted(0, "", "") as i64],
        )
        .ctx("open: size old dead letters")?;
    }
    tx.execute_batch("CREATE INDEX IF NOT EXISTS dead_letter_seq_size ON dead_letter (seq, size)")
        .ctx("open: index dead letters")
}

/// Rows and accounted bytes in the table, read from the covering index.
pub(crate) fn totals(conn: &Connection) -> Result<(u64, u64), BufferError> {
    let (rows, bytes): (i64, i64) = conn
        .query_row(
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM dead_letter",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .ctx("open: count dead letters")?;
    Ok((rows.max(0) as u64, bytes.max(0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The open-time totals and the bound's eviction scan read the small
    /// `(seq, size)` index, never the payloads, so a full table costs
    /// neither startup nor every dead-lettering commit a payload scan.
    #[test]
    fn bound_queries_use_the_covering_index() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE dead_letter (seq INTEGER PRIMARY KEY AUTOINCREMENT, id BLOB NOT NULL, \
             payload BLOB NOT NULL, reason TEXT NOT NULL, at_ms INTEGER NOT NULL)",
        )
        .unwrap();
        let tx = conn.transaction().unwrap();
        upgrade(&tx).unwrap();
        tx.commit().unwrap();
        for sql in [
            "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM dead_letter",
            "SELECT seq, size FROM dead_letter ORDER BY seq",
        ] {
            let plan: String = conn
                .query_row(&format!("EXPLAIN QUERY PLAN {sql}"), [], |r| r.get(3))
                .unwrap();
            assert!(
                plan.contains("COVERING INDEX dead_letter_seq_size"),
                "{sql}: {plan}"
            );
        }
    }
}
