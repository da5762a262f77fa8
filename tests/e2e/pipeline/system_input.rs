//! The `system` input: the device's own readings, collected on an interval
//! by the real binary, through the real example validator, privacy and
//! sampler guests, committed to the SQLite buffer and written by the file
//! transport, with exact counts per collection.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::support::{
    Host, Scenario, config_with_input, dead_letters, delivered, file_transport, wait_for,
};

/// Memory (6 readings), load (3) and uptime (1): 10 events per collection,
/// whatever the machine. The validator rejects `system.memory.utilization`
/// (any value is above -1), so 9 of each 10 are delivered.
const PER_ROUND: usize = 10;
const REJECTED_PER_ROUND: usize = 1;

#[test]
fn system_readings_go_through_the_stages_with_exact_counts_per_collection() {
    let s = Scenario::new();
    let out = s.path("out.jsonl");
    let input = r#"[[input]]
type = "system"
name = "device"
interval_ms = 150
metrics = ["memory", "load", "uptime"]
source = "board-7"
"#;
    let mut config = config_with_input(&s.data, input, &file_transport(&out));
    // The validator of the example stages bounds `temp`; bound a system
    // reading instead so that exactly one per collection is rejected.
    let from = r#"config = { "min.temp" = 0 }"#;
    assert!(config.contains(from));
    config = config.replace(from, r#"config = { "max.system.memory.utilization" = -1 }"#);
    std::fs::write(&s.config, config).unwrap();

    let host = Host::start(&s.config);
    wait_for(
        "three collections delivered",
        Duration::from_secs(60),
        || by_round(&delivered(&out)).len() >= 3,
    );
    let log = host.stop();

    let events = delivered(&out);
    let rounds = by_round(&events);
    let expected: Vec<&str> = vec![
        "system.load.15m",
        "system.load.1m",
        "system.load.5m",
        "system.memory.available",
        "system.memory.total",
        "system.memory.used",
        "system.swap.total",
        "system.swap.used",
        "system.uptime",
    ];
    for (time, kinds) in &rounds {
        assert_eq!(kinds, &expected, "collection at {time}: {log}");
    }
    assert_eq!(
        events.len(),
        rounds.len() * (PER_ROUND - REJECTED_PER_ROUND)
    );
    // Every event once: a graceful stop leaves nothing undelivered.
    let ids: std::collections::BTreeSet<String> =
        events.iter().map(|e| e["id"].to_string()).collect();
    assert_eq!(ids.len(), events.len(), "duplicates delivered");
    assert!(events.iter().all(|e| e["source"] == "board-7"));
    let total = events
        .iter()
        .find(|e| e["kind"] == "system.memory.total")
        .unwrap();
    assert_eq!(total["unit"], "bytes");
    assert!(total["value"].as_f64().unwrap() > 0.0);
    // The rejected readings are dead letters, one per collection.
    let rejected = dead_letters(&s.data)
        .into_iter()
        .filter(|r| r.contains("system.memory.utilization"))
        .count();
    assert_eq!(rejected, rounds.len() * REJECTED_PER_ROUND, "{log}");
}

/// Delivered kinds grouped by collection (every reading of one collection
/// shares its `time_ns`), sorted.
fn by_round(events: &[serde_json::Value]) -> BTreeMap<i64, Vec<&str>> {
    let mut rounds: BTreeMap<i64, Vec<&str>> = BTreeMap::new();
    for e in events {
        let time = e["time_ns"].as_i64().unwrap_or_default();
        rounds
            .entry(time)
            .or_default()
            .push(e["kind"].as_str().unwrap_or_default());
    }
    for kinds in rounds.values_mut() {
        kinds.sort_unstable();
    }
    rounds
}
