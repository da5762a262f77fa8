//! Damage is contained to the damaged part: a page overwritten with
//! garbage or a file cut short costs only the rows that cannot be read,
//! counted exactly; delivery resumes in order after the damage, and new
//! records keep flowing.

use std::path::Path;

use halyard_buffer::{Buffer, BufferConfig, Commit, Cursor, Damage, FoundAt, WhenFull};

use crate::common::*;
use crate::pages;

/// Records in each test's backlog: ~45 per 4 KiB leaf, so 60+ leaves.
const N: u64 = 3000;

/// Appends records `range` one commit each, so each is a chunk of one
/// row: these tests count what a damaged page costs in rows, and a row
/// per record keeps that count a record count (as before schema 3).
/// `chunked_damage_costs_exactly_the_events_of_its_chunks` covers chunks
/// of many.
pub(crate) fn append_rows(buffer: &Buffer, range: std::ops::Range<u64>, len: usize) {
    for n in range {
        buffer.append(&recs(n..n + 1, len)).unwrap();
    }
}

/// A closed buffer file holding records `0..N` (plus `dead` dead letters
/// and a cursor), as a previous run leaves it.
fn backlog(dir: &Path, dead: u64) -> BufferConfig {
    let cfg = config(dir, u64::MAX, WhenFull::DropOldest);
    let (buffer, _) = open(&cfg);
    append_rows(&buffer, 0..N, 60);
    let letters = dead_events(&recs(1_000_000..1_000_000 + dead, 20), "bad");
    buffer
        .commit(&Commit {
            dead_letters: &letters,
            cursor: Some(Cursor {
                name: "input-a",
                value: Some(b"offset=42"),
            }),
            ..Commit::default()
        })
        .unwrap();
    cfg
}

/// Drains `buffer`, asserting order (strictly increasing numbers, so no
/// duplicates) and intact payloads; returns the numbers.
fn drain_in_order(buffer: &Buffer) -> Vec<u64> {
    let got = drain(buffer, 100);
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "out of order or duplicated"
    );
    got
}

/// The one damage report the buffer has, checked for the basics.
fn one_report(buffer: &Buffer, found: FoundAt) -> Damage {
    let mut reports = buffer.take_damage();
    assert_eq!(reports.len(), 1, "{reports:?}");
    let report = reports.remove(0);
    assert_eq!(report.found, found, "{report:?}");
    assert!(report.moved_to.exists(), "damaged file kept: {report:?}");
    assert!(buffer.take_damage().is_empty(), "taken once");
    report
}

#[test]
fn a_page_damaged_before_start_costs_only_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = backlog(dir.path(), 7);
    let victim = pages::middle_leaf(&cfg.path, "records");
    pages::overwrite_page(&cfg.path, victim.pageno, 0x5eed);

    // The open-time check does not read table leaves: damage is met by the
    // first read that reaches the page.
    let (buffer, report) = open(&cfg);
    assert_eq!(report.damage, None);
    assert_eq!(report.pending_records, N);
    let delivered = drain_in_order(&buffer);
    let damage = one_report(&buffer, FoundAt::Running);
    let lost = damage.records_lost;
    assert!(damage.lost_exact);
    assert_eq!(damage.records_lost_at_most, lost);
    assert!(
        lost >= 1 && lost <= victim.cells,
        "lost {lost} of a {}-row page",
        victim.cells
    );
    assert_eq!(
        delivered.len() as u64 + lost,
        N,
        "delivered + lost = accepted"
    );
    assert_eq!(damage.in_flight_unreadable, 0);
    // The lost rows are one contiguous run: the page's.
    let missing: Vec<u64> = (0..N)
        .filter(|n| delivered.binary_search(n).is_err())
        .collect();
    assert_eq!(missing.len() as u64, lost);
    assert_eq!(
        missing.last().unwrap() - missing[0] + 1,
        lost,
        "{missing:?}"
    );
    assert_eq!(
        (damage.dead_letters_recovered, damage.dead_letters_lost),
        (7, Some(0))
    );
    // The salvage copies dead letters whole: payload, size, byte total.
    let dead = buffer.dead_letters(100).unwrap();
    assert_eq!(dead.len(), 7);
    for d in &dead {
        assert_eq!(as_record(d), rec(num(&as_record(d)), 20));
        assert_eq!(d.size, 20 + 3 + 64, "payload + reason `bad` + overhead");
    }
    assert_eq!(buffer.stats().dead_letter_bytes, 7 * (20 + 3 + 64));
    assert_eq!(
        buffer.cursor("input-a").unwrap().as_deref(),
        Some(&b"offset=42"[..])
    );
    let stats = buffer.stats();
    assert_eq!(
        (
            stats.records,
            stats.damage_lost_total,
            stats.damage_repairs_total
        ),
        (0, lost, 1)
    );
    assert_eq!(stats.read_error, None);

    // New records keep flowing, after the old ones, and survive a restart.
    buffer.append(&recs(N..N + 10, 60)).unwrap();
    drop(buffer);
    let (buffer, report) = open(&cfg);
    assert_eq!((report.damage, report.pending_records), (None, 10));
    assert_eq!(drain_in_order(&buffer), (N..N + 10).collect::<Vec<_>>());
}

