//! Detector key-value writes: stored only with the commit that carries
//! them, in order, surviving a reopen; a commit refused as full writes
//! none of them.

use halyard_buffer::{BufferError, Commit, KvWrite, WhenFull};

use crate::common::*;

fn set(ns: &str, key: &str, value: &[u8]) -> KvWrite {
    KvWrite {
        namespace: ns.into(),
        key: key.into(),
        value: Some(value.to_vec()),
    }
}

#[test]
fn kv_writes_commit_with_their_records_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), 1 << 20, WhenFull::Block);
    {
        let (buffer, _) = open(&cfg);
        let writes = [
            set("a", "w/1", b"one"),
            set("a", "w/2", b"two"),
            set("b", "w/1", b"other namespace"),
        ];
        buffer
            .commit(&Commit {
                records: &recs(0..2, 10),
                kv: &writes,
                admitted: true,
                ..Commit::default()
            })
            .unwrap();
        // A later commit replaces one key and deletes another; alone, with
        // no records, it is still written.
        let writes = [
            set("a", "w/1", b"ONE"),
            KvWrite {
                namespace: "a".into(),
                key: "w/2".into(),
                value: None,
            },
        ];
        buffer
            .commit(&Commit {
                kv: &writes,
                ..Commit::default()
            })
            .unwrap();
    }
    let (buffer, _) = open(&cfg);
    assert_eq!(
        buffer.kv_entries("a").unwrap(),
        [("w/1".to_string(), b"ONE".to_vec())]
    );
    assert_eq!(
        buffer.kv_entries("b").unwrap(),
        [("w/1".to_string(), b"other namespace".to_vec())]
    );
    assert!(buffer.kv_entries("c").unwrap().is_empty());
}

#[test]
fn a_commit_refused_as_full_writes_none_of_its_kv() {
    let dir = tempfile::tempdir().unwrap();
    let (buffer, _) = open(&config(dir.path(), 150, WhenFull::Block));
    let writes = [set("a", "w/1", b"x")];
    let refused = buffer.commit(&Commit {
        records: &recs(0..2, LEN_100),
        kv: &writes,
        ..Commit::default()
    });
    assert!(
        matches!(refused, Err(BufferError::Full { .. })),
        "{refused:?}"
    );
    assert!(buffer.kv_entries("a").unwrap().is_empty());
}
