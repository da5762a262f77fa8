//! Dead-lettering batches and pre-buffer rejects.

use halyard_buffer::{
    BufferError, Commit, DeadLetterFilter, Kept, NewDeadLetter, Origin, RECORD_OVERHEAD_BYTES,
    WhenFull,
};

use crate::common::*;

#[test]
fn dead_letter_moves_exactly_the_batch_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), u64::MAX, WhenFull::DropOldest);
    let before_ms = now_ms();
    {
        let (buffer, _) = open(&cfg);
        buffer.append(&recs(0..10, 12)).unwrap();
        let b1 = buffer.next_batch(3, usize::MAX).unwrap().unwrap();
        let b2 = buffer.next_batch(4, usize::MAX).unwrap().unwrap();
        buffer
            .dead_letter(&b2, "HTTP 400: schema mismatch")
            .unwrap();
        let s = buffer.stats();
        assert_eq!(
            (s.records, s.dead_letters, s.leased_records, s.acked_total),
            (6, 4, 3, 0)
        );
        assert!(matches!(
            buffer.dead_letter(&b2, "again"),
            Err(BufferError::UnknownBatch { .. })
        ));
        buffer.ack(&b1).unwrap();
        assert_eq!(
            drain(&buffer, 100),
            [7, 8, 9],
            "dead-lettered records are not served"
        );
    }
    let (buffer, _) = open(&cfg);
    assert_eq!(buffer.stats().dead_letters, 4, "dead letters are durable");
    let dead = buffer.dead_letters(100).unwrap();
    let ids: Vec<u64> = dead.iter().map(|d| num(&as_record(d))).collect();
    assert_eq!(ids, [3, 4, 5, 6]);
    for d in &dead {
        assert_eq!(
            as_record(d),
            rec(num(&as_record(d)), 12),
            "payload kept intact"
        );
        assert_eq!(d.reason, "HTTP 400: schema mismatch");
        assert!(d.at_unix_ms >= before_ms && d.at_unix_ms <= now_ms());
    }
}

#[test]
fn dead_letter_records_keeps_pre_buffer_rejects_out_of_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let (buffer, _) = open(&config(dir.path(), u64::MAX, WhenFull::DropOldest));
    buffer.append(&recs(0..2, 5)).unwrap();
    buffer
        .dead_letter_records(&recs(100..103, 7), "validator: missing field `host`")
        .unwrap();
    buffer.dead_letter_records(&[], "nothing").unwrap();
    let s = buffer.stats();
    assert_eq!((s.records, s.dead_letters, s.appended_total), (2, 3, 2));
    let dead = buffer.dead_letters(2).unwrap();
    assert_eq!(dead.len(), 2, "limit is honoured");
    assert_eq!(num(&as_record(&dead[0])), 100);
    assert_eq!(dead[1].reason, "validator: missing field `host`");
    assert_eq!(drain(&buffer, 10), [0, 1]);
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// A config whose dead-letter table holds at most `max_bytes` accounted
/// bytes (and any number of rows).
fn bounded(dir: &std::path::Path, max_bytes: u64) -> halyard_buffer::BufferConfig {
    halyard_buffer::BufferConfig {
        dead_letter_max_bytes: max_bytes,
        ..config(dir, u64::MAX, WhenFull::DropOldest)
    }
}

/// Payload length that makes a dead letter with a one-byte reason account
/// for exactly 100 bytes.
const DEAD_100: usize = 100 - 1 - RECORD_OVERHEAD_BYTES as usize;

