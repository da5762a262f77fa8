//! The three `WhenFull` policies with a small bound. Every record accounts
//! for exactly 100 bytes (`LEN_100`), so `max_bytes = 1000` holds 10.

use halyard_buffer::{AppendOutcome, BufferError, WhenFull};

use crate::common::*;

fn outcome(accepted: u64, dropped_newest: u64, evicted_oldest: u64) -> AppendOutcome {
    AppendOutcome {
        accepted,
        dropped_newest,
        evicted_oldest,
    }
}

#[test]
fn drop_oldest_evicts_the_oldest_records_not_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let (buffer, _) = open(&config(dir.path(), 1000, WhenFull::DropOldest));
    assert_eq!(
        buffer.append(&recs(0..10, LEN_100)).unwrap(),
        outcome(10, 0, 0)
    );
    let leased = buffer.next_batch(3, usize::MAX).unwrap().unwrap();
    assert_eq!(nums(&leased), [0, 1, 2]);

    // 5 more: the 5 oldest unleased (3..8) make room; 0..3 are in flight.
    assert_eq!(
        buffer.append(&recs(10..15, LEN_100)).unwrap(),
        outcome(5, 0, 5)
    );
    // 10 more: only 700 bytes are evictable (8..15), so 7 fit and 3 are dropped.
    assert_eq!(
        buffer.append(&recs(15..25, LEN_100)).unwrap(),
        outcome(7, 3, 7)
    );

    let s = buffer.stats();
    assert_eq!((s.records, s.bytes, s.leased_records), (10, 1000, 3));
    assert_eq!((s.evicted_oldest_total, s.dropped_newest_total), (12, 3));
    assert_eq!(s.appended_total, 22);
    buffer.ack(&leased).unwrap();
    assert_eq!(drain(&buffer, 4), (15..22).collect::<Vec<_>>());
}

#[test]
fn drop_oldest_with_a_slice_larger_than_the_whole_buffer() {
    let dir = tempfile::tempdir().unwrap();
    let (buffer, _) = open(&config(dir.path(), 1000, WhenFull::DropOldest));
    assert_eq!(
        buffer.append(&recs(0..4, LEN_100)).unwrap(),
        outcome(4, 0, 0)
    );
    assert_eq!(
        buffer.append(&recs(4..16, LEN_100)).unwrap(),
        outcome(10, 2, 4)
    );
    assert_eq!(drain(&buffer, 100), (4..14).collect::<Vec<_>>());
}

#[test]
fn leased_records_are_never_evicted() {
    let dir = tempfile::tempdir().unwrap();
    let (buffer, _) = open(&config(dir.path(), 1000, WhenFull::DropOldest));
    buffer.append(&recs(0..10, LEN_100)).unwrap();
    let a = buffer.next_batch(6, usize::MAX).unwrap().unwrap();
    let b = buffer.next_batch(6, usize::MAX).unwrap().unwrap();
    assert_eq!(
        buffer.append(&recs(10..13, LEN_100)).unwrap(),
        outcome(0, 3, 0)
    );
    assert_eq!(buffer.stats().records, 10);
    buffer.nack(&b); // 6..10 become evictable again
    assert_eq!(
        buffer.append(&recs(13..15, LEN_100)).unwrap(),
        outcome(2, 0, 2)
    );
    buffer.ack(&a).unwrap();
    assert_eq!(drain(&buffer, 100), [8, 9, 13, 14]);
}

#[test]
fn drop_newest_keeps_the_backlog_and_drops_what_does_not_fit() {
    let dir = tempfile::tempdir().unwrap();
    let (buffer, _) = open(&config(dir.path(), 1000, WhenFull::DropNewest));
    assert_eq!(
        buffer.append(&recs(0..7, LEN_100)).unwrap(),
        outcome(7, 0, 0)
    );
    assert_eq!(
        buffer.append(&recs(7..12, LEN_100)).unwrap(),
        outcome(3, 2, 0)
    );
    assert_eq!(
        buffer.append(&recs(12..13, LEN_100)).unwrap(),
        outcome(0, 1, 0)
    );
    let s = buffer.stats();
    assert_eq!(
        (
            s.records,
            s.bytes,
            s.dropped_newest_total,
            s.evicted_oldest_total
        ),
        (10, 1000, 3, 0)
    );

    // Free 200 bytes, then offer a big record followed by a small one: the
    // slice is cut at the first record that does not fit, never holed.
    let b = buffer.next_batch(2, usize::MAX).unwrap().unwrap();
    buffer.ack(&b).unwrap();
    let slice = [rec(13, LEN_100), rec(14, LEN_100 + 150), rec(15, 0)];
    assert_eq!(buffer.append(&slice).unwrap(), outcome(1, 2, 0));
    let mut expected: Vec<u64> = (2..10).collect();
    expected.push(13);
    assert_eq!(drain(&buffer, 100), expected);
    assert_eq!(buffer.stats().dropped_newest_total, 5);
}

#[test]
fn block_accepts_nothing_when_the_slice_does_not_fit() {
    let dir = tempfile::tempdir().unwrap();
    let (buffer, _) = open(&config(dir.path(), 1000, WhenFull::Block));
    assert_eq!(
        buffer.append(&recs(0..8, LEN_100)).unwrap(),
        outcome(8, 0, 0)
    );
    match buffer.append(&recs(8..11, LEN_100)) {
        Err(BufferError::Full { needed, free }) => assert_eq!((needed, free), (300, 200)),
        other => panic!("expected Full, got {other:?}"),
    }
    let s = buffer.stats();
    assert_eq!(
        (s.records, s.appended_total, s.dropped_newest_total),
        (8, 8, 0)
    );
    assert_eq!(
        buffer.append(&recs(11..13, LEN_100)).unwrap(),
        outcome(2, 0, 0),
        "exact fit"
    );
    // The caller retries the rejected slice after the transport drains some.
    let b = buffer.next_batch(5, usize::MAX).unwrap().unwrap();
    buffer.ack(&b).unwrap();
    assert_eq!(
        buffer.append(&recs(8..11, LEN_100)).unwrap(),
        outcome(3, 0, 0)
    );
    let mut expected: Vec<u64> = (5..8).collect();
    expected.extend([11, 12, 8, 9, 10]);
    assert_eq!(drain(&buffer, 100), expected);
}

#[test]
fn full_error_tells_the_operator_what_to_do() {
    let msg = BufferError::Full {
        needed: 300,
        free: 200,
    }
    .to_string();
    assert!(
        msg.contains("300") && msg.contains("200") && msg.contains("retry"),
        "{msg}"
    );
}
