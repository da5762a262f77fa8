//! Bounds on what a file input holds and how long it takes to stop (issue
//! 12): a line over `max_line_bytes` is dead-lettered, not buffered, and
//! the lines around it are delivered; SIGTERM stops a file input that is a
//! million lines behind within `[shutdown] timeout_ms`, and the next start
//! delivers every line exactly once in total.

use std::io::Write;
use std::time::{Duration, Instant};

use crate::receiver::{wait_stored, with_receiver};
use crate::support::{
    Host, config_with_stages, dead_letter_rows, file_input, http_transport, totals, wait_for,
    write_sensor_lines,
};

#[test]
fn a_line_over_the_limit_is_dead_lettered_and_the_lines_around_it_delivered() {
    let (s, receiver) = with_receiver();
    let negative_a = write_sensor_lines(&s.input, 0, 500);
    let long_at = std::fs::metadata(&s.input).unwrap().len();
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&s.input)
        .unwrap();
    file.write_all(&vec![b'x'; 2 << 20]).unwrap();
    file.write_all(b"\n").unwrap();
    drop(file);
    let negative_b = write_sensor_lines(&s.input, 500, 500);
    let valid = 1000 - negative_a - negative_b;

    let host = Host::start(&s.config);
    wait_stored(&receiver, valid);
    let log = host.stop();

    let stats = receiver.stats();
    assert_eq!((stats.events_stored, stats.duplicates), (valid, 0), "{log}");
    let dead = dead_letter_rows(&s.data);
    let long: Vec<_> = dead
        .iter()
        .filter(|d| d.reason.contains("max_line_bytes"))
        .collect();
    assert_eq!(
        long.len(),
        1,
        "{:?}",
        long.iter().map(|d| &d.reason).collect::<Vec<_>>()
    );
    assert_eq!(
        long[0].reason,
        format!(
            "sensors: line at offset {long_at} is 2097152 bytes, over max_line_bytes (1048576); \
             first 4096 bytes kept"
        )
    );
    // A frame that never met the privacy policy keeps only a digest (the
    // default `dead_letter_frames`): of a bounded prefix, not the line.
    assert!(
        matches!(long[0].kept, halyard_buffer::Kept::Digest { len: 4096, .. }),
        "{:?}",
        long[0].kept
    );
    assert_eq!(
        dead.len() as u64,
        1 + negative_a + negative_b,
        "the long line and the validator's rejections"
    );
    assert_eq!(totals(&log).get("decode_errors"), Some(&1), "{log}");
}

/// The host's peak resident memory so far, in bytes (`VmHWM`).
fn peak_rss(host: &Host) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", host.pid())).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status");
    kb << 10
}

#[test]
fn a_128_mib_line_does_not_raise_the_hosts_peak_memory() {
    let (s, receiver) = with_receiver();
    let valid_a = 500 - write_sensor_lines(&s.input, 0, 500);
    let host = Host::start(&s.config);
    wait_stored(&receiver, valid_a);
    let before = peak_rss(&host);

    // 128 MiB without a newline, written while the host follows the file,
    // then its newline and more lines.
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&s.input)
        .unwrap();
    let block = vec![b'y'; 1 << 20];
    for _ in 0..128 {
        file.write_all(&block).unwrap();
    }
    file.write_all(b"\n").unwrap();
    drop(file);
    let valid_b = 500 - write_sensor_lines(&s.input, 500, 500);
    wait_stored(&receiver, valid_a + valid_b);
    let grew = peak_rss(&host).saturating_sub(before);
    let log = host.stop();
    println!("peak RSS grew by {} KiB over a 128 MiB line", grew >> 10);

    assert!(
        grew < 16 << 20,
        "peak RSS grew by {grew} bytes: the line was held"
    );
    let stats = receiver.stats();
    assert_eq!(
        (stats.events_stored, stats.duplicates),
        (valid_a + valid_b, 0),
        "{log}"
    );
    let long = dead_letter_rows(&s.data)
        .into_iter()
        .filter(|d| d.reason.contains("is 134217728 bytes, over max_line_bytes"))
        .count();
    assert_eq!(long, 1);
}

/// A short valid line (the value is never negative), so a million of them
/// are ~45 MB.
fn short_lines(n: u64) -> Vec<u8> {
    let mut text = Vec::with_capacity(n as usize * 48);
    for i in 0..n {
        writeln!(
            text,
            "{{\"device\":\"d{}\",\"metric\":\"temp\",\"value\":{}}}",
            i % 50,
            i % 100
        )
        .unwrap();
    }
    text
}

#[test]
fn sigterm_with_a_million_unread_lines_stops_in_time_and_loses_nothing() {
    const LINES: u64 = 1_000_000;
    // The test config's `[shutdown] timeout_ms`, and the host's stop margin.
    const TIMEOUT: Duration = Duration::from_millis(2000);
    const MARGIN: Duration = Duration::from_millis(1500);
    let (s, receiver) = with_receiver();
    // No stages and batches of 1000: a million events reach the receiver
    // in a debug build in well under a minute on an idle machine.
    let text = config_with_stages(
        &s.data,
        &file_input(&s.input),
        "",
        &http_transport(&receiver.url(), None),
    );
    assert!(text.contains("max_events = 250"));
    std::fs::write(
        &s.config,
        text.replace("max_events = 250", "max_events = 1000"),
    )
    .unwrap();
    std::fs::write(&s.input, short_lines(LINES)).unwrap();

    let host = Host::start(&s.config);
    wait_stored(&receiver, 1);
    let stored_at_term = receiver.stats().events_stored;
    let asked = Instant::now();
    let first = host.stop();
    let took = asked.elapsed();
    println!(
        "SIGTERM with {} of {LINES} lines delivered: exited after {took:?} \
         (timeout {TIMEOUT:?})",
        stored_at_term
    );
    assert!(
        took <= TIMEOUT + MARGIN,
        "exit took {took:?}, over {TIMEOUT:?} + {MARGIN:?}"
    );
    let accepted_first = totals(&first)["accepted"];
    assert!(
        accepted_first < LINES,
        "stopped mid-file ({accepted_first} read)"
    );

    let restarted = Instant::now();
    let host = Host::start(&s.config);
    // A deadline for a loaded machine; it takes ~30 s on an idle one.
    wait_for("every line stored", Duration::from_secs(300), || {
        receiver.stats().events_stored >= LINES
    });
    println!(
        "the rest delivered {:?} after the restart",
        restarted.elapsed()
    );
    let second = host.stop();
    let stats = receiver.stats();
    println!(
        "after the restart: {} stored, {} duplicates; lines read {} + {}",
        stats.events_stored,
        stats.duplicates,
        accepted_first,
        totals(&second)["accepted"]
    );
    assert_eq!(stats.events_stored, LINES, "every line delivered");
    assert_eq!(
        accepted_first + totals(&second)["accepted"],
        LINES,
        "the committed position was exact: no line read twice or skipped"
    );
    // Batches in flight when the stop deadline passed are sent again, with
    // the same ids: at most `max_in_flight` (4) batches of 1000.
    assert!(
        stats.duplicates <= 4 * 1000,
        "{} duplicates",
        stats.duplicates
    );
}
