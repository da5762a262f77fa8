//! Several pipeline workers (`[pipeline] workers`): one file, staged by
//! one or two workers at once, is delivered exactly once, enters the buffer
//! in file order (its position is committed in order), and a kill -9 in
//! the middle still gives exactly-once at the receiver.

use std::collections::HashSet;
use std::time::Duration;

use crate::receiver::{Receiver, loopback_any};
use crate::support::{
    Host, Scenario, delivered, file_transport, http_transport, totals, wait_for, write_sensor_lines,
};

/// The `[pipeline]` table asking for `n` workers.
fn workers(n: u64) -> String {
    format!("\n[pipeline]\nworkers = {n}\n")
}

#[test]
fn one_file_through_one_or_two_workers_arrives_once_and_in_file_order() {
    for n in [1, 2] {
        let s = Scenario::new();
        let out = s.path("out.jsonl");
        let lines = 12_000;
        let negative = write_sensor_lines(&s.input, 0, lines);
        let valid = lines - negative;
        // One batch shipped at a time: the file holds the buffer's order.
        s.write_config_with(
            &format!("{}{}", file_transport(&out), workers(n)),
            &[("max_age_ms = 100", "max_age_ms = 100\nmax_in_flight = 1")],
        );
        let host = Host::start(&s.config);
        wait_for(
            &format!("{valid} events delivered ({n} workers)"),
            Duration::from_secs(120),
            || delivered(&out).len() as u64 >= valid,
        );
        let log = host.stop();
        assert!(
            log.contains(&format!("\"workers\":{n}")),
            "the host ran {n} workers: {log}"
        );
        let events = delivered(&out);
        assert_eq!(events.len() as u64, valid, "{n} workers: {log}");
        let ids: HashSet<&str> = events.iter().filter_map(|e| e["id"].as_str()).collect();
        assert_eq!(ids.len() as u64, valid, "{n} workers: no duplicates");
        // Each line's time is its line number: file order is time order.
        let times: Vec<i64> = events
            .iter()
            .filter_map(|e| e["time_ns"].as_i64())
            .collect();
        assert_eq!(times.len() as u64, valid);
        let out_of_order = times.windows(2).filter(|w| w[0] >= w[1]).count();
        assert_eq!(out_of_order, 0, "{n} workers: events in file order");
        let t = totals(&log);
        assert_eq!(
            (t.get("accepted"), t.get("rejected")),
            (Some(&valid), Some(&negative)),
            "{n} workers: totals summed over the workers: {log}"
        );
    }
}

#[test]
fn kill_9_with_two_workers_mid_file_gives_exactly_once_at_the_receiver() {
    let s = Scenario::new();
    let receiver = Receiver::start(loopback_any(), &s.path("received.db"), None);
    let negative = write_sensor_lines(&s.input, 0, 20_000);
    let valid = 20_000 - negative;
    s.write_config(&format!(
        "{}{}",
        http_transport(&receiver.url(), None),
        workers(2)
    ));

    let host = Host::start(&s.config);
    wait_for("a first part delivered", Duration::from_secs(60), || {
        receiver.stats().events_stored >= 3000
    });
    host.kill9();
    let stored_at_kill = receiver.stats().events_stored;
    assert!(
        stored_at_kill < valid,
        "killed mid-stream ({stored_at_kill} stored)"
    );

    let host = Host::start(&s.config);
    wait_for(
        &format!("all {valid} valid events stored"),
        Duration::from_secs(120),
        || receiver.stats().events_stored >= valid,
    );
    let log = host.stop();
    let stats = receiver.stats();
    // Distinct events stored: every valid line exactly once. What was in
    // flight at the kill is sent again and dropped by id (at most the
    // batches in flight); no line is read twice, so nothing more.
    assert_eq!(stats.events_stored, valid, "{log}");
    assert!(
        stats.duplicates <= 4 * 250,
        "{} duplicates",
        stats.duplicates
    );
}
