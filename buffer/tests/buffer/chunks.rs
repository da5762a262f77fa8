//! Schema 3 stores a commit's records in chunk rows. These tests pin what
//! must not change with that: per-record ids, order, batch limits, exact
//! drop and eviction counts, per-record dead letters, per-consumer
//! progress, re-delivery after a crash, and the upgrade of a version-2
//! file; and what chunks add: kinds stored with the records.

use std::path::Path;

use halyard_buffer::{BufferConfig, Commit, Consumer, NewDeadLetter, WhenFull};

use crate::common::*;

fn with_consumers(dir: &Path, consumers: &[Consumer], max_bytes: u64) -> BufferConfig {
    BufferConfig {
        consumers: Some(consumers.to_vec()),
        ..config(dir, max_bytes, WhenFull::DropOldest)
    }
}

/// Damages the closed buffer file at `path` by hand: runs `sql`, which
/// must change exactly one row.
fn change_one_row(path: &Path, sql: &str) {
    let conn = rusqlite::Connection::open(path).unwrap();
    assert_eq!(conn.execute(sql, []).unwrap(), 1, "{sql}");
}

fn rows(path: &Path) -> Vec<(i64, i64)> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut stmt = conn
        .prepare("SELECT seq, count FROM records ORDER BY seq")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// The version-2 schema as that build created it, with five records for
/// its single consumer.
const V2_SCHEMA: &str = "
CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL);
INSERT INTO meta VALUES ('schema_version', 2);
CREATE TABLE records (seq INTEGER PRIMARY KEY AUTOINCREMENT, id BLOB NOT NULL,
    payload BLOB NOT NULL, size INTEGER NOT NULL, enqueued_ms INTEGER NOT NULL,
    pending INTEGER NOT NULL DEFAULT -1);
CREATE INDEX records_seq_size ON records (seq, size);
CREATE INDEX records_seq_pending ON records (seq, pending, size, enqueued_ms);
CREATE TABLE consumers (name TEXT PRIMARY KEY NOT NULL, bit INTEGER NOT NULL UNIQUE,
    kinds TEXT NOT NULL DEFAULT '', since_seq INTEGER NOT NULL DEFAULT 0);
INSERT INTO consumers (name, bit) VALUES ('default', 0);
CREATE TABLE dead_letter (seq INTEGER PRIMARY KEY AUTOINCREMENT, id BLOB NOT NULL,
    payload BLOB NOT NULL, reason TEXT NOT NULL, at_ms INTEGER NOT NULL);
CREATE TABLE cursors (name TEXT PRIMARY KEY NOT NULL, value BLOB NOT NULL);
";

#[test]
fn a_version_2_file_is_upgraded_with_its_rows_as_chunks_of_one() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), u64::MAX, WhenFull::DropOldest);
    {
        let conn = rusqlite::Connection::open(&cfg.path).unwrap();
        conn.execute_batch(V2_SCHEMA).unwrap();
        for n in 0..5u64 {
            let r = rec(n, 30);
            conn.execute(
                "INSERT INTO records (id, payload, size, enqueued_ms, pending) \
                 VALUES (?1, ?2, ?3, 0, 1)",
                (&r.id[..], &r.payload, 30 + 64),
            )
            .unwrap();
        }
    }
    {
        let (buffer, report) = open(&cfg);
        assert_eq!((report.pending_records, report.pending_bytes), (5, 5 * 94));
        buffer.append(&recs(5..12, 30)).unwrap();
        assert_eq!(buffer.stats().records, 12);
    }
    // Old rows are chunks of one; the new commit is one chunk after them,
    // numbered on from the old sequence.
    assert_eq!(
        rows(&cfg.path),
        vec![(1, 1), (2, 1), (3, 1), (4, 1), (5, 1), (12, 7)]
    );
    let (buffer, _) = open(&cfg);
    let first = buffer.next_batch(4, usize::MAX).unwrap().unwrap();
    assert_eq!(nums(&first), vec![0, 1, 2, 3]);
    assert_eq!((first.first_seq, first.last_seq), (1, 4));
    let second = buffer.next_batch(4, usize::MAX).unwrap().unwrap();
    assert_eq!(nums(&second), vec![4, 5, 6, 7]);
    assert_eq!((second.first_seq, second.last_seq), (5, 8));
    buffer.ack(&first).unwrap();
    buffer.ack(&second).unwrap();
    assert_eq!(drain(&buffer, 100), (8..12).collect::<Vec<_>>());
    assert_eq!(buffer.stats().records, 0);
    drop(buffer);
    let version: i64 = rusqlite::Connection::open(&cfg.path)
        .unwrap()
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(version, 3);
}

