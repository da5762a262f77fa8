//! Dead-lettering batches and pre-buffer rejects.

use halyard_buffer::{BufferError, WhenFull};

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
