//! Host memory per request: a large valid request costs the host a small
//! multiple of its body, not of the ~200k events it decodes into (those are
//! staged in the buffer file as they are produced, and committed whole).

use std::collections::BTreeSet;
use std::time::Duration;

use crate::http_support::{
    AUTH, Client, ingest_url, line_is_valid, line_ts, sensor_lines, start_http_host_with,
};
use crate::support::{Scenario, delivered, wait_for};

/// A `kB` field of `/proc/<pid>/status` (`VmRSS`, `VmHWM`), in bytes.
fn status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"));
    let kb: u64 = line.trim().trim_end_matches("kB").trim().parse().unwrap();
    kb * 1024
}

#[test]
fn a_15_mib_request_costs_the_host_a_small_multiple_of_its_body() {
    let s = Scenario::new();
    let out = s.path("out.jsonl");
    // One pipeline worker: this measures what a request costs. Each extra
    // worker holds its own instance of every plugin, whose memory grows to
    // its first large batch; the warm-up below would warm one worker only.
    let (host, listen) = start_http_host_with(&s, &out, AUTH, "\n[pipeline]\nworkers = 1\n");
    let client = Client::new();
    let pid = host.pid();

    // Warm up: plugins instantiated, allocator and SQLite caches in use.
    let (warm, _) = sensor_lines(&s.input, 0, 2000);
    assert_eq!(client.post(&ingest_url(listen), warm, &[]).status, 200);
    // Reset the peak to what the process holds now (Linux ≥ 4.0).
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").unwrap();
    let before = status_bytes(pid, "VmRSS");

    let n = 180_000;
    let (body, negative) = sensor_lines(&s.input, 2000, n);
    let body_len = body.len() as u64;
    assert!(body_len > 14 << 20 && body_len <= 16 << 20, "{body_len}");
    let answer = client.post(&ingest_url(listen), body, &[]);
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.count("accepted"), n - negative, "{answer:?}");
    let growth = status_bytes(pid, "VmHWM").saturating_sub(before);
    eprintln!(
        "request of {:.1} MiB: host peak grew {:.1} MiB ({:.2}× the body)",
        body_len as f64 / 1048576.0,
        growth as f64 / 1048576.0,
        growth as f64 / body_len as f64
    );
    // The body itself is held once, by the http input; the events are not.
    assert!(
        growth <= 3 * body_len,
        "peak grew {growth} bytes for a body of {body_len}"
    );

    let expected: BTreeSet<i64> = (0..2000 + n)
        .filter(|i| line_is_valid(*i))
        .map(line_ts)
        .collect();
    wait_for(
        &format!("{} events delivered", expected.len()),
        Duration::from_secs(120),
        || delivered(&out).len() >= expected.len(),
    );
    let log = host.stop();
    let times: Vec<i64> = delivered(&out)
        .iter()
        .filter_map(|e| e["time_ns"].as_i64())
        .map(|ns| ns / 1_000_000)
        .collect();
    assert_eq!(times.len(), expected.len(), "no duplicates: {log}");
    assert_eq!(times.into_iter().collect::<BTreeSet<_>>(), expected);
}
