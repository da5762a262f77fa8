//! Copying what can still be read out of a damaged buffer file into a fresh
//! one.
//!
//! SQLite reports damage as `SQLITE_CORRUPT` (or `NOTADB`, or a short read
//! of a truncated file) when a statement touches a bad page. A bad leaf of
//! the `records` b-tree therefore makes a range scan fail at some sequence
//! number while every row before it, and every row on the leaves after it,
//! is still readable. So each table is scanned in rowid order; where the scan
//! breaks, rowid seeks (which touch only the pages on the way to one key)
//! gallop and then bisect forward to the first key that can be reached again,
//! and the scan resumes there. Rows keep their rowids, so records keep their
//! sequence numbers (delivery order, lease ranges) and ids.
//!
//! Rows below an inner page that cannot be read are unreachable that way;
//! for `records`, `pages.rs` then reads the damaged ranges page by page.
//!
//! The copy goes to a scratch file; the caller swaps it in only when it is
//! complete, so a failed salvage (disk full) never replaces anything.
//!
//! How many records were lost is counted from the `(seq, size)` index of the
//! damaged file, which lives on other pages than the rows: a merge of its
//! sequence numbers against the copied ones gives the exact count whenever
//! the index could be read to its end (or nothing was skipped at all).

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use crate::error::{BufferError, Context};
use crate::schema::{CREATE_SCHEMA, SCHEMA_VERSION, with_suffix};

mod pages;
mod table;

use table::{copy_table, damaged};

/// What one salvage copied and what it could not.
#[derive(Debug, Default)]
pub(crate) struct Salvaged {
    /// Records copied.
    pub(crate) records: u64,
    /// Their accounted bytes (`SUM(size)`).
    pub(crate) record_bytes: u64,
    /// Dead letters copied.
    pub(crate) dead_letters: u64,
    /// Sequence ranges (inclusive) of `records` that could not be read;
    /// rows may or may not have existed there.
    pub(crate) damaged_ranges: Vec<(i64, i64)>,
    /// Tables of which some part could not be read.
    pub(crate) incomplete: Vec<String>,
    /// Records the old index lists that were not copied.
    pub(crate) index_missing: u64,
    /// Whether the old index was read to its end (so `index_missing` is exact).
    pub(crate) index_complete: bool,
    /// (records, bytes) copied inside each range asked for, in order.
    pub(crate) in_ranges: Vec<(u64, u64)>,
    /// The highest record sequence number ever assigned, as far as known.
    pub(crate) seq_mark: i64,
    /// Records inside the damaged ranges recovered by reading pages
    /// directly (see `pages.rs`).
    pub(crate) found_on_pages: u64,
}

impl Salvaged {
    /// Whether `index_missing` is the exact number of records lost: the
    /// index was read to its end, or no part of `records` was skipped.
    pub(crate) fn records_lost_exact(&self) -> bool {
        self.index_complete || !self.incomplete.iter().any(|t| t == "records")
    }

    /// An upper bound on the records lost: the sequence numbers inside the
    /// damaged ranges (an open-ended range stops at the highest number ever
    /// assigned). Sequence numbers are contiguous per append, so this is
    /// exact unless some of them had already been acknowledged.
    pub(crate) fn records_lost_at_most(&self) -> u64 {
        self.damaged_ranges
            .iter()
            .filter(|(first, _)| *first <= self.seq_mark)
            .map(|(first, last)| (*last).min(self.seq_mark) - first + 1)
            .map(|n| n.max(0) as u64)
            .sum::<u64>()
            .saturating_sub(self.found_on_pages)
    }
}

/// Opens the damaged file at `damaged` without changing it (no checkpoint
/// on close, read-only queries) and salvages it into `to`.
pub(crate) fn salvage_file(damaged: &Path, to: &Path) -> Result<Salvaged, BufferError> {
    let old = Connection::open_with_flags(
        damaged,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .ctx("salvage: open the damaged file")?;
    keep_unchanged(&old);
    // Exclusive locking keeps a WAL index in memory: no -shm file is made.
    let _ = old.pragma_update(None, "locking_mode", "EXCLUSIVE");
    let _ = old.pragma_update(None, "query_only", true);
    // A file shorter than its header says is refused as a whole unless the
    // schema is "writable"; with it, SQLite reads the pages that are there
    // and reports the missing ones as damage, which is what a salvage needs.
    // Nothing is written (query_only).
    let _ = old.pragma_update(None, "writable_schema", true);
    salvage(&old, to, &[], Some(damaged))
}

/// Asks SQLite not to checkpoint the WAL into `conn`'s file on close, so a
/// damaged file moved aside for the operator stays as it was found.
pub(crate) fn keep_unchanged(conn: &Connection) {
    let _ = conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
        true,
    );
}

