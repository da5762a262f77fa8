//! Input-driven refusals through the real binary (issue 11, item 4): lines
//! whose decoded events break the host's caps are dead-lettered one by one
//! with the reason, the good lines of the same request are stored, no trap
//! is counted and the decoder is never quarantined, however many such
//! requests come. Valid lines whose decoded output would overflow one
//! call's output cap are decoded in smaller calls instead of trapping.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use halyard_test_components as components;

use crate::operate_support::{Client, Running, start};
use crate::support::{Scenario, dead_letters, delivered, file_transport, wait_for};

/// Requests mixing good and bad lines; far more than the 5 traps that
/// quarantine a plugin.
const REQUESTS: usize = 20;
/// Good lines per request.
const GOOD: usize = 10;
/// The bad lines of every request (`lying-decoder` specs: each line becomes
/// exactly these events, unchecked) and the dead-letter reason of each.
const BAD: [(&str, &str); 5] = [
    (
        "source:102400",
        "web: decoder output refused: event 0: source of 102400 bytes (limit 65536)",
    ),
    (
        "attrs:300",
        "web: decoder output refused: event 0: event has 300 attributes (limit 256)",
    ),
    (
        "good,body:1100000",
        "web: decoder output refused: event 1: body of 1100000 bytes (limit 1048576)",
    ),
    (
        "many:10001",
        "web: decoder output refused: 10001 events in one result (limit 10000)",
    ),
    (
        "time:-1",
        "web: decoder output refused: event 0: event time -1 ns is before 1970",
    ),
];

/// The decoder's entry in `/plugins` once it has seen `frames` frames.
fn decoder_after(client: &Client, run: &Running, frames: u64) -> serde_json::Value {
    let url = format!("http://{}/plugins", run.status);
    let mut decoder = serde_json::Value::Null;
    wait_for(
        "decoder counters published",
        Duration::from_secs(30),
        || {
            let (_, now) = client.get_json(&url);
            decoder = now["plugins"]
                .as_array()
                .and_then(|l| l.iter().find(|p| p["stage"] == "decode").cloned())
                .unwrap_or_default();
            decoder["events_in"] == frames
        },
    );
    decoder
}

