//! Steady input: exact alert and cleared counts for each rule, and a time
//! window closed by the timer alone.

use std::path::Path;

use halyard_test_components as components;

use crate::pipeline_support::{Host, Scenario, totals, wait_until_ingested};
use crate::support::{append, counts, now_ms, unique, wait_delivered, write_config};

/// One rule per metric: `temp` out of [0, 50] three times in a row,
/// `load` mean of the last 4 above 10, `flow` faster than 5 per second.
const RULES: &str = "\"temp.range_lo\" = 0, \"temp.range_hi\" = 50, \"temp.consecutive\" = 3, \
     \"load.mean_above\" = 10, \"load.mean_window_n\" = 4, \"flow.rate_above\" = 5";

#[test]
fn steady_readings_give_exactly_k_alerts_and_k_cleared_for_each_rule() {
    let s = Scenario::new();
    write_config(
        &s,
        Path::new(components::THRESHOLD_DETECTOR),
        RULES,
        1 << 20,
    );
    let base = 1_700_000_000_000u64;
    let mut readings: Vec<(&str, &str, f64, u64)> = Vec::new();
    // temp on d1: 3 episodes of 4 readings out of range (alert at the 3rd),
    // each ended by a reading inside: 3 alerts, 3 cleared.
    for _ in 0..3 {
        for v in [10.0, 10.0, 10.0, 80.0, 80.0, 80.0, 80.0] {
            readings.push(("d1", "temp", v, base));
        }
    }
    readings.push(("d1", "temp", 10.0, base));
    // temp on d2: never 3 in a row: nothing.
    for _ in 0..3 {
        for v in [80.0, -5.0, 10.0] {
            readings.push(("d2", "temp", v, base));
        }
    }
    // load on d1: mean of the last 4 goes 5, 10, 15 (alert), 20, 15, 10
    // (cleared), 5, 0; twice: 2 alerts, 2 cleared.
    for _ in 0..2 {
        for v in [
            0.0, 0.0, 0.0, 0.0, 20.0, 20.0, 20.0, 20.0, 0.0, 0.0, 0.0, 0.0,
        ] {
            readings.push(("d1", "load", v, base));
        }
    }
    // flow on d3, one reading a second: +17/s (alert), +1/s (cleared),
    // twice: 2 alerts, 2 cleared.
    for (i, v) in [0.0, 1.0, 2.0, 19.0, 20.0, 21.0, 45.0, 46.0]
        .iter()
        .enumerate()
    {
        readings.push(("d3", "flow", *v, base + i as u64 * 1000));
    }
    append(&s.input, &readings);
    let n = readings.len();

    let host = Host::start(&s.config);
    wait_until_ingested(&s, &host);
    wait_delivered(&s, n + 14);
    let log = host.stop();

    let c = counts(&s);
    assert_eq!(c.get("alert/out_of_range"), Some(&3), "{c:?}");
    assert_eq!(c.get("cleared/out_of_range"), Some(&3), "{c:?}");
    assert_eq!(c.get("alert/mean_above"), Some(&2), "{c:?}");
    assert_eq!(c.get("cleared/mean_above"), Some(&2), "{c:?}");
    assert_eq!(c.get("alert/rate_of_change"), Some(&2), "{c:?}");
    assert_eq!(c.get("cleared/rate_of_change"), Some(&2), "{c:?}");
    assert_eq!(unique(&s).len(), n + 14);
    let t = totals(&log);
    assert_eq!(t["accepted"], n as u64 + 14, "{log}");
    assert_eq!(t["detected"], 14, "{log}");
    assert_eq!(t["detector_failures"], 0, "{log}");
    // The alerts name the detector first in their provenance; readings
    // name the decoder, then the detector.
    for e in unique(&s) {
        let chain = e["provenance"]["chain"].as_array().unwrap();
        let first = chain[0].as_str().unwrap();
        if e["kind"] == "alert" || e["kind"] == "cleared" {
            assert!(first.starts_with("thresholds@"), "{e}");
        } else {
            assert!(!first.starts_with("thresholds@"), "{e}");
            assert!(
                chain
                    .iter()
                    .any(|l| l.as_str().unwrap().starts_with("thresholds@")),
                "{e}"
            );
        }
    }
}

#[test]
fn a_time_window_is_closed_by_the_timer_without_new_input() {
    let s = Scenario::new();
    let rules = "\"pressure.mean_above\" = 5, \"pressure.mean_window_s\" = 1, tick_ms = 100";
    write_config(
        &s,
        Path::new(components::THRESHOLD_DETECTOR),
        rules,
        1 << 20,
    );
    let now = now_ms();
    append(
        &s.input,
        &[("p1", "pressure", 9.0, now), ("p1", "pressure", 11.0, now)],
    );
    let host = Host::start(&s.config);
    // Two readings, the alert, and — with no further input — the cleared
    // event a tick makes once the window is a second old.
    wait_delivered(&s, 4);
    let log = host.stop();
    let c = counts(&s);
    assert_eq!(c.get("alert/mean_above"), Some(&1), "{c:?}");
    assert_eq!(c.get("cleared/mean_above"), Some(&1), "{c:?}");
    assert_eq!(unique(&s).len(), 4);
    let t = totals(&log);
    assert_eq!(t["detected"], 2, "{log}");
    assert_eq!(t["accepted"], 4, "{log}");
}