/// Copies every readable row of `old` into a new buffer file at `to`
/// (replacing whatever is there), and counts the records copied inside
/// each of `ranges` (inclusive sequence ranges: the leases in flight).
/// With `pages`, the path of `old`'s file, records the b-tree cannot reach
/// are also looked for page by page (see `pages.rs`).
pub(crate) fn salvage(
    old: &Connection,
    to: &Path,
    ranges: &[(i64, i64)],
    pages: Option<&Path>,
) -> Result<Salvaged, BufferError> {
    for side in ["", "-wal", "-shm", "-journal"] {
        let file = with_suffix(to, side);
        match std::fs::remove_file(&file) {
            Err(source) if source.kind() != std::io::ErrorKind::NotFound => {
                return Err(BufferError::Io {
                    op: "remove an old salvage file",
                    path: file,
                    source,
                });
            }
            _ => {}
        }
    }
    // Owner-only, like the file it replaces: SQLite would create it with
    // the process's default mode (and its WAL with the same).
    {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(to)
            .map_err(|source| BufferError::Io {
                op: "create the salvage file",
                path: to.to_path_buf(),
                source,
            })?;
    }
    let mut new = Connection::open(to).ctx("salvage: create the fresh file")?;
    // Only the finished file counts (the caller swaps it in afterwards and
    // fsyncs it), so the copy itself needs no journal.
    new.pragma_update(None, "auto_vacuum", "INCREMENTAL")
        .ctx("salvage: set auto_vacuum")?;
    new.pragma_update(None, "journal_mode", "OFF")
        .ctx("salvage: set journal_mode")?;
    new.pragma_update(None, "synchronous", "OFF")
        .ctx("salvage: set synchronous")?;
    let mut out = Salvaged::default();
    {
        let tx = new.transaction().ctx("salvage: begin")?;
        tx.execute_batch(CREATE_SCHEMA)
            .ctx("salvage: create schema")?;
        // The dead-letter columns too, so they are copied, not defaulted.
        crate::dead_letter::upgrade(&tx)?;
        crate::schema::upgrade_records(&tx)?;
        // Unreported usage is copied like any other row.
        crate::usage::create(&tx)?;
        tx.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?1)",
            [SCHEMA_VERSION],
        )
        .ctx("salvage: write schema version")?;
        let tables: Vec<String> = tx
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .ctx("salvage: list tables")?;
        for table in &tables {
            let Some(columns) = common_columns(old, &tx, table)? else {
                out.incomplete.push(table.clone());
                continue;
            };
            if columns.is_empty() {
                continue; // not in the old file (an older schema)
            }
            let gaps = copy_table(old, &tx, table, &columns)?;
            if !gaps.is_empty() {
                out.incomplete.push(table.clone());
            }
            if table == "records" {
                if let Some(file) = pages {
                    out.found_on_pages = copy_orphans(file, &tx, &gaps)?;
                }
                out.damaged_ranges = gaps;
            }
        }
        let bad = drop_bad_chunks(&tx)?;
        if !bad.is_empty() {
            if !out.incomplete.iter().any(|t| t == "records") {
                out.incomplete.push("records".to_owned());
            }
            out.damaged_ranges.extend(bad);
            out.damaged_ranges.sort_unstable();
        }
        out.seq_mark = keep_sequences(old, &tx, &out.damaged_ranges)?;
        tx.commit().ctx("salvage: commit")?;
    }
    (out.index_missing, out.index_complete) = missing_from_index(old, &new)?;
    (out.records, out.record_bytes) = new
        .query_row(
            "SELECT COALESCE(SUM(count), 0), COALESCE(SUM(size), 0) FROM records",
            [],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
        )
        .map(|(n, b)| (n.max(0) as u64, b.max(0) as u64))
        .ctx("salvage: count records")?;
    out.dead_letters = new
        .query_row("SELECT COUNT(*) FROM dead_letter", [], |r| {
            r.get::<_, i64>(0)
        })
        .map(|n| n.max(0) as u64)
        .ctx("salvage: count dead letters")?;
    for (first, last) in ranges {
        let counted = new
            .query_row(
                "SELECT COALESCE(SUM(count), 0), COALESCE(SUM(size), 0) FROM records \
                 WHERE seq >= ?1 AND seq <= ?2",
                (first, last),
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
            )
            .ctx("salvage: count leased records")?;
        out.in_ranges
            .push((counted.0.max(0) as u64, counted.1.max(0) as u64));
    }
    new.pragma_update(None, "journal_mode", "DELETE")
        .ctx("salvage: set journal_mode")?;
    drop(new);
    std::fs::File::open(to)
        .and_then(|f| f.sync_all())
        .map_err(|source| BufferError::Io {
            op: "sync the salvaged file",
            path: to.to_path_buf(),
            source,
        })?;
    Ok(out)
}

