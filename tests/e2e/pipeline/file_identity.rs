//! A tailed file is known by its content (issue 12): a new file that reuses
//! an old inode, a file truncated and rewritten in place (copytruncate) and
//! a renamed file with a new one at its path each deliver every line to
//! the real receiver exactly once, none dropped as a duplicate of an old id.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use halyard_buffer::{Buffer, BufferConfig, Commit, Cursor};

use crate::receiver::{wait_stored, with_receiver};
use crate::support::{Host, Scenario, write_sensor_lines};

/// The valid lines (the validator rejects negative values) of `n` sensor
/// lines numbered from `start`, written to a scratch file whose bytes are
/// returned: a file's whole new content, to write in one go.
fn sensor_bytes(s: &Scenario, start: u64, n: u64) -> (Vec<u8>, u64) {
    let scratch = s.path(&format!("scratch-{start}.jsonl"));
    let negative = write_sensor_lines(&scratch, start, n);
    (std::fs::read(&scratch).unwrap(), n - negative)
}

fn inode(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().ino()
}

#[test]
fn a_new_file_on_a_reused_inode_is_read_from_its_start() {
    let (s, receiver) = with_receiver();
    let valid_a = 1000 - write_sensor_lines(&s.input, 0, 1000);
    let host = Host::start(&s.config);
    wait_stored(&receiver, valid_a);
    host.stop();

    // Deleted while the host is down; the new file (longer, so the old
    // offset is inside it) usually gets the freed inode on ext4. A few
    // tries, bounded, in case another file took it.
    let old = inode(&s.input);
    let (b, valid_b) = sensor_bytes(&s, 1000, 2000);
    let mut reused = false;
    for _ in 0..20 {
        std::fs::remove_file(&s.input).unwrap();
        std::fs::write(&s.input, &b).unwrap();
        reused = inode(&s.input) == old;
        if reused {
            break;
        }
    }
    println!("inode reused by the new file: {reused}");
    let host = Host::start(&s.config);
    wait_stored(&receiver, valid_a + valid_b);
    host.stop();

    // And a file rewritten in place while the host is down: the same
    // device and inode whatever the file system, other content.
    let (c, valid_c) = sensor_bytes(&s, 3000, 3000);
    let before = inode(&s.input);
    std::fs::write(&s.input, &c).unwrap();
    assert_eq!(inode(&s.input), before, "rewritten in place");
    let host = Host::start(&s.config);
    wait_stored(&receiver, valid_a + valid_b + valid_c);
    let log = host.stop();

    let stats = receiver.stats();
    assert_eq!(
        (stats.events_stored, stats.duplicates),
        (valid_a + valid_b + valid_c, 0),
        "every line of the three files once: {log}"
    );
    assert_eq!(
        log.matches("a new file at the path").count(),
        1,
        "the last start saw the rewritten file as new: {log}"
    );
}

#[test]
fn copytruncate_while_running_delivers_every_line_once() {
    let (s, receiver) = with_receiver();
    let valid_a = 1000 - write_sensor_lines(&s.input, 0, 1000);
    let host = Host::start(&s.config);
    wait_stored(&receiver, valid_a);

    // logrotate's copytruncate: copy, then truncate in place; the writer
    // goes on at once. The new content is longer than the old offset and
    // lands in one write, so the host usually finds the same inode grown
    // past its offset, with other first bytes.
    std::fs::copy(&s.input, s.path("in.jsonl.1")).unwrap();
    let before = inode(&s.input);
    let (b, valid_b) = sensor_bytes(&s, 1000, 1500);
    std::fs::write(&s.input, &b).unwrap();
    assert_eq!(inode(&s.input), before);
    wait_stored(&receiver, valid_a + valid_b);
    // Appends after the truncation go on from where the host got to.
    let valid_c = 500 - write_sensor_lines(&s.input, 2500, 500);
    wait_stored(&receiver, valid_a + valid_b + valid_c);
    let log = host.stop();

    let stats = receiver.stats();
    assert_eq!(
        (stats.events_stored, stats.duplicates),
        (valid_a + valid_b + valid_c, 0),
        "{log}"
    );
}

#[test]
fn rename_rotation_drains_the_old_file_and_reads_the_new_one() {
    let (s, receiver) = with_receiver();
    // Large enough that the host is still reading it when it is renamed.
    let valid_a = 20_000 - write_sensor_lines(&s.input, 0, 20_000);
    let host = Host::start(&s.config);
    wait_stored(&receiver, 1);

    std::fs::rename(&s.input, s.path("in.jsonl.1")).unwrap();
    let valid_b = 1000 - write_sensor_lines(&s.input, 20_000, 1000);
    wait_stored(&receiver, valid_a + valid_b);
    // The new file keeps growing after the switch.
    let valid_c = 500 - write_sensor_lines(&s.input, 21_000, 500);
    wait_stored(&receiver, valid_a + valid_b + valid_c);
    let log = host.stop();

    let stats = receiver.stats();
    assert_eq!(
        (stats.events_stored, stats.duplicates),
        (valid_a + valid_b + valid_c, 0),
        "{log}"
    );
}

#[test]
fn a_position_stored_before_fingerprints_resumes_by_inode_and_gains_one() {
    let (s, receiver) = with_receiver();
    write_sensor_lines(&s.input, 0, 400);
    let offset = std::fs::metadata(&s.input).unwrap().len();
    let valid = 600 - write_sensor_lines(&s.input, 400, 600);
    // What an earlier version stored after committing the first 400 lines.
    let meta = std::fs::metadata(&s.input).unwrap();
    let legacy = format!(
        r#"{{"dev":{},"ino":{},"offset":{offset}}}"#,
        meta.dev(),
        meta.ino()
    );
    std::fs::create_dir_all(&s.data).unwrap();
    let (buffer, _) = Buffer::open(BufferConfig::new(s.data.join("buffer.db"), 1 << 30)).unwrap();
    buffer
        .commit(&Commit {
            cursor: Some(Cursor {
                name: "sensors",
                value: Some(legacy.as_bytes()),
            }),
            ..Commit::default()
        })
        .unwrap();
    drop(buffer);

    let host = Host::start(&s.config);
    wait_stored(&receiver, valid);
    let log = host.stop();
    let stats = receiver.stats();
    assert_eq!(
        (stats.events_stored, stats.duplicates),
        (valid, 0),
        "only lines 400..1000: {log}"
    );
    assert!(
        log.contains("resuming a position stored without a fingerprint"),
        "{log}"
    );

    let (buffer, _) = Buffer::open(BufferConfig::new(s.data.join("buffer.db"), 1 << 30)).unwrap();
    let stored: serde_json::Value =
        serde_json::from_slice(&buffer.cursor("sensors").unwrap().unwrap()).unwrap();
    assert_eq!(stored["offset"], meta.len());
    assert_eq!(
        stored["fingerprint"]["len"], 1024,
        "now known by its content"
    );
}