#[test]
fn bad_lines_never_trap_or_quarantine_the_decoder_nor_cost_their_neighbours() {
    let s = Scenario::new();
    let out = s.path("out.jsonl");
    let run = start(
        &s,
        &file_transport(&out),
        &[(components::JSONL_DECODER, components::LYING_DECODER)],
    );
    let client = Client::new();

    let mut sources = BTreeSet::new();
    for r in 0..REQUESTS {
        let mut lines = Vec::new();
        for g in 0..GOOD {
            let name = format!("r{r}-{g}");
            lines.push(format!("good:{name}"));
            sources.insert(name);
            if let Some((bad, _)) = BAD.get(g) {
                lines.push(bad.to_string());
            }
        }
        let answer = client.ingest(run.ingest, lines.join("\n").into_bytes());
        assert_eq!(answer["accepted"], GOOD, "request {r}: {answer}");
        assert_eq!(answer["decode_errors"], BAD.len(), "request {r}: {answer}");
        assert_eq!(answer["rejected"], 0, "request {r}: {answer}");
    }

    let frames = (REQUESTS * (GOOD + BAD.len())) as u64;
    let decoder = decoder_after(&client, &run, frames);
    let refused = (REQUESTS * BAD.len()) as u64;
    assert_eq!(decoder["state"], "active", "{decoder}");
    assert_eq!(decoder["traps"], 0, "{decoder}");
    assert_eq!(decoder["quarantines"], 0, "{decoder}");
    assert_eq!(
        decoder["calls"], REQUESTS,
        "one call per request: {decoder}"
    );
    assert_eq!(decoder["refused"], refused, "{decoder}");
    assert_eq!(decoder["rejected"], refused, "{decoder}");
    assert_eq!(decoder["events_out"], REQUESTS * GOOD, "{decoder}");

    // A good batch afterwards is processed normally.
    let after: Vec<String> = (0..25).map(|i| format!("good:after-{i}")).collect();
    sources.extend(after.iter().map(|l| l["good:".len()..].to_string()));
    let answer = client.ingest(run.ingest, after.join("\n").into_bytes());
    assert_eq!(answer["accepted"], 25, "{answer}");
    assert_eq!(answer["decode_errors"], 0, "{answer}");

    let m = client.metrics(run.status);
    let d = [("stage", "decode")];
    assert_eq!(
        m.get("halyard_stage_output_refused_total", &d),
        refused as f64
    );
    assert_eq!(m.get("halyard_plugin_traps_total", &d), 0.0);
    assert_eq!(m.get("halyard_plugin_quarantined", &d), 0.0);
    let (code, health) = client.get_json(&format!("http://{}/health", run.status));
    assert_eq!(code, 200, "{health}");

    let total = REQUESTS * GOOD + 25;
    wait_for("every good line delivered", Duration::from_secs(60), || {
        delivered(&out).len() >= total
    });
    let log = run.host.stop();
    assert!(!log.contains("plugin quarantined"), "{log}");
    assert!(!log.contains("\"message\":\"plugin trap\""), "{log}");

    let events = delivered(&out);
    assert_eq!(events.len(), total);
    let got: BTreeSet<String> = events
        .iter()
        .map(|e| e["source"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(got, sources);

    let mut by_reason = BTreeMap::<String, usize>::new();
    for reason in dead_letters(&s.data) {
        *by_reason.entry(reason).or_default() += 1;
    }
    let expected: BTreeMap<String, usize> = BAD
        .iter()
        .map(|(_, reason)| (reason.to_string(), REQUESTS))
        .collect();
    assert_eq!(by_reason, expected);
}

/// One line of the request below: 256 string attributes (the most an event
/// may carry), so the decoded output is ~3× the line's size.
fn wide_line(i: usize) -> String {
    let attrs: Vec<String> = (0..256)
        .map(|a| format!("\"a{a:03}\":\"{}\"", "x".repeat(14)))
        .collect();
    format!(
        "{{\"device\":\"d{i:04}\",\"metric\":\"temp\",\"value\":1.5,{}}}",
        attrs.join(",")
    )
}

#[test]
fn valid_lines_whose_output_would_overflow_one_call_are_decoded_in_smaller_calls() {
    let s = Scenario::new();
    let out = s.path("out.jsonl");
    let run = start(&s, &file_transport(&out), &[]);
    let client = Client::new();

    // ~6 MB of lines decode into ~18 MB of events: over the 16 MiB output
    // cap of one call, had the 1000 lines been one call.
    const LINES: usize = 1000;
    let lines: Vec<String> = (0..LINES).map(wide_line).collect();
    let len = lines[0].len();
    assert!(lines.iter().all(|l| l.len() == len));
    let answer = client.ingest(run.ingest, lines.join("\n").into_bytes());
    assert_eq!(answer["accepted"], LINES, "{answer}");
    assert_eq!(answer["decode_errors"], 0, "{answer}");

    let decoder = decoder_after(&client, &run, LINES as u64);
    let per_call = halyard::pipeline::MAX_BYTES_PER_CALL / len;
    assert_eq!(decoder["calls"], LINES.div_ceil(per_call), "{decoder}");
    assert_eq!(decoder["traps"], 0, "{decoder}");
    assert_eq!(decoder["state"], "active", "{decoder}");

    wait_for("every line delivered", Duration::from_secs(60), || {
        delivered(&out).len() >= LINES
    });
    run.host.stop();
    let events = delivered(&out);
    assert_eq!(events.len(), LINES);
    assert!(
        events
            .iter()
            .all(|e| e["attributes"].as_object().map(|a| a.len()) == Some(256)),
        "{}",
        events[0]
    );
    assert!(dead_letters(&s.data).is_empty());
}
