//! Reading, acknowledging, retrying and restarting.

use std::sync::Arc;
use std::time::{Duration, Instant};

use halyard_buffer::{Buffer, BufferError, RECORD_OVERHEAD_BYTES, WhenFull};

use crate::common::*;

#[test]
fn append_read_ack_delivers_everything_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (buffer, report) = open(&config(dir.path(), u64::MAX, WhenFull::DropOldest));
    assert_eq!(
        (report.pending_records, report.recovered_from_corruption),
        (0, None)
    );
    const N: u64 = 1000;
    for start in (0..N).step_by(37) {
        let outcome = buffer
            .append(&recs(start..(start + 37).min(N), 20))
            .unwrap();
        assert_eq!(outcome.accepted, (start + 37).min(N) - start);
    }
    let delivered = drain(&buffer, 100);
    assert_eq!(
        delivered,
        (0..N).collect::<Vec<_>>(),
        "all, in order, no duplicates"
    );
    let stats = buffer.stats();
    assert_eq!(
        (stats.records, stats.bytes, stats.leased_records),
        (0, 0, 0)
    );
    assert_eq!((stats.appended_total, stats.acked_total), (N, N));
    assert_eq!(stats.oldest_age, None);
    assert!(buffer.next_batch(100, usize::MAX).unwrap().is_none());
}

#[test]
fn batches_respect_record_and_byte_limits() {
    let dir = tempfile::tempdir().unwrap();
    let (buffer, _) = open(&config(dir.path(), u64::MAX, WhenFull::DropOldest));
    buffer.append(&recs(0..20, 100)).unwrap();
    let b = buffer.next_batch(10, 350).unwrap().unwrap();
    assert_eq!(
        nums(&b),
        [0, 1, 2],
        "a 4th record would exceed 350 payload bytes"
    );
    assert_eq!((b.first_seq, b.last_seq, b.payload_bytes()), (1, 3, 300));
    let b = buffer.next_batch(10, 50).unwrap().unwrap();
    assert_eq!(nums(&b), [3], "an oversized record still goes out alone");
    let b = buffer.next_batch(0, usize::MAX).unwrap().unwrap();
    assert_eq!(nums(&b), [4], "max_records 0 is treated as 1");
    let b = buffer.next_batch(5, usize::MAX).unwrap().unwrap();
    assert_eq!(nums(&b), [5, 6, 7, 8, 9]);
    assert_eq!(buffer.stats().leased_records, 10);
}

#[test]
fn nack_serves_the_same_records_again_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (buffer, _) = open(&config(dir.path(), u64::MAX, WhenFull::DropOldest));
    buffer.append(&recs(0..10, 8)).unwrap();
    let b1 = buffer.next_batch(4, usize::MAX).unwrap().unwrap();
    let b2 = buffer.next_batch(4, usize::MAX).unwrap().unwrap();
    assert_eq!((nums(&b1), nums(&b2)), (vec![0, 1, 2, 3], vec![4, 5, 6, 7]));
    buffer.nack(&b1);
    let b3 = buffer.next_batch(10, usize::MAX).unwrap().unwrap();
    assert_eq!(
        nums(&b3),
        [0, 1, 2, 3],
        "stops before the range still leased by b2"
    );
    assert_eq!(b3.records, b1.records);
    assert_ne!(b3.key(), b1.key(), "a re-served batch gets a new key");
    let b4 = buffer.next_batch(10, usize::MAX).unwrap().unwrap();
    assert_eq!(nums(&b4), [8, 9]);
    buffer.nack(&b2);
    buffer.nack(&b2); // a second nack is a no-op
    for b in [&b3, &b4] {
        buffer.ack(b).unwrap();
    }
    assert_eq!(drain(&buffer, 100), [4, 5, 6, 7]);
    assert_eq!(buffer.stats().acked_total, 10);
}

#[test]
fn ack_of_a_batch_not_in_flight_is_refused_and_deletes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (buffer, _) = open(&config(dir.path(), u64::MAX, WhenFull::DropOldest));
    buffer.append(&recs(0..6, 8)).unwrap();
    let b1 = buffer.next_batch(3, usize::MAX).unwrap().unwrap();
    buffer.ack(&b1).unwrap();
    let err = buffer.ack(&b1).unwrap_err();
    assert!(
        matches!(err, BufferError::UnknownBatch { ref key } if *key == b1.key()),
        "{err}"
    );
    let b2 = buffer.next_batch(3, usize::MAX).unwrap().unwrap();
    buffer.nack(&b2);
    assert!(matches!(
        buffer.ack(&b2),
        Err(BufferError::UnknownBatch { .. })
    ));
    assert!(matches!(
        buffer.dead_letter(&b2, "x"),
        Err(BufferError::UnknownBatch { .. })
    ));
    assert_eq!(buffer.stats().records, 3, "refused acks deleted nothing");
    assert_eq!(drain(&buffer, 10), [3, 4, 5]);
}

