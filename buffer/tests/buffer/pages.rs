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
