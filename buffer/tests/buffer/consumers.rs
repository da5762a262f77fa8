//! Several consumers (transports) draining one buffer: each settles on its
//! own, a record leaves only when all it is for have settled it, kind
//! filters, consumers added and removed between runs, the upgrade of a
//! version-1 file.

use std::collections::BTreeSet;
use std::path::Path;

use halyard_buffer::{Buffer, BufferConfig, Commit, Consumer, DeadLetterFilter, Record, WhenFull};

use crate::common::*;

fn with_consumers(dir: &Path, consumers: &[Consumer]) -> BufferConfig {
    BufferConfig {
        consumers: Some(consumers.to_vec()),
        ..config(dir, u64::MAX, WhenFull::DropOldest)
    }
}

fn both() -> Vec<Consumer> {
    vec![Consumer::all("a"), Consumer::all("b")]
}

/// Reads and acks everything `consumer` has, returning the record numbers.
fn drain_for(buffer: &Buffer, consumer: &str, n: usize) -> Vec<u64> {
    let mut out = Vec::new();
    while let Some(batch) = buffer.next_batch_for(consumer, n, usize::MAX).unwrap() {
        out.extend(nums(&batch));
        buffer.ack(&batch).unwrap();
    }
    out
}

fn pending(buffer: &Buffer, consumer: &str) -> u64 {
    buffer
        .consumer_stats()
        .into_iter()
        .find(|c| c.name == consumer)
        .map(|c| c.pending)
        .expect("consumer registered")
}

#[test]
fn a_record_leaves_only_when_every_consumer_acked_it() {
    let dir = tempfile::tempdir().unwrap();
    let (buffer, _) = open(&with_consumers(dir.path(), &both()));
    const N: u64 = 300;
    buffer.append(&recs(0..N, 20)).unwrap();

    assert_eq!(drain_for(&buffer, "a", 64), (0..N).collect::<Vec<_>>());
    let stats = buffer.stats();
    assert_eq!(
        (stats.records, stats.acked_total),
        (N, 0),
        "b still needs them all"
    );
    assert_eq!((pending(&buffer, "a"), pending(&buffer, "b")), (0, N));

    assert_eq!(drain_for(&buffer, "b", 64), (0..N).collect::<Vec<_>>());
    let stats = buffer.stats();
    assert_eq!((stats.records, stats.bytes, stats.acked_total), (0, 0, N));
    assert_eq!((pending(&buffer, "a"), pending(&buffer, "b")), (0, 0));
}

/// One consumer keeps failing (nack) while the other ships everything;
/// when it comes back it gets every record exactly once, and only then
/// does the buffer empty.
#[test]
fn one_consumers_outage_never_blocks_the_other() {
    let dir = tempfile::tempdir().unwrap();
    let (buffer, _) = open(&with_consumers(dir.path(), &both()));
    let mut b_got = Vec::new();
    let mut next = 0u64;
    for _round in 0..20 {
        buffer.append(&recs(next..next + 25, 30)).unwrap();
        next += 25;
        // "a" is down: it leases and releases the same batch again and again.
        let failed = buffer.next_batch_for("a", 10, usize::MAX).unwrap().unwrap();
        assert_eq!(nums(&failed)[0], 0, "a retries from its oldest record");
        buffer.nack(&failed);
        b_got.extend(drain_for(&buffer, "b", 10));
    }
    assert_eq!(
        b_got,
        (0..next).collect::<Vec<_>>(),
        "b got every record once, in order"
    );
    assert_eq!(
        buffer.stats().records,
        next,
        "a's backlog is all still there"
    );
    assert_eq!(pending(&buffer, "a"), next);

    let a_got = drain_for(&buffer, "a", 40);
    assert_eq!(a_got, (0..next).collect::<Vec<_>>());
    assert_eq!(buffer.stats().records, 0);
    assert_eq!(buffer.stats().acked_total, next);
}