#[test]
fn reopen_without_ack_serves_every_unacked_record_again() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), u64::MAX, WhenFull::DropOldest);
    let in_flight_key = {
        let (buffer, _) = open(&cfg);
        buffer.append(&recs(0..50, 10)).unwrap();
        let acked = buffer.next_batch(10, usize::MAX).unwrap().unwrap();
        buffer.ack(&acked).unwrap();
        let in_flight = buffer.next_batch(20, usize::MAX).unwrap().unwrap();
        assert_eq!(nums(&in_flight), (10..30).collect::<Vec<_>>());
        in_flight.key()
        // dropped here without ack or nack, as in a crash
    };
    {
        let (buffer, report) = open(&cfg);
        assert_eq!(report.pending_records, 40);
        assert_eq!(report.pending_bytes, 40 * (10 + RECORD_OVERHEAD_BYTES));
        let first = buffer.next_batch(20, usize::MAX).unwrap().unwrap();
        assert_eq!(
            nums(&first),
            (10..30).collect::<Vec<_>>(),
            "the in-flight batch again"
        );
        assert_ne!(first.key(), in_flight_key, "keys differ across restarts");
        buffer.ack(&first).unwrap();
        assert_eq!(drain(&buffer, 7), (30..50).collect::<Vec<_>>());
    }
    let (buffer, report) = open(&cfg);
    assert_eq!((report.pending_records, report.pending_bytes), (0, 0));
    assert!(buffer.next_batch(10, usize::MAX).unwrap().is_none());
    buffer.append(&recs(50..52, 10)).unwrap();
    let b = buffer.next_batch(10, usize::MAX).unwrap().unwrap();
    assert!(
        b.first_seq > 50,
        "sequence numbers are never reused: {}",
        b.first_seq
    );
}

#[test]
fn stats_track_sizes_leases_and_age() {
    let dir = tempfile::tempdir().unwrap();
    let (buffer, _) = open(&config(dir.path(), u64::MAX, WhenFull::DropOldest));
    assert_eq!(buffer.stats().oldest_age, None);
    buffer.append(&[rec(0, 0), rec(1, 1000)]).unwrap();
    let s = buffer.stats();
    assert_eq!((s.records, s.bytes), (2, 1000 + 2 * RECORD_OVERHEAD_BYTES));
    let age = s.oldest_age.expect("non-empty buffer has an age");
    assert!(age < Duration::from_secs(60), "{age:?}");
    let b = buffer.next_batch(1, usize::MAX).unwrap().unwrap();
    assert_eq!(buffer.stats().leased_records, 1);
    buffer.ack(&b).unwrap();
    let s = buffer.stats();
    assert_eq!(
        (s.records, s.bytes, s.leased_records, s.acked_total),
        (1, 1064, 0, 1)
    );
}

#[test]
fn one_thread_appends_while_another_drains() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Buffer>();

    let dir = tempfile::tempdir().unwrap();
    let (buffer, _) = open(&config(dir.path(), u64::MAX, WhenFull::DropOldest));
    let buffer = Arc::new(buffer);
    const N: u64 = 3000;
    let writer = {
        let buffer = Arc::clone(&buffer);
        std::thread::spawn(move || {
            for start in (0..N).step_by(50) {
                buffer.append(&recs(start..start + 50, 30)).unwrap();
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut delivered = Vec::new();
    while (delivered.len() as u64) < N {
        assert!(
            Instant::now() < deadline,
            "drained only {}",
            delivered.len()
        );
        match buffer.next_batch(64, usize::MAX).unwrap() {
            Some(batch) => {
                delivered.extend(nums(&batch));
                buffer.ack(&batch).unwrap();
            }
            None => std::thread::yield_now(),
        }
    }
    writer.join().unwrap();
    assert_eq!(delivered, (0..N).collect::<Vec<_>>());
    assert_eq!(buffer.stats().records, 0);
}
