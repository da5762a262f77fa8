//! Copying one table row by row in rowid order, seeking past the parts
//! that cannot be read (see the parent module for why seeks work there).

use rusqlite::Connection;
use rusqlite::params_from_iter;
use rusqlite::types::Value;

use crate::error::{BufferError, Cause, Context};

/// Whether a read error means "this part of the file is damaged" (skip it)
/// rather than a fault that should stop the salvage (I/O, out of memory).
pub(super) fn damaged(err: &rusqlite::Error) -> bool {
    Cause::of(err) == Cause::Corrupt
}

/// Where a scan stopped.
enum Scan {
    /// At the end of the table.
    Done,
    /// At damage, after copying rows up to `last` (if any).
    Broken { last: Option<i64> },
}

/// Copies `table` row by row, skipping unreadable stretches; returns them
/// as inclusive rowid ranges.
pub(super) fn copy_table(
    old: &Connection,
    new: &Connection,
    table: &str,
    columns: &[String],
) -> Result<Vec<(i64, i64)>, BufferError> {
    let list = columns
        .iter()
        .map(|c| format!("\"{c}\""))
        .collect::<Vec<_>>()
        .join(", ");
    // NOT INDEXED: the rows must come from (and seeks must go down) the
    // table's own b-tree, not an index that happens to cover `rowid`.
    // `>= after + 1` rather than `> after`: a seek for "greater than k"
    // starts at the leaf holding k, which may be the damaged one.
    let select = format!(
        "SELECT rowid, {list} FROM \"{table}\" NOT INDEXED WHERE rowid >= ?1 ORDER BY rowid"
    );
    let marks = vec!["?"; columns.len() + 1].join(", ");
    let insert = format!("INSERT OR REPLACE INTO \"{table}\" (rowid, {list}) VALUES ({marks})");
    let mut insert = new.prepare(&insert).ctx("salvage: prepare insert")?;
    let mut gaps = Vec::new();
    // Rowids of our tables start at 1.
    let mut after = 0i64;
    // The key the last skip landed on, to tell "that row itself is
    // unreadable" (e.g. its overflow page) from progress.
    let mut landed: Option<i64> = None;
    loop {
        match scan(old, &select, after, columns.len(), &mut insert)? {
            Scan::Done => return Ok(gaps),
            Scan::Broken { last } => {
                if let Some(last) = last {
                    after = last;
                } else if landed == after.checked_add(1) {
                    // Reachable by a seek but not readable: skip that row.
                    after += 1;
                    gaps.push((after, after));
                    landed = None;
                    continue;
                }
                match first_readable(old, table, after)? {
                    None => {
                        gaps.push((after.saturating_add(1), i64::MAX));
                        return Ok(gaps);
                    }
                    Some(key) => {
                        if key > after.saturating_add(1) {
                            gaps.push((after + 1, key - 1));
                        }
                        after = key - 1;
                        landed = Some(key);
                    }
                }
            }
        }
    }
}

/// Copies rows with rowid > `after` until the end or the first damage.
fn scan(
    old: &Connection,
    select: &str,
    after: i64,
    columns: usize,
    insert: &mut rusqlite::Statement<'_>,
) -> Result<Scan, BufferError> {
    let broken = Scan::Broken { last: None };
    let mut stmt = match old.prepare(select) {
        Ok(s) => s,
        Err(e) if damaged(&e) => return Ok(broken),
        Err(e) => return Err(e).ctx("salvage: prepare read"),
    };
    let mut rows = match stmt.query([after.saturating_add(1)]) {
        Ok(r) => r,
        Err(e) if damaged(&e) => return Ok(broken),
        Err(e) => return Err(e).ctx("salvage: read rows"),
    };
    let mut last = None;
    loop {
        let row = match rows.next() {
            Ok(Some(row)) => row,
            Ok(None) => return Ok(Scan::Done),
            Err(e) if damaged(&e) => return Ok(Scan::Broken { last }),
            Err(e) => return Err(e).ctx("salvage: read rows"),
        };
        let values = (0..=columns)
            .map(|i| row.get::<_, Value>(i))
            .collect::<Result<Vec<Value>, _>>();
        let values = match values {
            Ok(v) => v,
            Err(e) if damaged(&e) => return Ok(Scan::Broken { last }),
            Err(e) => return Err(e).ctx("salvage: read a row"),
        };
        let Value::Integer(rowid) = values[0] else {
            return Ok(Scan::Broken { last });
        };
        insert
            .execute(params_from_iter(values))
            .ctx("salvage: write a row")?;
        last = Some(rowid);
    }
}

/// The first rowid after `after` that a seek can reach again, or `None`
/// when nothing after it can be (or exists). Seeks past the damage gallop
/// (1, 2, 4, … ahead), then bisect back to the first key that answers, so
/// this takes at most ~128 seeks whatever the gap.
fn first_readable(old: &Connection, table: &str, after: i64) -> Result<Option<i64>, BufferError> {
    let sql = format!(
        "SELECT rowid FROM \"{table}\" NOT INDEXED WHERE rowid >= ?1 ORDER BY rowid LIMIT 1"
    );
    // Some(found) when the seek worked (found: the key, if any); None if damaged.
    let probe = |x: i64| -> Result<Option<Option<i64>>, BufferError> {
        let result = old
            .prepare_cached(&sql)
            .and_then(|mut s| s.query_row([x], |r| r.get::<_, i64>(0)));
        match result {
            Ok(key) => Ok(Some(Some(key))),
            Err(rusqlite::Error::QueryReturnedNoRows) => Ok(Some(None)),
            Err(e) if damaged(&e) => Ok(None),
            Err(e) => Err(e).ctx("salvage: seek past damage"),
        }
    };
    let (mut lo, mut step) = (after, 1i64);
    let (mut hi, mut found) = loop {
        let x = lo.saturating_add(step);
        match probe(x)? {
            Some(found) => break (x, found),
            None if x == i64::MAX => return Ok(None),
            None => {
                lo = x;
                step = step.saturating_mul(2);
            }
        }
    };
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        match probe(mid)? {
            Some(f) => (hi, found) = (mid, f),
            None => lo = mid,
        }
    }
    Ok(found)
}