/// Leases are per consumer: both may hold the same records in flight, and
/// settling one consumer's batch leaves the other's lease untouched.
#[test]
fn leases_are_per_consumer() {
    let dir = tempfile::tempdir().unwrap();
    let (buffer, _) = open(&with_consumers(dir.path(), &both()));
    buffer.append(&recs(0..10, 20)).unwrap();
    let a = buffer
        .next_batch_for("a", 100, usize::MAX)
        .unwrap()
        .unwrap();
    let b = buffer
        .next_batch_for("b", 100, usize::MAX)
        .unwrap()
        .unwrap();
    assert_eq!((nums(&a), nums(&b)), ((0..10).collect(), (0..10).collect()));
    assert!(
        buffer
            .next_batch_for("a", 100, usize::MAX)
            .unwrap()
            .is_none()
    );
    buffer.ack(&b).unwrap();
    assert!(buffer.ack(&b).is_err(), "a batch settles once");
    assert_eq!(buffer.stats().records, 10);
    buffer.ack(&a).unwrap();
    assert_eq!(buffer.stats().records, 0);
    assert!(buffer.next_batch_for("nobody", 1, 1).is_err());
}

/// A consumer with kind prefixes never gets the bit of a record whose kind
/// does not match; a record no consumer wants is not stored at all.
#[test]
fn kind_prefixes_route_records() {
    let dir = tempfile::tempdir().unwrap();
    let consumers = vec![
        Consumer {
            name: "metrics".into(),
            kinds: vec!["metric.".into()],
        },
        Consumer {
            name: "logs".into(),
            kinds: vec!["log.".into(), "audit".into()],
        },
    ];
    let (buffer, _) = open(&with_consumers(dir.path(), &consumers));
    buffer.set_kind_reader(|payload| {
        let text = std::str::from_utf8(payload).ok()?;
        Some(text.split(' ').next()?.to_string())
    });
    let kinds = ["metric.cpu", "log.app", "audit", "trace.span", "metric.mem"];
    let records: Vec<Record> = (0..50u64)
        .map(|n| Record {
            id: u128::from(n).to_be_bytes(),
            payload: format!("{} {n}", kinds[n as usize % kinds.len()]).into_bytes(),
        })
        .collect();
    let outcome = buffer.append(&records).unwrap();
    assert_eq!(outcome.accepted, 50);
    let stats = buffer.stats();
    assert_eq!(
        (stats.records, stats.unrouted_total),
        (40, 10),
        "trace.* goes nowhere"
    );

    let ids = |consumer: &str| -> BTreeSet<u64> {
        let mut out = BTreeSet::new();
        while let Some(batch) = buffer.next_batch_for(consumer, 7, usize::MAX).unwrap() {
            for r in &batch.records {
                assert!(out.insert(num(r)), "no duplicates");
            }
            buffer.ack(&batch).unwrap();
        }
        out
    };
    let want =
        |rems: &[u64]| -> BTreeSet<u64> { (0..50).filter(|n| rems.contains(&(n % 5))).collect() };
    assert_eq!(ids("metrics"), want(&[0, 4]));
    assert_eq!(
        buffer.stats().records,
        20,
        "the logs' records wait for logs"
    );
    assert_eq!(ids("logs"), want(&[1, 2]));
    assert_eq!(buffer.stats().records, 0);
}

/// A consumer refusing a batch dead-letters it for itself only: the
/// dead letters name it, and the other consumer still delivers the records.
#[test]
fn dead_letters_are_per_consumer() {
    let dir = tempfile::tempdir().unwrap();
    let (buffer, _) = open(&with_consumers(dir.path(), &both()));
    buffer.append(&recs(0..5, 20)).unwrap();
    let refused = buffer
        .next_batch_for("b", 100, usize::MAX)
        .unwrap()
        .unwrap();
    buffer.dead_letter(&refused, "400 Bad Request").unwrap();
    let dead = buffer
        .dead_letters_matching(&DeadLetterFilter::default())
        .unwrap();
    assert_eq!(dead.len(), 5);
    assert!(dead.iter().all(|d| d.transport.as_deref() == Some("b")));
    assert_eq!(buffer.stats().records, 5, "a has not delivered them yet");
    assert_eq!(drain_for(&buffer, "a", 100), (0..5).collect::<Vec<_>>());
    assert_eq!(buffer.stats().records, 0);
    let b = buffer.consumer_stats();
    assert_eq!((b[1].name.as_str(), b[1].dead_lettered_total), ("b", 5));
}

