//! Usage counters stored with the commit that counted them, reported and
//! subtracted exactly once, across reopen.

use halyard_buffer::{AppendOutcome, BufferError, Commit, UsageCounts, WhenFull};

use crate::common::*;

fn counts(pairs: &[(&str, u64)]) -> Vec<(String, u64)> {
    pairs.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect()
}

#[test]
fn usage_commits_with_its_records_and_is_reported_once_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), u64::MAX, WhenFull::DropOldest);
    let epoch;
    {
        let (buffer, _) = open(&cfg);
        let start = buffer.usage().unwrap();
        assert_eq!((start.seq, start.reported_at), (0, None));
        assert!(start.counts.is_empty());
        epoch = start.epoch;
        // The counters see the commit's outcome: 5 stored.
        let rows = |o: &AppendOutcome| counts(&[("in:t", 6), ("accepted:t", o.accepted)]);
        buffer
            .commit(&Commit {
                records: &recs(0..5, 10),
                usage: Some(UsageCounts(&rows)),
                ..Commit::default()
            })
            .unwrap();
        buffer.add_usage(&counts(&[("delivered:t", 5)])).unwrap();
    }
    let (buffer, _) = open(&cfg);
    let stored = buffer.usage().unwrap();
    assert_eq!(stored.epoch, epoch);
    assert_eq!(
        stored.counts,
        counts(&[("accepted:t", 5), ("delivered:t", 5), ("in:t", 6)])
    );
    // Counted after the report was read, before it was answered: kept.
    buffer.add_usage(&counts(&[("in:t", 2)])).unwrap();
    assert!(
        buffer
            .usage_reported(0, &stored.counts, 1_800_000_000)
            .unwrap()
    );
    // The same report again changes nothing.
    assert!(
        !buffer
            .usage_reported(0, &stored.counts, 1_800_000_001)
            .unwrap()
    );
    drop(buffer);
    let (buffer, _) = open(&cfg);
    let left = buffer.usage().unwrap();
    assert_eq!((left.seq, left.reported_at), (1, Some(1_800_000_000)));
    assert_eq!(left.counts, counts(&[("in:t", 2)]));
    assert_eq!(left.epoch, epoch);
}

#[test]
fn a_refused_commit_stores_no_usage() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 100, WhenFull::Block);
    let (buffer, _) = open(&cfg);
    let rows = |_: &AppendOutcome| counts(&[("in:t", 50)]);
    let err = buffer
        .commit(&Commit {
            records: &recs(0..50, 100),
            usage: Some(UsageCounts(&rows)),
            ..Commit::default()
        })
        .unwrap_err();
    assert!(matches!(err, BufferError::Full { .. }), "{err}");
    assert!(buffer.usage().unwrap().counts.is_empty());
}