#[test]
fn eviction_takes_exactly_the_records_needed_from_a_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 10 * 100, WhenFull::DropOldest);
    let (buffer, _) = open(&cfg);
    buffer.append(&recs(0..10, LEN_100)).unwrap();
    let outcome = buffer.append(&recs(10..13, LEN_100)).unwrap();
    assert_eq!((outcome.accepted, outcome.evicted_oldest), (3, 3));
    // A whole chunk and part of the next.
    let outcome = buffer.append(&recs(13..22, LEN_100)).unwrap();
    assert_eq!((outcome.accepted, outcome.evicted_oldest), (9, 9));
    let stats = buffer.stats();
    assert_eq!((stats.records, stats.bytes), (10, 1000));
    assert_eq!(stats.evicted_oldest_total, 12);
    assert_eq!(drain(&buffer, 4), (12..22).collect::<Vec<_>>());
}

#[test]
fn drop_newest_refuses_exactly_the_tail_that_does_not_fit() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 10 * 100, WhenFull::DropNewest);
    let (buffer, _) = open(&cfg);
    buffer.append(&recs(0..8, LEN_100)).unwrap();
    let outcome = buffer.append(&recs(8..13, LEN_100)).unwrap();
    assert_eq!((outcome.accepted, outcome.dropped_newest), (2, 3));
    assert_eq!(buffer.stats().dropped_newest_total, 3);
    assert_eq!(drain(&buffer, 3), (0..10).collect::<Vec<_>>());
}

#[test]
fn a_batch_refused_in_part_dead_letters_only_the_refused_records() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), u64::MAX, WhenFull::DropOldest);
    let (buffer, _) = open(&cfg);
    let all = recs(0..10, 40);
    buffer.append(&all).unwrap();
    // The batch ends inside the chunk; the receiver refuses two of its records.
    let batch = buffer.next_batch(6, usize::MAX).unwrap().unwrap();
    assert_eq!(nums(&batch), (0..6).collect::<Vec<_>>());
    let refused = [
        NewDeadLetter::event(&batch.records[2], "schema: bad value"),
        NewDeadLetter::event(&batch.records[4], "schema: bad unit"),
    ];
    buffer.ack_with_dead_letters(&batch, &refused).unwrap();
    let dead = buffer.dead_letters(100).unwrap();
    let mut dead: Vec<(u64, String)> = dead
        .iter()
        .map(|d| (num(&as_record(d)), d.reason.clone()))
        .collect();
    dead.sort();
    assert_eq!(
        dead,
        vec![
            (2, "schema: bad value".to_owned()),
            (4, "schema: bad unit".to_owned())
        ]
    );
    assert_eq!(drain(&buffer, 100), (6..10).collect::<Vec<_>>());
    let stats = buffer.stats();
    assert_eq!((stats.records, stats.dead_letters), (0, 2));

    // A whole batch dead-lettered keeps every record, one row each.
    buffer.append(&recs(20..25, 40)).unwrap();
    let batch = buffer.next_batch(3, usize::MAX).unwrap().unwrap();
    buffer.dead_letter(&batch, "http 400").unwrap();
    let mut ids: Vec<u64> = buffer
        .dead_letters(100)
        .unwrap()
        .iter()
        .filter(|d| d.reason == "http 400")
        .map(|d| num(&as_record(d)))
        .collect();
    ids.sort();
    assert_eq!(ids, vec![20, 21, 22]);
    assert_eq!(drain(&buffer, 100), vec![23, 24]);
}