/// Deletes the copied chunk rows whose parts do not agree (SQLite read
/// them, but from damaged bytes; see [`crate::chunk::Stored::read`]), so
/// they count as lost like an unreadable row; returns their sequence
/// ranges.
fn drop_bad_chunks(new: &Connection) -> Result<Vec<(i64, i64)>, BufferError> {
    let mut bad = Vec::new();
    {
        let mut stmt = new
            .prepare(&format!(
                "SELECT {} FROM records ORDER BY seq",
                crate::chunk::COLUMNS
            ))
            .ctx("salvage: prepare the chunk check")?;
        let mut rows = stmt.query([]).ctx("salvage: check chunks")?;
        while let Some(row) = rows.next().ctx("salvage: check chunks")? {
            if crate::chunk::Stored::read(row).is_err() {
                let seq: i64 = row.get(0).ctx("salvage: check chunks")?;
                let count: i64 = row.get(1).unwrap_or(1);
                let first = seq.saturating_sub(count.clamp(1, i64::from(u32::MAX)) - 1);
                bad.push((first, seq));
            }
        }
    }
    for (_, seq) in &bad {
        new.execute("DELETE FROM records WHERE seq = ?1", [seq])
            .ctx("salvage: drop an inconsistent chunk")?;
    }
    if !bad.is_empty() {
        tracing::error!(
            chunks = bad.len(),
            "buffer salvage: chunks whose ids, lengths and payload disagree were left out (counted as lost)"
        );
    }
    Ok(bad)
}

