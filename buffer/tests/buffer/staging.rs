//! Staged commits: records written ahead in slices are committed as one,
//! under the same size bound and policy as in-memory records, and a crash
//! or a failed ingest leaves nothing of them behind.

use halyard_buffer::{AppendOutcome, BufferError, Commit, Cursor, Staged, WhenFull};

use crate::common::*;

#[test]
fn staged_and_in_memory_records_commit_as_one_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let (buffer, _) = open(&config(dir.path(), 1 << 20, WhenFull::DropOldest));
    let mut staged = Staged::default();
    buffer.stage(&mut staged, &recs(0..3, 10)).unwrap();
    buffer.stage(&mut staged, &recs(3..5, 10)).unwrap();
    assert_eq!(staged.len(), 5);
    // Staged is not accepted: nothing to deliver yet.
    assert_eq!(buffer.stats().records, 0);
    assert!(buffer.next_batch(100, usize::MAX).unwrap().is_none());

    let tail = recs(5..7, 10);
    let outcome = buffer
        .commit(&Commit {
            staged: Some(&staged),
            records: &tail,
            cursor: Some(Cursor {
                name: "in",
                value: Some(b"7"),
            }),
            ..Commit::default()
        })
        .unwrap();
    assert_eq!(outcome.accepted, 7);
    let mut seen = Vec::new();
    buffer
        .for_each_staged(&staged, 2, |p| seen.push(p.to_vec()))
        .unwrap();
    assert_eq!(
        seen,
        [
            recs(0..1, 10)[0].payload.clone(),
            recs(1..2, 10)[0].payload.clone()
        ]
    );
    buffer.discard(staged).unwrap();
    assert_eq!(drain(&buffer, 3), (0..7).collect::<Vec<_>>());
    assert_eq!(buffer.cursor("in").unwrap().as_deref(), Some(&b"7"[..]));
}

#[test]
fn drop_newest_applies_to_the_staged_records_first() {
    let dir = tempfile::tempdir().unwrap();
    let (buffer, _) = open(&config(dir.path(), 1000, WhenFull::DropNewest));
    let mut staged = Staged::default();
    buffer.stage(&mut staged, &recs(0..8, LEN_100)).unwrap();
    let tail = recs(8..12, LEN_100);
    let outcome = buffer
        .commit(&Commit {
            staged: Some(&staged),
            records: &tail,
            ..Commit::default()
        })
        .unwrap();
    assert_eq!(
        outcome,
        AppendOutcome {
            accepted: 10,
            dropped_newest: 2,
            evicted_oldest: 0
        }
    );
    buffer.discard(staged).unwrap();
    assert_eq!(drain(&buffer, 4), (0..10).collect::<Vec<_>>());
}

#[test]
fn a_discarded_staging_leaves_nothing_and_a_crash_drops_leftovers() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 1 << 20, WhenFull::DropOldest);
    {
        let (buffer, _) = open(&cfg);
        let mut failed = Staged::default();
        buffer.stage(&mut failed, &recs(0..4, 10)).unwrap();
        buffer.discard(failed).unwrap();
        // A staging that is never committed nor discarded: a crash.
        let mut crashed = Staged::default();
        buffer.stage(&mut crashed, &recs(4..8, 10)).unwrap();
        buffer.append(&recs(100..102, 10)).unwrap();
    }
    let (buffer, report) = open(&cfg);
    assert_eq!(report.pending_records, 2);
    assert_eq!(drain(&buffer, 10), [100, 101]);
    // The leftovers were dropped, not kept as invisible bytes in the file.
    let mut staged = Staged::default();
    buffer.stage(&mut staged, &recs(8..9, 10)).unwrap();
    let mut count = 0;
    buffer
        .for_each_staged(&staged, 100, |_| count += 1)
        .unwrap();
    assert_eq!(count, 1);
}

#[test]
fn block_admits_before_the_work_and_then_stores_the_admitted_commit_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (buffer, _) = open(&config(dir.path(), 1000, WhenFull::Block));
    // An empty buffer lets in even an input estimated larger than itself.
    buffer.admit(5000).unwrap();
    buffer.append(&recs(0..8, LEN_100)).unwrap();
    // 200 bytes free: an estimate of 300 is pushed back before any work.
    match buffer.admit(300) {
        Err(BufferError::Full {
            needed: 300,
            free: 200,
        }) => {}
        other => panic!("expected Full, got {other:?}"),
    }
    buffer.admit(200).unwrap();
    // Admitted with 200 free, the work produced 500 bytes: all stored.
    let more = recs(8..13, LEN_100);
    let outcome = buffer
        .commit(&Commit {
            records: &more,
            admitted: true,
            ..Commit::default()
        })
        .unwrap();
    assert_eq!(outcome.accepted, 5);
    assert_eq!(buffer.stats().bytes, 1300);
    // Not admitted, the same commit would have been refused whole.
    let refused = recs(13..14, LEN_100);
    assert!(matches!(
        buffer.append(&refused),
        Err(BufferError::Full { .. })
    ));
    assert!(buffer.admit(1).is_err());
    assert_eq!(drain(&buffer, 100), (0..13).collect::<Vec<_>>());
    buffer.admit(1).unwrap();
}