#[test]
fn the_table_is_bounded_in_bytes_and_evicts_the_oldest_counted() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = bounded(dir.path(), 1000);
    {
        let (buffer, _) = open(&cfg);
        buffer
            .dead_letter_records(&recs(0..8, DEAD_100), "r")
            .unwrap();
        let s = buffer.stats();
        assert_eq!(
            (
                s.dead_letters,
                s.dead_letter_bytes,
                s.dead_letters_pruned_total
            ),
            (8, 800, 0)
        );
        buffer
            .dead_letter_records(&recs(8..13, DEAD_100), "r")
            .unwrap();
        let s = buffer.stats();
        assert_eq!(
            (s.dead_letters, s.dead_letter_bytes),
            (10, 1000),
            "exactly at the bound"
        );
        assert_eq!(
            (
                s.dead_letters_pruned_total,
                s.dead_letters_pruned_bytes_total
            ),
            (3, 300)
        );
        // A refused batch of large records counts its bytes, not its rows:
        // 3 records of 250 bytes push out 8 rows of 100.
        let len_250 = 250 - 1 - RECORD_OVERHEAD_BYTES as usize;
        buffer.append(&recs(100..103, len_250)).unwrap();
        let batch = buffer.next_batch(10, usize::MAX).unwrap().unwrap();
        buffer.dead_letter(&batch, "r").unwrap();
        let s = buffer.stats();
        assert_eq!((s.dead_letters, s.dead_letter_bytes), (5, 950));
        assert_eq!(
            (
                s.dead_letters_pruned_total,
                s.dead_letters_pruned_bytes_total
            ),
            (11, 1100)
        );
    }
    let (buffer, _) = open(&cfg);
    let s = buffer.stats();
    assert_eq!(
        (s.dead_letters, s.dead_letter_bytes),
        (5, 950),
        "totals are right after reopen"
    );
    let kept: Vec<u64> = buffer
        .dead_letters(100)
        .unwrap()
        .iter()
        .map(|d| num(&as_record(d)))
        .collect();
    assert_eq!(kept, [11, 12, 100, 101, 102], "the newest, in order");
}

#[test]
fn a_dead_letter_larger_than_the_bound_is_evicted_itself_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (buffer, _) = open(&bounded(dir.path(), 1000));
    buffer
        .dead_letter_records(&recs(0..2, DEAD_100), "r")
        .unwrap();
    buffer.dead_letter_records(&recs(2..3, 5000), "r").unwrap();
    let s = buffer.stats();
    assert_eq!((s.dead_letters, s.dead_letter_bytes), (0, 0));
    assert_eq!(
        (
            s.dead_letters_pruned_total,
            s.dead_letters_pruned_bytes_total
        ),
        (3, 200 + 5000 + 1 + RECORD_OVERHEAD_BYTES)
    );
}

#[test]
fn withheld_dead_letters_keep_only_their_digest_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = bounded(dir.path(), 1 << 20);
    let dead = [
        NewDeadLetter {
            id: [1; 16],
            origin: Origin::Frame {
                input: "web".into(),
            },
            kept: Kept::Digest {
                len: 1234,
                sha256: [7; 32],
            },
            reason: "web: decode failed: not json".into(),
        },
        NewDeadLetter {
            id: [2; 16],
            origin: Origin::Event,
            kept: Kept::Nothing,
            reason: "range-validator: missing value".into(),
        },
        NewDeadLetter {
            id: [3; 16],
            origin: Origin::Frame {
                input: "web".into(),
            },
            kept: Kept::Payload(b"raw line".to_vec()),
            reason: "web: decode failed: not json".into(),
        },
    ];
    {
        let (buffer, _) = open(&cfg);
        buffer
            .commit(&Commit {
                dead_letters: &dead,
                ..Commit::default()
            })
            .unwrap();
    }
    let (buffer, _) = open(&cfg);
    let stored = buffer.dead_letters(10).unwrap();
    assert_eq!(stored.len(), 3);
    for (s, d) in stored.iter().zip(&dead) {
        assert_eq!(
            (s.id, &s.origin, &s.kept, &s.reason),
            (d.id, &d.origin, &d.kept, &d.reason)
        );
        assert_eq!(s.size, d.accounted_size());
    }
    assert_eq!(stored[0].payload(), None);
    assert_eq!(stored[1].payload(), None);
    assert_eq!(
        stored.iter().map(|d| d.size).sum::<u64>(),
        (32 + 28 + 3 + 64) + (30 + 64) + (8 + 28 + 3 + 64)
    );
    assert_eq!(
        buffer.stats().dead_letter_bytes,
        stored.iter().map(|d| d.size).sum::<u64>()
    );
}

