//! File input → stages → buffer → file transport: exact counts, and a
//! restart that neither loses nor repeats a line.

use std::collections::HashSet;
use std::time::Duration;

use crate::support::{
    Host, Scenario, dead_letters, delivered, file_transport, wait_for, write_sensor_lines,
};

#[test]
fn every_line_is_delivered_rejected_or_dead_lettered_exactly_once() {
    let s = Scenario::new();
    let out = s.path("out.jsonl");
    assert_eq!(write_sensor_lines(&s.input, 0, 2000), 200);
    s.write_config(&file_transport(&out));

    let host = Host::start(&s.config);
    wait_for("1800 events delivered", Duration::from_secs(60), || {
        delivered(&out).len() >= 1800
    });
    let log = host.stop();

    let events = delivered(&out);
    assert_eq!(events.len(), 1800, "{log}");
    let ids: HashSet<&str> = events.iter().filter_map(|e| e["id"].as_str()).collect();
    assert_eq!(ids.len(), 1800, "no duplicates");
    assert!(
        events
            .iter()
            .all(|e| e["value"].as_f64().is_some_and(|v| v >= 0.0))
    );
    assert!(
        events.iter().all(|e| e["attributes"]["operator"]
            .as_str()
            .is_some_and(|o| o.starts_with("h:"))),
        "every operator is hashed before it leaves"
    );
    let dead = dead_letters(&s.data);
    assert_eq!(dead.len(), 200);
    assert!(
        dead.iter()
            .all(|r| r.contains("is below the minimum 0 for temp")),
        "{:?}",
        &dead[..3]
    );
}

#[test]
fn restart_neither_loses_nor_repeats_file_lines() {
    let s = Scenario::new();
    let out = s.path("out.jsonl");
    write_sensor_lines(&s.input, 0, 1000);
    s.write_config(&file_transport(&out));

    let host = Host::start(&s.config);
    wait_for("900 events delivered", Duration::from_secs(60), || {
        delivered(&out).len() >= 900
    });
    host.stop();
    // Lines written while the host is down, and after it restarts.
    write_sensor_lines(&s.input, 1000, 500);
    let host = Host::start(&s.config);
    write_sensor_lines(&s.input, 1500, 500);
    wait_for("1800 events delivered", Duration::from_secs(60), || {
        delivered(&out).len() >= 1800
    });
    host.stop();

    let events = delivered(&out);
    let ids: HashSet<&str> = events.iter().filter_map(|e| e["id"].as_str()).collect();
    assert_eq!(events.len(), 1800, "every valid line exactly once");
    assert_eq!(ids.len(), 1800);
    let mut times: Vec<i64> = events
        .iter()
        .filter_map(|e| e["time_ns"].as_i64())
        .collect();
    times.sort();
    times.dedup();
    assert_eq!(times.len(), 1800, "each line's own event, none twice");
}
