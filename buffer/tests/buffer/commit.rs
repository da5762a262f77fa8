//! One transaction for records, dead letters and an input position.

use halyard_buffer::{BufferConfig, BufferError, Commit, Cursor, WhenFull};

use crate::common::*;

#[test]
fn records_dead_letters_and_position_commit_together_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), u64::MAX, WhenFull::DropOldest);
    {
        let (buffer, _) = open(&cfg);
        assert_eq!(buffer.cursor("sensors").unwrap(), None);
        let dead = dead_events(&recs(100..102, 7), "bad line");
        let outcome = buffer
            .commit(&Commit {
                records: &recs(0..5, 10),
                dead_letters: &dead,
                cursor: Some(Cursor {
                    name: "sensors",
                    value: Some(b"offset 42"),
                }),
                ..Commit::default()
            })
            .unwrap();
        assert_eq!(outcome.accepted, 5);
        let s = buffer.stats();
        assert_eq!((s.records, s.dead_letters), (5, 2));
        // A position alone moves without records (a run of blank lines).
        buffer
            .commit(&Commit {
                cursor: Some(Cursor {
                    name: "sensors",
                    value: Some(b"offset 50"),
                }),
                ..Commit::default()
            })
            .unwrap();
        assert_eq!(buffer.stats().records, 5);
    }
    let (buffer, _) = open(&cfg);
    assert_eq!(
        buffer.cursor("sensors").unwrap().as_deref(),
        Some(&b"offset 50"[..])
    );
    assert_eq!(buffer.cursor("other").unwrap(), None);
    assert_eq!(drain(&buffer, 100), [0, 1, 2, 3, 4]);
    assert_eq!(buffer.dead_letters(10).unwrap().len(), 2);
    buffer
        .commit(&Commit {
            cursor: Some(Cursor {
                name: "sensors",
                value: None,
            }),
            ..Commit::default()
        })
        .unwrap();
    assert_eq!(buffer.cursor("sensors").unwrap(), None, "cleared");
}

#[test]
fn a_blocked_commit_writes_nothing_not_even_its_position_or_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let (buffer, _) = open(&config(dir.path(), 300, WhenFull::Block));
    buffer.append(&recs(0..2, LEN_100)).unwrap();
    let dead = dead_events(&recs(100..103, 7), "rejected");
    let err = buffer
        .commit(&Commit {
            records: &recs(2..4, LEN_100),
            dead_letters: &dead,
            cursor: Some(Cursor {
                name: "sensors",
                value: Some(b"offset 9"),
            }),
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
    assert_eq!((s.records, s.dead_letters), (2, 0));
    assert_eq!(buffer.cursor("sensors").unwrap(), None);
}

#[test]
fn the_dead_letter_table_keeps_only_the_newest_up_to_its_bound() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = BufferConfig {
        dead_letter_max: 5,
        ..config(dir.path(), u64::MAX, WhenFull::DropOldest)
    };
    {
        let (buffer, _) = open(&cfg);
        buffer.dead_letter_records(&recs(0..3, 4), "first").unwrap();
        assert_eq!(buffer.stats().dead_letters_pruned_total, 0);
        buffer
            .dead_letter_records(&recs(3..7, 4), "second")
            .unwrap();
        let s = buffer.stats();
        assert_eq!((s.dead_letters, s.dead_letters_pruned_total), (5, 2));
        // A batch the receiver refuses is bounded the same way.
        buffer.append(&recs(7..10, 4)).unwrap();
        let batch = buffer.next_batch(10, usize::MAX).unwrap().unwrap();
        buffer.dead_letter(&batch, "HTTP 400").unwrap();
        let s = buffer.stats();
        assert_eq!((s.dead_letters, s.dead_letters_pruned_total), (5, 5));
    }
    let (buffer, _) = open(&cfg);
    assert_eq!(
        buffer.stats().dead_letters,
        5,
        "the count is right after reopen"
    );
    let kept: Vec<u64> = buffer
        .dead_letters(100)
        .unwrap()
        .iter()
        .map(|d| num(&as_record(d)))
        .collect();
    assert_eq!(kept, [5, 6, 7, 8, 9], "the newest are kept, in order");
}
