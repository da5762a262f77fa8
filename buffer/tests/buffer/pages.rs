//! Damaging a buffer file the way a failing disk or a cut-off copy does:
//! one page overwritten with garbage, or the file cut short. The pages are
//! found with SQLite's `dbstat` table on the closed file, so a test knows
//! exactly which rows a damaged page held.
//!
//! Shared with the end-to-end tests (included there by path), so both
//! damage files the same way.

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

/// One page of a b-tree, as `dbstat` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// 1-based page number in the file.
    pub pageno: u64,
    /// `internal`, `leaf` or `overflow`.
    pub pagetype: String,
    /// Cells on the page: rows, for a leaf of a table.
    pub cells: u64,
}

/// The database page size, from the file header (bytes 16–17, big-endian;
/// 1 means 65 536).
pub fn page_size(db: &Path) -> u64 {
    let header = std::fs::read(db).expect("read the buffer file");
    let raw = u16::from_be_bytes([header[16], header[17]]);
    if raw == 1 { 65_536 } else { u64::from(raw) }
}

/// Every page of b-tree `name` (a table or an index), in key order. The
/// file must not be open elsewhere (the buffer locks it exclusively).
pub fn pages(db: &Path, name: &str) -> Vec<Page> {
    let conn = rusqlite::Connection::open(db).expect("open the buffer file");
    let mut stmt = conn
        .prepare("SELECT pageno, pagetype, ncell FROM dbstat WHERE name = ?1 ORDER BY path")
        .expect("dbstat is compiled in");
    stmt.query_map([name], |r| {
        Ok(Page {
            pageno: r.get::<_, i64>(0)? as u64,
            pagetype: r.get(1)?,
            cells: r.get::<_, i64>(2)? as u64,
        })
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

/// The leaves of b-tree `name`, in key order.
pub fn leaves(db: &Path, name: &str) -> Vec<Page> {
    pages(db, name)
        .into_iter()
        .filter(|p| p.pagetype == "leaf")
        .collect()
}

/// The leaf in the middle of `name`'s key order (the test's victim).
pub fn middle_leaf(db: &Path, name: &str) -> Page {
    let leaves = leaves(db, name);
    assert!(leaves.len() >= 3, "{name} has only {} leaves", leaves.len());
    leaves[leaves.len() / 2].clone()
}

/// Overwrites page `pageno` with deterministic garbage (a xorshift stream
/// from `seed`), as a bad sector or a stray write would.
pub fn overwrite_page(db: &Path, pageno: u64, seed: u64) {
    let size = page_size(db);
    let mut x = seed | 1;
    let garbage: Vec<u8> = (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(db)
        .expect("open the buffer file for writing");
    file.seek(SeekFrom::Start((pageno - 1) * size)).unwrap();
    file.write_all(&garbage).unwrap();
    file.sync_all().unwrap();
}

/// Rows of table `name` on leaves among the first `keep_pages` pages: what
/// survives cutting the file there, even where a b-tree page above them
/// does not.
pub fn rows_on_leaves_within(db: &Path, name: &str, keep_pages: u64) -> u64 {
    leaves(db, name)
        .iter()
        .filter(|leaf| leaf.pageno <= keep_pages)
        .map(|leaf| leaf.cells)
        .sum()
}

/// Cuts the file to its first `keep_pages` pages.
pub fn truncate_to_pages(db: &Path, keep_pages: u64) {
    let size = page_size(db);
    let file = std::fs::OpenOptions::new().write(true).open(db).unwrap();
    file.set_len(keep_pages * size).unwrap();
    file.sync_all().unwrap();
}

/// Pages in the file.
pub fn page_count(db: &Path) -> u64 {
    std::fs::metadata(db).unwrap().len() / page_size(db)
}

/// Records held by the rows on table leaf `pageno` of the closed file:
/// the sum of their chunks' `count` (schema 3 stores many records per
/// row). Read before damaging the page; the rowids come from the leaf's
/// cells (type 0x0D: payload length and rowid varints at each pointer).
pub fn records_on_leaf(db: &Path, pageno: u64) -> u64 {
    let size = page_size(db) as usize;
    let file = std::fs::read(db).expect("read the buffer file");
    let page = &file[(pageno as usize - 1) * size..pageno as usize * size];
    let at = if pageno == 1 { 100 } else { 0 };
    assert_eq!(page[at], 0x0d, "page {pageno} is a table leaf");
    let cells = u16::from_be_bytes([page[at + 3], page[at + 4]]) as usize;
    let varint = |mut i: usize| -> (u64, usize) {
        let mut v = 0u64;
        for n in 0..9 {
            let b = page[i];
            i += 1;
            if n == 8 {
                return ((v << 8) | u64::from(b), i);
            }
            v = (v << 7) | u64::from(b & 0x7f);
            if b & 0x80 == 0 {
                break;
            }
        }
        (v, i)
    };
    let rowids: Vec<i64> = (0..cells)
        .map(|c| {
            let ptr = at + 8 + 2 * c;
            let cell = u16::from_be_bytes([page[ptr], page[ptr + 1]]) as usize;
            let (_, next) = varint(cell);
            varint(next).0 as i64
        })
        .collect();
    let conn = rusqlite::Connection::open(db).expect("open the buffer file");
    rowids
        .iter()
        .map(|seq| {
            conn.query_row("SELECT count FROM records WHERE seq = ?1", [seq], |r| {
                r.get::<_, i64>(0)
            })
            .expect("a row of the leaf") as u64
        })
        .sum()
}

/// The first overflow page of the last row of table `name` (in key order)
/// and that row's `count`: a page a running host reads only when it
/// reaches the newest chunk. `dbstat` paths of overflow pages are the
/// cell's path followed by `+NNNNNN`, the place in the chain.
#[allow(
    dead_code,
    reason = "used by the end-to-end damage tests, which include this file"
)]
pub fn last_row_first_overflow(db: &Path, name: &str) -> (u64, u64) {
    let conn = rusqlite::Connection::open(db).expect("open the buffer file");
    let overflow: Vec<(String, u64)> = conn
        .prepare("SELECT path, pageno FROM dbstat WHERE name = ?1 AND pagetype = 'overflow' ORDER BY path")
        .unwrap()
        .query_map([name], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let (last_path, _) = overflow.last().expect("rows with overflow pages");
    let cell = last_path.split('+').next().unwrap().to_owned();
    let first = overflow
        .iter()
        .find(|(path, _)| path.starts_with(&format!("{cell}+")))
        .map(|(_, pageno)| *pageno)
        .unwrap();
    let count: i64 = conn
        .query_row(
            &format!("SELECT count FROM \"{name}\" ORDER BY seq DESC LIMIT 1"),
            [],
            |r| r.get(0),
        )
        .unwrap();
    (first, count as u64)
}