#[test]
fn two_transports_progress_at_their_own_pace_over_shared_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let consumers = [Consumer::all("fast"), Consumer::all("slow")];
    let cfg = with_consumers(dir.path(), &consumers, u64::MAX);
    let (buffer, _) = open(&cfg);
    for from in (0..150).step_by(50) {
        buffer.append(&recs(from..from + 50, 30)).unwrap();
    }
    let (mut fast, mut slow) = (Vec::new(), Vec::new());
    // The slow one holds a batch in flight and retries it once.
    let held = buffer
        .next_batch_for("slow", 20, usize::MAX)
        .unwrap()
        .unwrap();
    while let Some(batch) = buffer.next_batch_for("fast", 7, usize::MAX).unwrap() {
        fast.extend(nums(&batch));
        buffer.ack(&batch).unwrap();
    }
    assert_eq!(fast, (0..150).collect::<Vec<_>>());
    assert_eq!(buffer.stats().records, 150, "still pending for slow");
    buffer.nack(&held);
    while let Some(batch) = buffer.next_batch_for("slow", 33, usize::MAX).unwrap() {
        slow.extend(nums(&batch));
        buffer.ack(&batch).unwrap();
    }
    assert_eq!(slow, (0..150).collect::<Vec<_>>());
    let stats = buffer.stats();
    assert_eq!((stats.records, stats.bytes), (0, 0));
    assert!(buffer.consumer_stats().iter().all(|c| c.pending == 0));
    drop(buffer);
    assert_eq!(rows(&cfg.path), vec![]);
}

#[test]
fn a_crash_redelivers_the_batches_in_flight_with_the_same_ids() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), u64::MAX, WhenFull::DropOldest);
    let (acked, in_flight) = {
        let (buffer, _) = open(&cfg);
        buffer.append(&recs(0..100, 50)).unwrap();
        let a = buffer.next_batch(30, usize::MAX).unwrap().unwrap();
        let b = buffer.next_batch(30, usize::MAX).unwrap().unwrap();
        buffer.ack(&a).unwrap();
        (a.records, b.records)
        // Dropped without acking b: as a crash leaves it.
    };
    let (buffer, report) = open(&cfg);
    assert_eq!(report.pending_records, 70);
    let again = buffer.next_batch(30, usize::MAX).unwrap().unwrap();
    assert_eq!(again.records, in_flight, "same ids and payloads");
    assert!(acked.iter().all(|r| !again.records.contains(r)));
    buffer.ack(&again).unwrap();
    assert_eq!(drain(&buffer, 1000), (60..100).collect::<Vec<_>>());
}