/// A replay of what one consumer refused (`Commit::only_for`) goes back to
/// that consumer alone: the one that delivered it does not get it again.
/// An unknown name falls back to every consumer.
#[test]
fn a_replay_for_one_consumer_reaches_it_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (buffer, _) = open(&with_consumers(dir.path(), &both()));
    buffer.append(&recs(0..5, 20)).unwrap();
    assert_eq!(drain_for(&buffer, "a", 100), (0..5).collect::<Vec<_>>());
    let refused = buffer
        .next_batch_for("b", 100, usize::MAX)
        .unwrap()
        .unwrap();
    buffer.dead_letter(&refused, "400 Bad Request").unwrap();
    assert_eq!(buffer.stats().records, 0);

    let dead = buffer
        .dead_letters_matching(&DeadLetterFilter::default())
        .unwrap();
    let rows: Vec<i64> = dead.iter().map(|d| d.seq).collect();
    let records: Vec<Record> = dead
        .iter()
        .map(|d| Record {
            id: d.id,
            payload: match &d.kept {
                halyard_buffer::Kept::Payload(p) => p.clone(),
                other => panic!("a refused batch keeps its payload: {other:?}"),
            },
        })
        .collect();
    buffer
        .commit(&Commit {
            records: &records,
            replayed: &rows,
            only_for: Some("b"),
            ..Commit::default()
        })
        .unwrap();
    assert_eq!(pending(&buffer, "a"), 0, "a delivered them already");
    assert_eq!(pending(&buffer, "b"), 5);
    assert!(
        buffer
            .next_batch_for("a", 100, usize::MAX)
            .unwrap()
            .is_none()
    );
    assert_eq!(drain_for(&buffer, "b", 100), (0..5).collect::<Vec<_>>());
    assert_eq!(buffer.stats().records, 0);
    assert_eq!(buffer.stats().dead_letters, 0);

    // A transport that is gone: every current consumer gets it.
    buffer
        .commit(&Commit {
            records: &recs(5..6, 20),
            only_for: Some("removed"),
            ..Commit::default()
        })
        .unwrap();
    assert_eq!((pending(&buffer, "a"), pending(&buffer, "b")), (1, 1));
}

/// Progress survives a restart per consumer (unsettled records come back,
/// settled ones do not); a consumer dropped from the config is forgotten
/// (what only it held is deleted); one added starts at "now".
#[test]
fn consumers_added_and_removed_between_runs() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (buffer, _) = open(&with_consumers(dir.path(), &both()));
        buffer.append(&recs(0..10, 20)).unwrap();
        let a = buffer.next_batch_for("a", 4, usize::MAX).unwrap().unwrap();
        buffer.ack(&a).unwrap();
        let _in_flight = buffer.next_batch_for("a", 2, usize::MAX).unwrap().unwrap();
    }
    {
        let (buffer, report) = open(&with_consumers(dir.path(), &both()));
        assert_eq!((report.pending_records, report.removed_records), (10, 0));
        assert_eq!((pending(&buffer, "a"), pending(&buffer, "b")), (6, 10));
        assert_eq!(drain_for(&buffer, "a", 100), (4..10).collect::<Vec<_>>());
    }
    // "b" is removed and "c" added: b's records (all 10, a has them done)
    // go, and c gets only what is stored from now on.
    let (buffer, report) = open(&with_consumers(
        dir.path(),
        &[Consumer::all("a"), Consumer::all("c")],
    ));
    assert_eq!((report.removed_records, buffer.stats().records), (10, 0));
    buffer.append(&recs(10..13, 20)).unwrap();
    assert_eq!(drain_for(&buffer, "c", 100), vec![10, 11, 12]);
    assert_eq!(drain_for(&buffer, "a", 100), vec![10, 11, 12]);
    assert_eq!(buffer.stats().records, 0);
    drop(buffer);
    // A tool opening the file without a consumer list keeps them all.
    let (buffer, _) = open(&config(dir.path(), u64::MAX, WhenFull::DropOldest));
    assert_eq!(
        buffer.consumer_names(),
        vec!["a".to_string(), "c".to_string()]
    );
}

