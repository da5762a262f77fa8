//! Crashes, corruption, disk space and file ownership.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use halyard_buffer::{Buffer, BufferError, WhenFull};

use crate::common::*;

/// Set (to a directory) only in the child process of the kill test.
const CHILD_DIR_ENV: &str = "HALYARD_BUFFER_CRASH_CHILD_DIR";
/// First record number the child writes.
const CHILD_START_ENV: &str = "HALYARD_BUFFER_CRASH_CHILD_START";
/// Records per append (per transaction) in the child.
const PER_TXN: u64 = 5;
/// The child stops by itself after this many transactions or this long.
const CHILD_MAX_TXNS: u64 = 20_000;
const CHILD_MAX_TIME: Duration = Duration::from_secs(60);
/// Kill rounds on the same file; each resumes where the last one's data ends.
const ROUNDS: u64 = 8;
/// The parent kills the child once it has reported this many new records
/// (plus a per-round offset, so kills land at different points).
const KILL_AFTER: u64 = 300;

/// Not a test on its own: the "writer mode" of `kill_9_loses_no_committed_record`.
/// Without the env var (a normal `cargo test`) it returns at once.
#[test]
fn crash_child_writer() {
    let Some(dir) = std::env::var_os(CHILD_DIR_ENV) else {
        return;
    };
    let start: u64 = std::env::var(CHILD_START_ENV).unwrap().parse().unwrap();
    let (buffer, _) = open(&config(Path::new(&dir), u64::MAX, WhenFull::DropOldest));
    let deadline = Instant::now() + CHILD_MAX_TIME;
    let mut out = std::io::stdout().lock();
    for t in 0..CHILD_MAX_TXNS {
        if Instant::now() > deadline {
            break;
        }
        let from = start + t * PER_TXN;
        buffer.append(&recs(from..from + PER_TXN, 64)).unwrap();
        // Printed only after append returned, i.e. after the commit.
        writeln!(out, "committed {}", from + PER_TXN).unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn kill_9_loses_no_committed_record() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), u64::MAX, WhenFull::DropOldest);
    let mut present = 0u64;
    for round in 0..ROUNDS {
        let reported = run_child_and_kill(dir.path(), present, KILL_AFTER + 97 * round);
        let (buffer, report) = open(&cfg);
        assert_eq!(report.recovered_from_corruption, None);
        let mut all = Vec::new();
        // Leased but never acked: the next round's reopen serves them again.
        while let Some(batch) = buffer.next_batch(1000, usize::MAX).unwrap() {
            all.extend(nums(&batch));
        }
        drop(buffer);
        let count = all.len() as u64;
        assert_eq!(count, report.pending_records);
        assert_eq!(
            all,
            (0..count).collect::<Vec<_>>(),
            "round {round}: each record exactly once, in order"
        );
        assert!(
            count >= reported,
            "round {round}: committed {reported} but found {count}"
        );
        assert!(
            count <= reported + PER_TXN,
            "round {round}: found {count}, more than the {reported} committed plus one transaction"
        );
        assert_eq!(count % PER_TXN, 0, "round {round}: a transaction was torn");
        println!("round {round}: child reported {reported} committed, reopen found {count}");
        present = count;
    }
}

/// Starts the writer child at record `start`, SIGKILLs it once it has
/// reported `start + kill_after`, and returns the last count it reported.
fn run_child_and_kill(dir: &Path, start: u64, kill_after: u64) -> u64 {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "durability::crash_child_writer",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR_ENV, dir)
        .env(CHILD_START_ENV, start.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(n) = line.strip_prefix("committed ")
                && tx.send(n.parse::<u64>().unwrap()).is_err()
            {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut reported = start;
    while reported < start + kill_after {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(n) => reported = n,
            Err(_) => {
                let _ = child.kill();
                panic!("writer child reported only {reported} before the deadline");
            }
        }
    }
    child.kill().unwrap(); // SIGKILL on Unix: no destructors, no clean close
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "child should have been killed, got {status}"
    );
    // Lines the child printed before it died are still in the pipe.
    reader.join().unwrap();
    while let Ok(n) = rx.try_recv() {
        reported = reported.max(n);
    }
    reported
}