#[test]
fn kinds_given_at_the_commit_route_and_come_back_with_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    let consumers = [
        Consumer {
            name: "logs".into(),
            kinds: vec!["log.".into()],
        },
        Consumer::all("all"),
    ];
    let (buffer, _) = open(&with_consumers(dir.path(), &consumers, u64::MAX));
    let records = recs(0..6, 20);
    let kinds = vec![
        ("log.app".to_owned(), 2),
        ("metric".to_owned(), 3),
        ("log.sys".to_owned(), 1),
    ];
    buffer
        .commit(&Commit {
            records: &records,
            kinds: &kinds,
            ..Commit::default()
        })
        .unwrap();
    // Cut into three chunks where the mask changes; "logs" has two.
    let logs = buffer
        .next_batch_for("logs", 100, usize::MAX)
        .unwrap()
        .unwrap();
    assert_eq!(nums(&logs), vec![0, 1, 5]);
    let got: Vec<Option<&str>> = (0..3).map(|i| logs.kind(i)).collect();
    assert_eq!(got, vec![Some("log.app"), Some("log.app"), Some("log.sys")]);
    buffer.ack(&logs).unwrap();
    let all = buffer
        .next_batch_for("all", 100, usize::MAX)
        .unwrap()
        .unwrap();
    let got: Vec<Option<&str>> = (0..all.records.len()).map(|i| all.kind(i)).collect();
    assert_eq!(nums(&all), (0..6).collect::<Vec<_>>());
    assert_eq!(
        got,
        vec![
            Some("log.app"),
            Some("log.app"),
            Some("metric"),
            Some("metric"),
            Some("metric"),
            Some("log.sys")
        ]
    );
    assert_eq!(all.kind(6), None);

    // Runs that do not cover the records are ignored, not misapplied.
    let wrong = vec![("log.app".to_owned(), 1)];
    buffer
        .commit(&Commit {
            records: &recs(6..8, 20),
            kinds: &wrong,
            ..Commit::default()
        })
        .unwrap();
    buffer.ack(&all).unwrap();
    let all = buffer
        .next_batch_for("all", 100, usize::MAX)
        .unwrap()
        .unwrap();
    assert_eq!(nums(&all), vec![6, 7]);
    assert_eq!((all.kind(0), all.kind(1)), (None, None));
}

/// A buffer whose every batch is cut inside a chunk still settles each
/// record once: the chunks are split where leases end.
#[test]
fn small_batches_over_large_chunks_deliver_each_record_once() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), u64::MAX, WhenFull::DropOldest);
    let (buffer, _) = open(&cfg);
    buffer.append(&recs(0..1000, 10)).unwrap();
    buffer.append(&recs(1000..1500, 10)).unwrap();
    let mut in_flight = Vec::new();
    let mut got = Vec::new();
    for _ in 0..4 {
        in_flight.push(buffer.next_batch(97, 500).unwrap().unwrap());
    }
    // Byte limit: 500 bytes of 10-byte payloads is 50 records.
    assert!(in_flight.iter().all(|b| b.records.len() == 50));
    for batch in in_flight.drain(..).rev() {
        got.extend(nums(&batch));
        buffer.ack(&batch).unwrap();
    }
    got.sort();
    assert_eq!(got, (0..200).collect::<Vec<_>>());
    assert_eq!(drain(&buffer, 97), (200..1500).collect::<Vec<_>>());
    assert_eq!(buffer.stats().records, 0);
}

/// A shipper's lease takes whole chunks: it stops before a chunk that
/// would not fit whole (no row is rewritten), cuts only a first chunk that
/// is over the limits alone, and still delivers every record once, in
/// order.
#[test]
fn whole_chunk_leases_stop_before_a_chunk_that_does_not_fit() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), u64::MAX, WhenFull::DropOldest);
    let whole = |buffer: &halyard_buffer::Buffer, max| {
        let consumer = halyard_buffer::DEFAULT_CONSUMER;
        let batch = buffer.next_whole_batch_for(consumer, max, usize::MAX);
        batch.unwrap().unwrap()
    };
    {
        let (buffer, _) = open(&cfg);
        buffer.append(&recs(0..300, 10)).unwrap();
        buffer.append(&recs(300..1300, 10)).unwrap();
        buffer.append(&recs(1300..1400, 10)).unwrap();
        // 300 fit; the next chunk of 1000 would not: the batch ends before it.
        assert_eq!(nums(&whole(&buffer, 1000)), (0..300).collect::<Vec<_>>());
        // The chunk of 1000 fills a batch exactly; the 100 after it wait.
        assert_eq!(nums(&whole(&buffer, 1000)), (300..1300).collect::<Vec<_>>());
    }
    // No row was rewritten.
    assert_eq!(rows(&cfg.path), vec![(300, 300), (1300, 1000), (1400, 100)]);
    {
        let (buffer, _) = open(&cfg);
        let first = whole(&buffer, 1000);
        assert_eq!(nums(&first), (0..300).collect::<Vec<_>>());
        // A first chunk over the limit alone is cut, as an exact lease cuts it.
        let second = whole(&buffer, 40);
        assert_eq!(nums(&second), (300..340).collect::<Vec<_>>());
        buffer.ack(&second).unwrap();
        buffer.ack(&first).unwrap();
        // The rest of the cut chunk (960) fits; the 100 after it do not.
        assert_eq!(nums(&whole(&buffer, 1000)), (340..1300).collect::<Vec<_>>());
    }
    assert_eq!(rows(&cfg.path), vec![(1300, 960), (1400, 100)]);
    let (buffer, _) = open(&cfg);
    assert_eq!(drain(&buffer, 1000), (340..1400).collect::<Vec<_>>());
}

