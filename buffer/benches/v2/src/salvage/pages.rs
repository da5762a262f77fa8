//! Records the b-tree can no longer reach, read straight off the pages.
//!
//! A salvage through SQLite (see the parent module) reaches a row only through
//! every b-tree page above it. When an inner page is lost — typically a file
//! cut short, since inner pages are allocated as the tree grows and often
//! sit near the end — whole runs of intact leaves become unreachable. Like
//! `sqlite3 .recover`, this reads the damaged file page by page, parses
//! every table leaf (following overflow chains), and yields the cells that
//! have exactly the shape of a `records` row (NULL rowid alias, 16-byte id,
//! payload, `size = len(payload) + 64`, time).
//!
//! Stale copies must not come back: pages on the freelist (as far as it can
//! still be read) are skipped, only rowids inside the ranges the b-tree pass
//! could not read are taken, and the scan is not used when the damaged file
//! has a non-empty WAL (the newest version of a page may be there, and the
//! file's older copy could hold rows that were since acknowledged).

use std::collections::HashSet;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use crate::config::RECORD_OVERHEAD_BYTES;

/// Largest payload followed through overflow pages; bigger cells are
/// taken as garbage rather than read.
const MAX_PAYLOAD: u64 = 64 << 20;

/// One `records` row found on a page.
#[derive(Debug)]
pub(crate) struct Orphan {
    pub(crate) seq: i64,
    pub(crate) id: Vec<u8>,
    pub(crate) payload: Vec<u8>,
    pub(crate) size: i64,
    pub(crate) enqueued_ms: i64,
    /// Its consumer mask; -1 (every consumer) for a row written before
    /// the column existed, as SQLite itself reads such a row.
    pub(crate) pending: i64,
}

/// The damaged file, read page by page.
struct Pages {
    file: File,
    page_size: u64,
    usable: u64,
    count: u64,
}

impl Pages {
    fn open(path: &Path) -> Option<Pages> {
        let mut file = File::open(path).ok()?;
        let len = file.metadata().ok()?.len();
        let mut header = [0u8; 100];
        file.read_exact(&mut header).ok()?;
        if &header[..16] != b"SQLite format 3\0" {
            return None;
        }
        let raw = u64::from(u16::from_be_bytes([header[16], header[17]]));
        let page_size = if raw == 1 { 65_536 } else { raw };
        if !(512..=65_536).contains(&page_size) || !page_size.is_power_of_two() {
            return None;
        }
        let usable = page_size.checked_sub(u64::from(header[20]))?;
        Some(Pages {
            file,
            page_size,
            usable,
            count: len / page_size,
        })
    }

    fn read(&mut self, pageno: u64) -> Option<Vec<u8>> {
        if pageno == 0 || pageno > self.count {
            return None;
        }
        let mut page = vec![0u8; self.page_size as usize];
        self.file
            .seek(SeekFrom::Start((pageno - 1) * self.page_size))
            .ok()?;
        self.file.read_exact(&mut page).ok()?;
        Some(page)
    }

    /// Pages on the freelist, as far as its trunk chain can be read.
    fn free_pages(&mut self) -> HashSet<u64> {
        let mut free = HashSet::new();
        let Some(first) = self.read(1) else {
            return free;
        };
        let mut trunk = u64::from(be32(&first, 32));
        while trunk != 0 && free.insert(trunk) {
            let Some(page) = self.read(trunk) else { break };
            let leaves = u64::from(be32(&page, 4)).min(self.usable / 4);
            for i in 0..leaves as usize {
                free.insert(u64::from(be32(&page, 8 + 4 * i)));
            }
            trunk = u64::from(be32(&page, 0));
        }
        free
    }

    /// The full payload of a cell whose first `local` bytes start at
    /// `at`, following its overflow chain.
    fn payload(&mut self, page: &[u8], at: usize, total: u64) -> Option<Vec<u8>> {
        let u = self.usable;
        let x = u - 35;
        let local = if total <= x {
            total
        } else {
            let m = ((u - 12) * 32 / 255) - 23;
            let k = m + ((total - m) % (u - 4));
            if k <= x { k } else { m }
        } as usize;
        let mut out = page.get(at..at + local)?.to_vec();
        if (out.len() as u64) < total {
            let mut next = u64::from(be32(page, at + local));
            let mut hops = 0;
            while (out.len() as u64) < total {
                hops += 1;
                if next == 0 || hops > self.count {
                    return None;
                }
                let overflow = self.read(next)?;
                let take = ((total - out.len() as u64).min(u - 4)) as usize;
                out.extend_from_slice(overflow.get(4..4 + take)?);
                next = u64::from(be32(&overflow, 0));
            }
        }
        Some(out)
    }
}