#[test]
fn filters_select_by_reason_prefix_id_and_limit_and_purge_counts() {
    let dir = tempfile::tempdir().unwrap();
    let (buffer, _) = open(&bounded(dir.path(), 1 << 20));
    buffer
        .dead_letter_records(&recs(0..4, 10), "range-validator: value -1 is below")
        .unwrap();
    buffer
        .dead_letter_records(&recs(4..6, 10), "range-validator: missing value")
        .unwrap();
    buffer
        .dead_letter_records(&recs(6..9, 10), "sensors: decode failed")
        .unwrap();
    let by = |reason: &str| DeadLetterFilter {
        reason: Some(reason.into()),
        ..DeadLetterFilter::default()
    };
    let summary = buffer
        .dead_letter_summary(&DeadLetterFilter::default())
        .unwrap();
    let counts: Vec<(&str, u64)> = summary
        .iter()
        .map(|s| (s.reason.as_str(), s.count))
        .collect();
    assert_eq!(
        counts,
        [
            ("range-validator: value -1 is below", 4),
            ("sensors: decode failed", 3),
            ("range-validator: missing value", 2),
        ],
        "largest group first"
    );
    assert_eq!(summary[0].bytes, 4 * (10 + 34 + 64));
    assert!(summary[0].oldest_unix_ms <= summary[0].newest_unix_ms);
    assert_eq!(
        buffer
            .dead_letters_matching(&by("range-validator:"))
            .unwrap()
            .len(),
        6
    );
    let ids = DeadLetterFilter {
        ids: vec![rec(5, 0).id, rec(7, 0).id],
        ..DeadLetterFilter::default()
    };
    let picked: Vec<u64> = buffer
        .dead_letters_matching(&ids)
        .unwrap()
        .iter()
        .map(|d| num(&as_record(d)))
        .collect();
    assert_eq!(picked, [5, 7]);
    let limited = DeadLetterFilter {
        limit: Some(2),
        ..by("range-validator:")
    };
    assert_eq!(buffer.purge_dead_letters(&limited).unwrap(), 2);
    assert_eq!(buffer.purge_dead_letters(&by("sensors")).unwrap(), 3);
    assert_eq!(
        buffer.purge_dead_letters(&by("nothing like it")).unwrap(),
        0
    );
    let left: Vec<u64> = buffer
        .dead_letters(100)
        .unwrap()
        .iter()
        .map(|d| num(&as_record(d)))
        .collect();
    assert_eq!(left, [2, 3, 4, 5]);
    let s = buffer.stats();
    assert_eq!(
        (
            s.dead_letters,
            s.dead_letter_bytes,
            s.dead_letters_pruned_total
        ),
        (4, 2 * (10 + 34 + 64) + 2 * (10 + 30 + 64), 0),
        "a purge is not an eviction"
    );
    assert_eq!(
        buffer
            .purge_dead_letters(&DeadLetterFilter::default())
            .unwrap(),
        4
    );
    assert_eq!(buffer.stats().dead_letter_bytes, 0);
}