/// A shipper's lease decides from the index whether the next chunk fits
/// its byte limit (the payload is read only for chunks it takes), with the
/// same boundary as reading the payload: a chunk that fits exactly is
/// taken, one byte less stops before it. A row whose indexed size makes no
/// sense is read and checked against its real payload instead.
#[test]
fn whole_chunk_leases_stop_at_the_byte_limit_before_reading_the_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), u64::MAX, WhenFull::DropOldest);
    let consumer = halyard_buffer::DEFAULT_CONSUMER;
    {
        let (buffer, _) = open(&cfg);
        for from in (0..400).step_by(100) {
            buffer.append(&recs(from..from + 100, 10)).unwrap();
        }
        // Each chunk is 100 payloads of 10 bytes.
        let exact = buffer.next_whole_batch_for(consumer, 1000, 2000).unwrap();
        assert_eq!(nums(&exact.unwrap()), (0..200).collect::<Vec<_>>());
        let short = buffer.next_whole_batch_for(consumer, 1000, 1999).unwrap();
        assert_eq!(nums(&short.unwrap()), (200..300).collect::<Vec<_>>());
    }
    change_one_row(&cfg.path, "UPDATE records SET size = -1 WHERE seq = 400");
    let (buffer, _) = open(&cfg);
    // 0..300 are served again after the restart; the last chunk's size
    // says nothing, so its payload decides: 1000 more bytes do not fit.
    let batch = buffer.next_whole_batch_for(consumer, 1000, 3500).unwrap();
    assert_eq!(nums(&batch.unwrap()), (0..300).collect::<Vec<_>>());
    let batch = buffer.next_whole_batch_for(consumer, 1000, 3500).unwrap();
    assert_eq!(nums(&batch.unwrap()), (300..400).collect::<Vec<_>>());
}

/// A chunk whose bytes SQLite reads without complaint but whose parts do
/// not agree (an overflow page overwritten with plausible bytes) is damage:
/// the salvage leaves it out, its records are counted lost, and the rest
/// is delivered in order.
#[test]
fn an_inconsistent_chunk_is_salvaged_around_and_its_records_counted_lost() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), u64::MAX, WhenFull::DropOldest);
    {
        let (buffer, _) = open(&cfg);
        for from in (0..40).step_by(10) {
            buffer.append(&recs(from..from + 10, 30)).unwrap();
        }
    }
    // Records 10..20: lengths that no longer add up to the payload.
    change_one_row(
        &cfg.path,
        "UPDATE records SET lens = zeroblob(40) WHERE seq = 20",
    );
    let (buffer, _) = open(&cfg);
    let delivered = drain(&buffer, 100);
    assert_eq!(
        delivered,
        (0..10).chain(20..40).collect::<Vec<_>>(),
        "everything but the bad chunk, in order"
    );
    let damage = buffer.take_damage();
    assert_eq!(damage.len(), 1, "{damage:?}");
    assert_eq!(damage[0].records_lost, 10, "{damage:?}");
    assert!(damage[0].lost_exact);
    assert_eq!(damage[0].damaged_ranges, vec![(11, 20)], "{damage:?}");
    let stats = buffer.stats();
    assert_eq!((stats.records, stats.damage_lost_total), (0, 10));
}