/// A version-1 file (no `pending` column, no `consumers` table) is upgraded
/// on open: its records go to every configured consumer, and the file is
/// marked version 2.
#[test]
fn a_version_1_file_is_upgraded_with_its_records_for_every_consumer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("buffer.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "CREATE TABLE meta (key TEXT PRIMARY KEY NOT NULL, value INTEGER NOT NULL);
             INSERT INTO meta VALUES ('schema_version', 1);
             CREATE TABLE records (seq INTEGER PRIMARY KEY AUTOINCREMENT, id BLOB NOT NULL,
                 payload BLOB NOT NULL, size INTEGER NOT NULL, enqueued_ms INTEGER NOT NULL);
             CREATE INDEX records_seq_size ON records (seq, size);
             CREATE TABLE dead_letter (seq INTEGER PRIMARY KEY AUTOINCREMENT, id BLOB NOT NULL,
                 payload BLOB NOT NULL, reason TEXT NOT NULL, at_ms INTEGER NOT NULL);",
        )
        .unwrap();
        for n in 0..7u64 {
            let r = rec(n, 20);
            conn.execute(
                "INSERT INTO records (id, payload, size, enqueued_ms) VALUES (?1, ?2, ?3, 0)",
                (&r.id[..], &r.payload, 84),
            )
            .unwrap();
        }
    }
    {
        let (buffer, report) = open(&with_consumers(dir.path(), &both()));
        assert_eq!(report.pending_records, 7);
        assert_eq!((pending(&buffer, "a"), pending(&buffer, "b")), (7, 7));
        assert_eq!(drain_for(&buffer, "a", 3), (0..7).collect::<Vec<_>>());
    }
    let version: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row(
            "SELECT value FROM meta WHERE key = 'schema_version'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(version, 3);
    let (buffer, _) = open(&with_consumers(dir.path(), &both()));
    assert_eq!((pending(&buffer, "a"), pending(&buffer, "b")), (0, 7));
    assert_eq!(drain_for(&buffer, "b", 100), (0..7).collect::<Vec<_>>());
    assert_eq!(buffer.stats().records, 0);
}

/// Eviction under `DropOldest` counts against every consumer's backlog and
/// spares what any consumer has in flight.
#[test]
fn eviction_spares_every_consumers_leases() {
    let dir = tempfile::tempdir().unwrap();
    let (buffer, _) = open(&BufferConfig {
        consumers: Some(both()),
        ..config(dir.path(), 10 * 100, WhenFull::DropOldest)
    });
    buffer.append(&recs(0..10, LEN_100)).unwrap();
    let a = buffer.next_batch_for("a", 2, usize::MAX).unwrap().unwrap();
    buffer.ack(&a).unwrap(); // 0, 1 settled for a only: still stored for b
    let b = buffer.next_batch_for("b", 3, usize::MAX).unwrap().unwrap(); // 0..3 in flight
    let outcome = buffer.append(&recs(10..13, LEN_100)).unwrap();
    assert_eq!((outcome.accepted, outcome.evicted_oldest), (3, 3));
    assert_eq!(nums(&b), vec![0, 1, 2]);
    buffer.ack(&b).unwrap();
    assert_eq!(drain_for(&buffer, "b", 100), (6..13).collect::<Vec<_>>());
    assert_eq!(
        drain_for(&buffer, "a", 100),
        (2..3).chain(6..13).collect::<Vec<_>>()
    );
    assert_eq!(buffer.stats().records, 0);
}
