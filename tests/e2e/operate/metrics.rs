//! `/metrics` parses with a real Prometheus text parser, and its counters
//! move by exactly what a known input implies.

use std::time::Duration;

use crate::pipeline_support::{Scenario, file_transport, wait_for};
use crate::support::{Client, sensor_lines, start};

#[test]
fn counters_move_by_exact_amounts_for_a_known_input() {
    let s = Scenario::new();
    let out = s.path("out.jsonl");
    let run = start(&s, &file_transport(&out), &[]);
    let client = Client::new();

    let mut negative = 0;
    for part in 0..3 {
        let (body, neg) = sensor_lines(&s, part * 250, 250);
        negative += neg;
        client.ingest(run.ingest, body);
    }
    let valid = 750 - negative;
    assert!(negative > 0 && valid > 0);

    let mut m = client.metrics(run.status);
    wait_for("every event shipped", Duration::from_secs(60), || {
        m = client.metrics(run.status);
        m.get("halyard_buffer_acked_events_total", &[]) == valid as f64
    });
    let stage = |stage: &str, what: &str| {
        m.get(
            &format!("halyard_stage_events_{what}_total"),
            &[("stage", stage)],
        )
    };
    let (v, n) = (valid as f64, negative as f64);
    assert_eq!(stage("decode", "in"), 750.0);
    assert_eq!(stage("decode", "out"), 750.0);
    assert_eq!(stage("validate", "in"), 750.0);
    assert_eq!(stage("validate", "rejected"), n);
    assert_eq!(stage("validate", "out"), v);
    assert_eq!(stage("privacy", "in"), v);
    assert_eq!(stage("privacy", "out"), v);
    assert_eq!(stage("sample", "out"), v);
    assert_eq!(stage("sample", "dropped"), 0.0);
    // One call per POST for each stage, each timed; privacy is called a
    // second time per POST to screen its rejects before they are
    // dead-lettered (every POST has negative values).
    for st in ["decode", "validate", "privacy", "sample"] {
        let calls = if st == "privacy" { 6.0 } else { 3.0 };
        assert_eq!(
            m.get("halyard_plugin_calls_total", &[("stage", st)]),
            calls,
            "{st}"
        );
        assert_eq!(
            m.get(
                "halyard_plugin_call_duration_seconds_count",
                &[("stage", st)]
            ),
            calls,
            "{st}"
        );
        assert_eq!(m.get("halyard_plugin_traps_total", &[("stage", st)]), 0.0);
    }
    let decode = [("stage", "decode"), ("input", "web")];
    assert_eq!(m.get("halyard_stage_events_in_total", &decode), 750.0);

    assert_eq!(m.get("halyard_buffer_appended_events_total", &[]), v);
    assert_eq!(m.get("halyard_buffer_events", &[]), 0.0);
    assert_eq!(m.get("halyard_buffer_dead_letters", &[]), n);
    assert!(m.get("halyard_buffer_dead_letter_size_bytes", &[]) > n * 64.0);
    assert_eq!(m.get("halyard_buffer_dead_letters_evicted_total", &[]), 0.0);
    assert_eq!(
        m.get("halyard_buffer_dead_letters_evicted_size_bytes_total", &[]),
        0.0
    );
    assert_eq!(m.get("halyard_buffer_evicted_events_total", &[]), 0.0);
    assert_eq!(m.get("halyard_buffer_dropped_events_total", &[]), 0.0);
    assert_eq!(m.get("halyard_transport_batches_failed_total", &[]), 0.0);
    assert_eq!(m.get("halyard_transport_batches_retried_total", &[]), 0.0);
    assert_eq!(
        m.get("halyard_transport_breaker_state", &[("state", "closed")]),
        1.0
    );
    // The file transport writes each delivered body plus a newline.
    let text = std::fs::read_to_string(&out).unwrap();
    let batches = text.lines().count() as f64;
    assert_eq!(m.get("halyard_transport_batches_sent_total", &[]), batches);
    assert_eq!(
        m.get("halyard_transport_sent_bytes_total", &[]),
        text.len() as f64 - batches
    );
    for name in [
        "process_cpu_seconds_total",
        "process_resident_memory_bytes",
        "process_open_fds",
        "halyard_buffer_filesystem_free_bytes",
        "halyard_uptime_seconds",
    ] {
        assert!(m.get(name, &[]) > 0.0, "{name} in {:?}", m.names());
    }
    run.host.stop();
}
