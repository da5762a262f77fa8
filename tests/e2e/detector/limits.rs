//! A `kv` namespace over its byte bound, and a detector that traps.

use std::path::Path;

use halyard_test_components as components;

use crate::pipeline_support::{Host, Scenario, totals};
use crate::support::{counts, feed, unique, wait_delivered, write_config};

#[test]
fn a_write_past_the_namespace_bound_is_refused_to_the_guest_and_the_host_goes_on() {
    let s = Scenario::new();
    let rules = "\"temp.range_lo\" = 0, \"temp.range_hi\" = 50, \"temp.consecutive\" = 3";
    // 200 bytes: `w/temp/a` and its window fit; the 207-byte key of the
    // long device alone does not.
    write_config(&s, Path::new(components::THRESHOLD_DETECTOR), rules, 200);
    let long = "L".repeat(200);
    let host = Host::start(&s.config);
    for ts in 1..=3 {
        // One batch each: each tries to keep the window once, and fails.
        feed(&s, &host, &[(long.as_str(), "temp", 80.0, ts)]);
    }
    feed(
        &s,
        &host,
        &[
            ("a", "temp", 80.0, 4),
            ("a", "temp", 80.0, 5),
            ("a", "temp", 80.0, 6),
        ],
    );
    wait_delivered(&s, 10);
    let log = host.stop();

    let c = counts(&s);
    assert_eq!(c.get("detector.kv_error"), Some(&3), "{c:?}");
    // The long device's window was never kept: no alert for it.
    assert_eq!(c.get("alert/out_of_range"), Some(&1), "{c:?}");
    for e in unique(&s)
        .iter()
        .filter(|e| e["kind"] == "detector.kv_error")
    {
        let error = e["attributes"]["error"].as_str().unwrap();
        assert!(error.contains("kv_max_bytes = 200"), "{e}");
    }
    let alert = unique(&s)
        .into_iter()
        .find(|e| e["kind"] == "alert")
        .unwrap();
    assert_eq!(alert["source"], "a");
    let t = totals(&log);
    assert_eq!(t["accepted"], 10, "{log}");
    assert_eq!(t["detected"], 4, "{log}");
    assert_eq!(t["detector_failures"], 0, "{log}");
}

#[test]
fn a_detector_that_traps_loses_only_its_own_output_and_its_writes() {
    let s = Scenario::new();
    write_config(&s, Path::new(components::TRAPPING_DETECTOR), "", 1 << 20);
    let host = Host::start(&s.config);
    // Traps on the batches with a negative reading; its output for the
    // batch with 1000 breaks a host cap and is refused.
    let batches: [&[f64]; 6] = [
        &[1.0, 2.0, 3.0],
        &[4.0, -1.0],
        &[5.0, 6.0, 7.0, 8.0],
        &[-2.0],
        &[1000.0],
        &[9.0],
    ];
    let mut ts = 0;
    for values in batches {
        let readings: Vec<(&str, &str, f64, u64)> = values
            .iter()
            .map(|v| {
                ts += 1;
                ("d1", "temp", *v, ts)
            })
            .collect();
        feed(&s, &host, &readings);
    }
    // 12 readings, every one delivered, and one `seen` event per batch
    // that neither trapped nor was refused.
    wait_delivered(&s, 15);
    let log = host.stop();
    let events = unique(&s);
    let readings = events.iter().filter(|e| e["kind"] == "temp").count();
    assert_eq!(readings, 12);
    // The trapped and refused calls' kv writes were discarded: 3, 3 + 4,
    // 7 + 1.
    let seen: Vec<f64> = events
        .iter()
        .filter(|e| e["kind"] == "seen")
        .map(|e| e["value"].as_f64().unwrap())
        .collect();
    assert_eq!(seen, [3.0, 7.0, 8.0]);
    let t = totals(&log);
    assert_eq!(t["accepted"], 15, "{log}");
    assert_eq!(t["detected"], 3, "{log}");
    assert_eq!(t["detector_failures"], 3, "{log}");
    assert_eq!(t["rejected"], 0, "{log}");
}

#[test]
fn a_tick_that_is_not_a_number_is_refused_naming_the_detector_and_key() {
    let s = Scenario::new();
    write_config(
        &s,
        Path::new(components::THRESHOLD_DETECTOR),
        "tick_ms = \"soon\"",
        1 << 20,
    );
    let expected =
        "stages.detect[0]: `config.tick_ms` must be a whole number of milliseconds (is `soon`)";
    for args in [["config", "check"], ["run", "--config"]] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_halyard"))
            .args(args)
            .arg(&s.config)
            .env("HALYARD_DEV_MODE", "1")
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
    }
}