#[test]
fn a_page_damaged_while_running_costs_only_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = backlog(dir.path(), 0);
    let victim = pages::middle_leaf(&cfg.path, "records");
    let (buffer, _) = open(&cfg);
    // A batch is in flight when the disk goes bad.
    let first = buffer.next_batch(100, usize::MAX).unwrap().unwrap();
    pages::overwrite_page(&cfg.path, victim.pageno, 0xbad);
    buffer.append(&recs(N..N + 50, 60)).unwrap();

    let mut delivered = nums(&first);
    delivered.extend(drain_in_order(&buffer));
    buffer.ack(&first).unwrap();
    delivered.sort_unstable();
    delivered.dedup();
    let damage = one_report(&buffer, FoundAt::Running);
    let lost = damage.records_lost;
    assert!(
        lost >= 1 && lost <= victim.cells,
        "lost {lost} of a {}-row page",
        victim.cells
    );
    assert_eq!(
        delivered.len() as u64 + lost,
        N + 50,
        "delivered + lost = accepted"
    );
    assert!(delivered.ends_with(&(N..N + 50).collect::<Vec<_>>()));
    assert_eq!(buffer.stats().records, 0);
    assert_eq!(buffer.stats().damage_lost_total, lost);
    // The fresh file is owner-only, like the one it replaced.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&cfg.path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
}

#[test]
fn a_damaged_index_page_at_open_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = backlog(dir.path(), 3);
    let victim = pages::middle_leaf(&cfg.path, "records_seq_size");
    pages::overwrite_page(&cfg.path, victim.pageno, 0x1d);

    // Counting at open reads the index: the damage is found there, and the
    // rows themselves are all readable.
    let (buffer, report) = open(&cfg);
    let damage = report.damage.clone().expect("found at open");
    assert_eq!(damage.found, FoundAt::Open);
    assert_eq!(
        (
            damage.records_recovered,
            damage.records_lost,
            damage.lost_exact
        ),
        (N, 0, true)
    );
    assert_eq!(
        report.recovered_from_corruption.as_ref(),
        Some(&damage.moved_to)
    );
    assert_eq!(report.pending_records, N);
    assert_eq!(one_report(&buffer, FoundAt::Open), damage);
    assert_eq!(drain_in_order(&buffer), (0..N).collect::<Vec<_>>());
    assert_eq!(buffer.dead_letters(100).unwrap().len(), 3);
}

#[test]
fn a_truncated_file_at_start_delivers_its_readable_rows() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = backlog(dir.path(), 0);
    let keep = pages::page_count(&cfg.path) / 2;
    let readable = pages::rows_on_leaves_within(&cfg.path, "records", keep);
    assert!(readable > 0 && readable < N, "{readable}");
    pages::truncate_to_pages(&cfg.path, keep);

    let (buffer, report) = open(&cfg);
    let delivered = drain_in_order(&buffer);
    let damage = report
        .damage
        .or_else(|| buffer.take_damage().pop())
        .expect("the damage is reported");
    assert!(
        delivered.len() as u64 >= readable,
        "{} < {readable}",
        delivered.len()
    );
    assert_eq!(damage.records_recovered, delivered.len() as u64);
    // The index was cut too, so the count is bounded rather than exact;
    // nothing was acknowledged, so the upper bound is the exact loss.
    let got = delivered.len() as u64;
    if damage.lost_exact {
        assert_eq!(got + damage.records_lost, N, "{damage:?}");
    }
    assert!(got + damage.records_lost <= N, "{damage:?}");
    assert_eq!(got + damage.records_lost_at_most, N, "{damage:?}");
    // Sequence numbers are not reused after the salvage: new records come
    // after every old one.
    buffer.append(&recs(N..N + 5, 60)).unwrap();
    assert_eq!(drain_in_order(&buffer), (N..N + 5).collect::<Vec<_>>());
}