/// Inserts the `records` rows found page by page inside `gaps` (those not
/// copied already); returns how many were new.
fn copy_orphans(file: &Path, new: &Connection, gaps: &[(i64, i64)]) -> Result<u64, BufferError> {
    let mut insert = new
        .prepare(
            "INSERT OR IGNORE INTO records \
             (seq, id, payload, size, enqueued_ms, pending, count, lens, kinds) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )
        .ctx("salvage: prepare page insert")?;
    let mut failed = None;
    let added = pages::orphan_records(file, &with_suffix(file, "-wal"), gaps, |o| {
        match insert.execute((
            o.seq,
            &o.id,
            &o.payload,
            o.size,
            o.enqueued_ms,
            o.pending,
            o.count,
            &o.lens,
            &o.kinds,
        )) {
            Ok(n) => n == 1,
            Err(e) => {
                failed.get_or_insert(e);
                false
            }
        }
    });
    match failed {
        Some(e) => Err(e).ctx("salvage: write a row found on a page"),
        None => {
            if added > 0 {
                tracing::warn!(
                    records = added,
                    "buffer salvage: found records below unreadable b-tree pages by reading pages directly"
                );
            }
            Ok(added)
        }
    }
}

/// The columns `table` has in both files, in the new file's order; `None`
/// if the old file's schema cannot be read; empty if the old file has no
/// such table.
fn common_columns(
    old: &Connection,
    new: &Connection,
    table: &str,
) -> Result<Option<Vec<String>>, BufferError> {
    let columns = |conn: &Connection| -> Result<Vec<String>, rusqlite::Error> {
        conn.prepare("SELECT name FROM pragma_table_info(?1)")?
            .query_map([table], |r| r.get(0))?
            .collect()
    };
    let theirs = match columns(old) {
        Ok(c) => c,
        Err(e) if damaged(&e) => return Ok(None),
        Err(e) => return Err(e).ctx("salvage: read the old schema"),
    };
    let ours = columns(new).ctx("salvage: read the new schema")?;
    Ok(Some(
        ours.into_iter().filter(|c| theirs.contains(c)).collect(),
    ))
}

/// Carries the AUTOINCREMENT high-water marks over, so sequence numbers are
/// never reused (a receiver dedupes by id, but order and leases rely on
/// seq): the larger of the old file's mark, the highest row copied and the
/// end of any damaged range. Returns the mark for `records`.
fn keep_sequences(
    old: &Connection,
    new: &Connection,
    damaged: &[(i64, i64)],
) -> Result<i64, BufferError> {
    let theirs: Vec<(String, i64)> = old
        .prepare("SELECT name, seq FROM sqlite_sequence")
        .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
        .unwrap_or_default();
    let damaged_end = damaged
        .iter()
        .map(|(_, last)| *last)
        .filter(|last| *last < i64::MAX)
        .max()
        .unwrap_or(0);
    let mut records_mark = 0;
    for table in ["records", "dead_letter"] {
        let ours: i64 = new
            .query_row(
                &format!("SELECT COALESCE(MAX(seq), 0) FROM \"{table}\""),
                [],
                |r| r.get(0),
            )
            .ctx("salvage: read the highest sequence")?;
        let old_mark = theirs
            .iter()
            .find(|(n, _)| n == table)
            .map_or(0, |(_, s)| *s);
        let extra = if table == "records" { damaged_end } else { 0 };
        let mark = ours.max(old_mark).max(extra);
        if table == "records" {
            records_mark = mark;
        }
        new.execute("DELETE FROM sqlite_sequence WHERE name = ?1", [table])
            .and_then(|_| {
                new.execute(
                    "INSERT INTO sqlite_sequence (name, seq) VALUES (?1, ?2)",
                    (table, mark),
                )
            })
            .ctx("salvage: keep the sequence")?;
    }
    Ok(records_mark)
}

/// Merges the old file's `(seq, size, count)` index against the copied
/// records: how many records (events of the chunks) it lists that were
/// not copied, and whether it could be read to its end. A file older than
/// version 3 has no `count`: each row is one record.
fn missing_from_index(old: &Connection, new: &Connection) -> Result<(u64, bool), BufferError> {
    let Ok(mut theirs) = old
        .prepare("SELECT seq, count FROM records INDEXED BY records_seq_size ORDER BY seq")
        .or_else(|_| {
            old.prepare("SELECT seq, 1 FROM records INDEXED BY records_seq_size ORDER BY seq")
        })
    else {
        return Ok((0, false));
    };
    let Ok(mut listed) = theirs.query([]) else {
        return Ok((0, false));
    };
    let mut ours = new
        .prepare("SELECT seq FROM records ORDER BY seq")
        .ctx("salvage: prepare the check")?;
    let mut copied = ours.query([]).ctx("salvage: check")?;
    let mut next_copied: Option<i64> = match copied.next().ctx("salvage: check")? {
        Some(r) => Some(r.get(0).ctx("salvage: check")?),
        None => None,
    };
    let mut missing = 0u64;
    loop {
        let (seq, count): (i64, i64) = match listed.next() {
            Ok(Some(row)) => match (row.get(0), row.get(1)) {
                (Ok(seq), Ok(count)) => (seq, count),
                _ => return Ok((missing, false)),
            },
            Ok(None) => return Ok((missing, true)),
            Err(_) => return Ok((missing, false)),
        };
        while next_copied.is_some_and(|c| c < seq) {
            next_copied = match copied.next().ctx("salvage: check")? {
                Some(r) => Some(r.get(0).ctx("salvage: check")?),
                None => None,
            };
        }
        if next_copied != Some(seq) {
            missing += count.max(1) as u64;
        }
    }
}