#[test]
fn a_replay_removes_its_rows_in_the_same_commit_and_never_drops() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 300, WhenFull::DropNewest);
    let (buffer, _) = open(&cfg);
    buffer
        .dead_letter_records(&recs(0..5, LEN_100), "r")
        .unwrap();
    let rows: Vec<i64> = buffer
        .dead_letters(10)
        .unwrap()
        .iter()
        .map(|d| d.seq)
        .collect();
    // Two back into the buffer, one dead-lettered again with a new reason.
    let again = dead_events(&recs(2..3, LEN_100), "still bad");
    let outcome = buffer
        .commit(&Commit {
            records: &recs(0..2, LEN_100),
            dead_letters: &again,
            replayed: &rows[..3],
            ..Commit::default()
        })
        .unwrap();
    assert_eq!(outcome.accepted, 2);
    let reasons: Vec<(u64, String)> = buffer
        .dead_letters(10)
        .unwrap()
        .iter()
        .map(|d| (num(&as_record(d)), d.reason.clone()))
        .collect();
    assert_eq!(
        reasons,
        [(3, "r".into()), (4, "r".into()), (2, "still bad".into())]
    );
    // Two more do not fit (100 bytes free): under drop_newest an ingest
    // would drop one, but a replay writes nothing and keeps its rows.
    let err = buffer
        .commit(&Commit {
            records: &recs(3..5, LEN_100),
            replayed: &rows[3..5],
            ..Commit::default()
        })
        .unwrap_err();
    assert!(
        matches!(
            err,
            BufferError::Full {
                needed: 200,
                free: 100
            }
        ),
        "{err}"
    );
    let s = buffer.stats();
    assert_eq!(
        (s.records, s.dead_letters, s.dropped_newest_total),
        (2, 3, 0)
    );
    assert_eq!(drain(&buffer, 10), [0, 1]);
}

#[test]
fn a_version_1_table_gains_the_new_columns_and_its_rows_are_sized() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("buffer.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL);
             INSERT INTO meta VALUES ('schema_version', 1);
             CREATE TABLE dead_letter (seq INTEGER PRIMARY KEY AUTOINCREMENT, id BLOB NOT NULL,
                 payload BLOB NOT NULL, reason TEXT NOT NULL, at_ms INTEGER NOT NULL);
             INSERT INTO dead_letter (id, payload, reason, at_ms)
                 VALUES (zeroblob(16), x'0102030405', 'old', 1), (zeroblob(16), x'', 'é', 2);",
        )
        .unwrap();
    }
    let (buffer, _) = open(&config(dir.path(), u64::MAX, WhenFull::DropOldest));
    let s = buffer.stats();
    assert_eq!(
        (s.dead_letters, s.dead_letter_bytes),
        (2, (5 + 3 + 64) + (2 + 64))
    );
    let dead = buffer.dead_letters(10).unwrap();
    assert_eq!(dead[0].origin, Origin::Event);
    assert_eq!(dead[0].payload(), Some(&[1u8, 2, 3, 4, 5][..]));
}

#[test]
fn an_ack_with_dead_letters_stores_them_and_removes_the_batch_in_one_step() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), u64::MAX, WhenFull::DropOldest);
    {
        let (buffer, _) = open(&cfg);
        buffer.append(&recs(0..6, 12)).unwrap();
        let batch = buffer.next_batch(6, usize::MAX).unwrap().unwrap();
        // The receiver took 0..6 except 2 and 4, which it refused.
        let refused = dead_events(
            &[batch.records[2].clone(), batch.records[4].clone()],
            "HTTP 400: bad unit",
        );
        buffer.ack_with_dead_letters(&batch, &refused).unwrap();
        let s = buffer.stats();
        assert_eq!((s.records, s.dead_letters, s.acked_total), (0, 2, 6));
        assert!(matches!(
            buffer.ack_with_dead_letters(&batch, &refused),
            Err(BufferError::UnknownBatch { .. })
        ));
        assert_eq!(
            buffer.stats().dead_letters,
            2,
            "nothing stored by a refused ack"
        );
    }
    let (buffer, report) = open(&cfg);
    assert_eq!(report.pending_records, 0);
    let dead: Vec<u64> = buffer
        .dead_letters(10)
        .unwrap()
        .iter()
        .map(|d| num(&as_record(d)))
        .collect();
    assert_eq!(dead, [2, 4]);
}