#[test]
fn a_damaged_root_page_while_running_loses_nothing_on_intact_leaves() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = backlog(dir.path(), 0);
    let root = pages::pages(&cfg.path, "records")
        .into_iter()
        .find(|p| p.pagetype == "internal")
        .expect("a two-level tree");
    let (buffer, _) = open(&cfg);
    pages::overwrite_page(&cfg.path, root.pageno, 0x400);

    // No row can be reached through the b-tree any more; every leaf is
    // intact, and the salvage reads them page by page.
    let delivered = drain_in_order(&buffer);
    let damage = one_report(&buffer, FoundAt::Running);
    assert_eq!(damage.records_lost, 0, "{damage:?}");
    assert_eq!(delivered, (0..N).collect::<Vec<_>>());
    buffer.append(&recs(N..N + 5, 60)).unwrap();
    assert_eq!(drain_in_order(&buffer), (N..N + 5).collect::<Vec<_>>());
}

#[test]
fn unreadable_rows_of_a_batch_in_flight_are_lost_only_if_it_is_released() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), u64::MAX, WhenFull::DropOldest);
    // ~4 records per leaf, several MiB: more than SQLite's page cache.
    let n = 8000u64;
    {
        let (buffer, _) = open(&cfg);
        append_rows(&buffer, 0..n, 900);
    }
    let leaves = pages::leaves(&cfg.path, "records");
    let (victim, other) = (&leaves[100], &leaves[leaves.len() - 100]);
    let before: u64 = leaves[..100].iter().map(|l| l.cells).sum();
    let (buffer, _) = open(&cfg);
    let a = buffer
        .next_batch(before as usize, usize::MAX)
        .unwrap()
        .unwrap();
    let b = buffer
        .next_batch(victim.cells as usize, usize::MAX)
        .unwrap()
        .unwrap();
    // Read 4 000 more records, so batch b's page has left the cache.
    let c = buffer.next_batch(4000, usize::MAX).unwrap().unwrap();
    assert_eq!(nums(&b)[0], before);
    pages::overwrite_page(&cfg.path, victim.pageno, 0xb);
    pages::overwrite_page(&cfg.path, other.pageno, 0xd);

    // Reading on meets the second page; the salvage also finds batch b's
    // rows unreadable, but b is in flight: not lost yet.
    let mut delivered = nums(&a);
    delivered.extend(nums(&c));
    delivered.extend(drain_in_order(&buffer));
    let damage = one_report(&buffer, FoundAt::Running);
    assert_eq!(damage.records_lost, other.cells, "{damage:?}");
    assert_eq!(damage.in_flight_unreadable, victim.cells, "{damage:?}");
    assert_eq!(buffer.stats().damage_lost_total, other.cells);
    buffer.ack(&a).unwrap();
    buffer.ack(&c).unwrap();
    // Released undelivered, b's unreadable rows are gone: now they count.
    buffer.nack(&b);
    assert_eq!(drain_in_order(&buffer), Vec::<u64>::new());
    let stats = buffer.stats();
    assert_eq!(stats.damage_lost_total, other.cells + victim.cells);
    assert_eq!((stats.records, stats.bytes), (0, 0));
    assert_eq!(delivered.len() as u64 + stats.damage_lost_total, n);
}

/// With chunks of many records, a damaged leaf costs exactly the records
/// of the chunks on it: whole chunks, counted in records, and everything
/// else is delivered in order.
#[test]
fn chunked_damage_costs_exactly_the_events_of_its_chunks() {
    const PER: u64 = 40;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), u64::MAX, WhenFull::DropOldest);
    {
        let (buffer, _) = open(&cfg);
        for from in (0..N).step_by(PER as usize) {
            buffer.append(&recs(from..from + PER, 60)).unwrap();
        }
    }
    let victim = pages::middle_leaf(&cfg.path, "records");
    let on_victim = pages::records_on_leaf(&cfg.path, victim.pageno);
    assert_eq!(on_victim % PER, 0);
    pages::overwrite_page(&cfg.path, victim.pageno, 0xc4);
    let (buffer, report) = open(&cfg);
    assert_eq!(report.pending_records, N);
    let delivered = drain_in_order(&buffer);
    let damage = one_report(&buffer, FoundAt::Running);
    let lost = damage.records_lost;
    assert!(damage.lost_exact, "{damage:?}");
    assert!(
        lost >= PER && lost <= victim.cells * PER,
        "lost {lost}: {damage:?}"
    );
    assert_eq!(lost % PER, 0, "whole chunks: {damage:?}");
    assert_eq!(
        delivered.len() as u64 + lost,
        N,
        "delivered + lost = accepted"
    );
    assert_eq!(buffer.stats().damage_lost_total, lost);
    let missing: Vec<u64> = (0..N)
        .filter(|n| delivered.binary_search(n).is_err())
        .collect();
    assert_eq!(missing[0] % PER, 0, "a chunk's first record: {missing:?}");
    assert_eq!(missing.last().unwrap() - missing[0] + 1, lost, "one run");
}