/// Calls `found` for every `records` row on a table leaf of `path` whose
/// sequence number lies in one of `ranges` (inclusive). Does nothing when
/// the file has a non-empty WAL or no readable header (see the module
/// docs). Returns how many rows were offered.
pub(crate) fn orphan_records(
    path: &Path,
    wal: &Path,
    ranges: &[(i64, i64)],
    mut found: impl FnMut(Orphan) -> bool,
) -> u64 {
    if ranges.is_empty() || std::fs::metadata(wal).is_ok_and(|m| m.len() > 0) {
        return 0;
    }
    let Some(mut pages) = Pages::open(path) else {
        return 0;
    };
    let free = pages.free_pages();
    let wanted = |seq: i64| ranges.iter().any(|(a, b)| (*a..=*b).contains(&seq));
    let mut offered = 0;
    for pageno in 1..=pages.count {
        if free.contains(&pageno) {
            continue;
        }
        let Some(page) = pages.read(pageno) else {
            continue;
        };
        let hdr = if pageno == 1 { 100 } else { 0 };
        if page.get(hdr) != Some(&0x0D) {
            continue;
        }
        let cells = usize::from(be16(&page, hdr + 3));
        for i in 0..cells {
            let Some(ptr) = page.get(hdr + 8 + 2 * i..hdr + 10 + 2 * i) else {
                break;
            };
            let ptr = usize::from(u16::from_be_bytes([ptr[0], ptr[1]]));
            let Some(orphan) = cell(&mut pages, &page, ptr) else {
                continue;
            };
            if wanted(orphan.seq) && found(orphan) {
                offered += 1;
            }
        }
    }
    offered
}

/// The `records` row in the cell at `ptr`, if it is one.
fn cell(pages: &mut Pages, page: &[u8], ptr: usize) -> Option<Orphan> {
    let (total, n1) = varint(page.get(ptr..)?)?;
    let (rowid, n2) = varint(page.get(ptr + n1..)?)?;
    if total > MAX_PAYLOAD {
        return None;
    }
    let record = pages.payload(page, ptr + n1 + n2, total)?;
    let (header_len, mut at) = varint(&record)?;
    let header_len = usize::try_from(header_len).ok()?;
    let mut types = Vec::new();
    while at < header_len && types.len() < 7 {
        let (t, n) = varint(record.get(at..)?)?;
        types.push(t);
        at += n;
    }
    if !(5..=6).contains(&types.len()) || types[0] != 0 || types[1] != 12 + 2 * 16 {
        return None;
    }
    let mut body = header_len;
    let mut take = |t: u64| -> Option<&[u8]> {
        let len = serial_len(t)?;
        let bytes = record.get(body..body + len)?;
        body += len;
        Some(bytes)
    };
    let id = take(types[1])?.to_vec();
    if types[2] < 12 || types[2] % 2 != 0 {
        return None;
    }
    let payload = take(types[2])?.to_vec();
    let size = int(types[3], take(types[3])?)?;
    let enqueued_ms = int(types[4], take(types[4])?)?;
    let pending = match types.get(5) {
        Some(&t) => int(t, take(t)?)?,
        None => -1,
    };
    if size != payload.len() as i64 + RECORD_OVERHEAD_BYTES as i64 {
        return None;
    }
    Some(Orphan {
        seq: rowid as i64,
        id,
        payload,
        size,
        enqueued_ms,
        pending,
    })
}

/// Bytes a value of serial type `t` takes; `None` for reserved types.
fn serial_len(t: u64) -> Option<usize> {
    Some(match t {
        0 | 8 | 9 => 0,
        1..=4 => t as usize,
        5 => 6,
        6 | 7 => 8,
        10 | 11 => return None,
        _ => ((t - 12) / 2) as usize,
    })
}

/// An integer of serial type `t` (big-endian two's complement).
fn int(t: u64, bytes: &[u8]) -> Option<i64> {
    match t {
        8 => Some(0),
        9 => Some(1),
        1..=6 => {
            let mut v: i64 = if bytes.first()? & 0x80 != 0 { -1 } else { 0 };
            for b in bytes {
                v = (v << 8) | i64::from(*b);
            }
            Some(v)
        }
        _ => None,
    }
}

/// A SQLite varint: big-endian 7-bit groups, the 9th byte whole.
fn varint(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut v = 0u64;
    for i in 0..9 {
        let b = *bytes.get(i)?;
        if i == 8 {
            return Some(((v << 8) | u64::from(b), 9));
        }
        v = (v << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            return Some((v, i + 1));
        }
    }
    None
}

fn be16(page: &[u8], at: usize) -> u16 {
    page.get(at..at + 2)
        .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]))
}

fn be32(page: &[u8], at: usize) -> u32 {
    page.get(at..at + 4)
        .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_and_integers_decode_as_sqlite_writes_them() {
        assert_eq!(varint(&[0x05]), Some((5, 1)));
        assert_eq!(varint(&[0x81, 0x00]), Some((128, 2)));
        assert_eq!(varint(&[0xff; 9]), Some((u64::MAX, 9)));
        assert_eq!(varint(&[0x81]), None);
        assert_eq!(int(1, &[0xff]), Some(-1));
        assert_eq!(int(2, &[0x01, 0x00]), Some(256));
        assert_eq!(
            int(6, &1_796_000_000_000i64.to_be_bytes()),
            Some(1_796_000_000_000)
        );
        assert_eq!(serial_len(12 + 2 * 16), Some(16));
    }
}
