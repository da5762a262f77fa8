//! `/plugins` shows a plugin quarantined after a hostile guest trapped N
//! times, and `/health` calls a quarantined validator unhealthy (503).

use std::time::Duration;

use halyard_test_components as components;

use crate::pipeline_support::{Scenario, dead_letters, file_transport, wait_for};
use crate::support::{Client, sensor_lines, start};

#[test]
fn a_validator_that_traps_three_times_is_quarantined_and_shown() {
    let s = Scenario::new();
    let tail = format!(
        "[stages]\nquarantine_after_traps = 3\n\n{}",
        file_transport(&s.path("out.jsonl"))
    );
    let run = start(
        &s,
        &tail,
        &[
            (components::RANGE_VALIDATOR, components::HOSTILE_VALIDATOR),
            (
                r#"config = { "min.temp" = 0 }"#,
                r#"config = { mode = "panic" }"#,
            ),
        ],
    );
    let client = Client::new();
    let plugins_url = format!("http://{}/plugins", run.status);
    let (_, before) = client.get_json(&plugins_url);
    let list = before["plugins"].as_array().expect("plugins").clone();
    assert_eq!(list.len(), 4, "{before}");
    for p in &list {
        assert_eq!(p["state"], "active", "{p}");
        assert_eq!(p["sha256"].as_str().map(str::len), Some(64), "{p}");
    }

    // Each POST is one validate call: three traps, then quarantined, and
    // the fourth batch is failed closed without a call.
    for i in 0..4 {
        let (body, _) = sensor_lines(&s, i * 10, 10);
        let answer = client.ingest(run.ingest, body);
        assert_eq!(answer["accepted"].as_u64(), Some(0), "{answer}");
    }
    let mut validator = serde_json::Value::Null;
    wait_for(
        "validator counters published",
        Duration::from_secs(30),
        || {
            let (_, now) = client.get_json(&plugins_url);
            validator = now["plugins"]
                .as_array()
                .and_then(|l| l.iter().find(|p| p["stage"] == "validate").cloned())
                .unwrap_or_default();
            validator["events_in"] == 40
        },
    );
    assert_eq!(validator["state"], "quarantined", "{validator}");
    assert_eq!(validator["traps"], 3, "{validator}");
    assert_eq!(validator["calls"], 3, "{validator}");
    assert_eq!(validator["quarantines"], 1, "{validator}");
    assert_eq!(validator["rejected"], 40, "{validator}");
    assert_eq!(validator["kind"], "validator", "{validator}");

    let (code, health) = client.get_json(&format!("http://{}/health", run.status));
    assert_eq!(code, 503, "{health}");
    assert_eq!(health["status"], "unhealthy", "{health}");
    assert!(
        health["reasons"].to_string().contains("quarantined"),
        "{health}"
    );

    let m = client.metrics(run.status);
    let v = [("stage", "validate")];
    assert_eq!(m.get("halyard_plugin_traps_total", &v), 3.0);
    assert_eq!(m.get("halyard_plugin_quarantines_total", &v), 1.0);
    assert_eq!(m.get("halyard_plugin_quarantined", &v), 1.0);

    let log = run.host.stop();
    assert_eq!(
        log.matches("\"message\":\"plugin trap\"").count(),
        3,
        "{log}"
    );
    assert_eq!(
        log.matches("\"message\":\"plugin quarantined\"").count(),
        1,
        "{log}"
    );

    // What the guest printed (its panic message) is in the log for the
    // operator, but never stored with data: a guest may print the events
    // it was given, and the privacy stages never ran over its output.
    assert!(log.contains("panicked on purpose"), "{log}");
    let reasons = dead_letters(&s.data);
    assert_eq!(reasons.len(), 40, "{reasons:?}");
    let trapped: Vec<&String> = reasons
        .iter()
        .filter(|r| r.contains("trapped (Panic)"))
        .collect();
    assert_eq!(trapped.len(), 30, "{reasons:?}");
    assert!(
        reasons
            .iter()
            .all(|r| !r.contains("panicked on purpose") && !r.contains("guest output")),
        "{reasons:?}"
    );
}