#[test]
fn a_corrupt_file_is_moved_aside_and_replaced() {
    for garbage in [
        (0..8192u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect::<Vec<u8>>(),
        [b"SQLite format 3\0".as_slice(), &[0xA5; 4096]].concat(),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path(), u64::MAX, WhenFull::DropOldest);
        std::fs::write(&cfg.path, &garbage).unwrap();
        let (buffer, report) = Buffer::open(cfg.clone()).expect("corruption must not block open");
        let moved = report.recovered_from_corruption.expect("reports the move");
        let name = moved.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with("buffer.db.corrupt-"), "{name}");
        assert_eq!(
            std::fs::read(&moved).unwrap(),
            garbage,
            "moved aside unchanged"
        );
        assert_eq!(report.pending_records, 0);
        buffer.append(&recs(0..3, 10)).unwrap();
        assert_eq!(drain(&buffer, 10), [0, 1, 2]);
        drop(buffer);
        let (_, report) = open(&cfg);
        assert_eq!(
            report.recovered_from_corruption, None,
            "the new file is healthy"
        );
    }
}

#[test]
fn a_drained_buffer_gives_its_disk_space_back() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), u64::MAX, WhenFull::DropOldest);
    {
        let (buffer, _) = open(&cfg);
        for start in (0..5000).step_by(500) {
            buffer.append(&recs(start..start + 500, 1000)).unwrap();
        }
    }
    // Closing checkpoints the WAL into the main file and removes the WAL.
    let full = file_len(&cfg.path);
    assert!(
        full > 5_000_000,
        "5 MB of payload should be on disk, file is {full}"
    );
    {
        let (buffer, report) = open(&cfg);
        assert_eq!(report.pending_records, 5000);
        assert_eq!(drain(&buffer, 300).len(), 5000);
    }
    let drained = file_len(&cfg.path);
    assert!(
        drained < full / 20,
        "drained file is {drained} bytes, was {full}"
    );
    let conn = rusqlite::Connection::open(&cfg.path).unwrap();
    let pages: i64 = conn
        .query_row("PRAGMA page_count", [], |r| r.get(0))
        .unwrap();
    let free: i64 = conn
        .query_row("PRAGMA freelist_count", [], |r| r.get(0))
        .unwrap();
    assert_eq!(free, 0, "no free pages left behind ({pages} pages)");
}

#[test]
fn new_files_use_wal_and_incremental_auto_vacuum() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), u64::MAX, WhenFull::DropOldest);
    let (buffer, _) = open(&cfg);
    buffer.append(&recs(0..1, 10)).unwrap();
    let shm = cfg.path.with_file_name("buffer.db-shm");
    assert!(
        !shm.exists(),
        "exclusive locking keeps the WAL index in memory"
    );
    drop(buffer);
    let conn = rusqlite::Connection::open(&cfg.path).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    let vacuum: i64 = conn
        .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
        .unwrap();
    assert_eq!((mode.as_str(), vacuum), ("wal", 2));
}

#[test]
fn a_newer_schema_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), u64::MAX, WhenFull::DropOldest);
    {
        let (buffer, _) = open(&cfg);
        buffer.append(&recs(0..2, 10)).unwrap();
    }
    let conn = rusqlite::Connection::open(&cfg.path).unwrap();
    conn.execute("UPDATE meta SET value = 4 WHERE key = 'schema_version'", [])
        .unwrap();
    drop(conn);
    let err = Buffer::open(cfg.clone())
        .err()
        .expect("newer schema must be refused");
    assert!(
        matches!(
            err,
            BufferError::SchemaTooNew {
                found: 4,
                supported: 3,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("newer"), "{err}");
    let files: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(files.iter().all(|f| !f.contains("corrupt")), "{files:?}");
    let conn = rusqlite::Connection::open(&cfg.path).unwrap();
    let n: i64 = conn
        .query_row("SELECT SUM(count) FROM records", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 2, "both records still there (one chunk since schema 3)");
}

/// Takes about `busy_timeout` (5 s): the second opener waits for the lock
/// before giving up, as it would for a previous instance still exiting.
#[test]
fn a_second_owner_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), u64::MAX, WhenFull::DropOldest);
    let (buffer, _) = open(&cfg);
    buffer.append(&recs(0..1, 10)).unwrap();
    let err = Buffer::open(cfg.clone())
        .err()
        .expect("second open must fail");
    assert!(matches!(err, BufferError::InUse { .. }), "{err}");
    assert_eq!(drain(&buffer, 10), [0], "the first owner is unaffected");
}
