//! Input-driven refusals through the real binary (issue 11, item 4): lines
//! whose decoded events break the host's caps are dead-lettered one by one
//! with the reason, the good lines of the same request are stored, no trap
//! is counted and the decoder is never quarantined, however many such
//! requests come. Valid lines whose decoded output would overflow one
//! call's output cap are decoded in smaller calls instead of trapping. A
//! source's and a privacy policy's over-cap events are refused one by one
//! too (driven through the pipeline library, so every poll is counted).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use halyard::config::HostConfig;
use halyard::pipeline::{IngestReport, Pipeline};
use halyard::plugin::{AttrValue, Attribute, Event, EventId, PluginKind, Runtime};
use halyard_buffer::{Buffer, BufferConfig};
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

/// The pipeline `halyard run` drives, built from a config with the lying
/// source and the lying privacy policy, on a real SQLite buffer in `dir`.
fn liar_pipeline(dir: &Path, pattern: &str) -> (Pipeline, Arc<Buffer>) {
    let text = format!(
        r#"
[host]
data_dir = "{dir}"

[[input]]
type = "source"
name = "liar"
source = {{ plugin = "{source}", limits = {{ deadline_ms = 5000 }}, config = {{ pattern = "{pattern}" }} }}

[[stages.privacy]]
plugin = "{privacy}"
limits = {{ deadline_ms = 5000 }}

[transport]
type = "file"
path = "{dir}/out.jsonl"
"#,
        dir = dir.display(),
        source = components::LYING_SOURCE,
        privacy = components::LYING_PRIVACY,
    );
    let config = HostConfig::parse(&dir.join("halyard.toml"), &text, |_| None).expect("config");
    let runtime = Runtime::new(Some(dir.join("cache"))).expect("runtime");
    let (buffer, _) =
        Buffer::open(BufferConfig::new(dir.join("buffer.db"), 1 << 30)).expect("buffer");
    let buffer = Arc::new(buffer);
    let pipeline = Pipeline::build(&config, &runtime, buffer.clone()).expect("pipeline");
    (pipeline, buffer)
}

/// A reading that tells the lying privacy policy to rewrite it into the
/// first event of `lie` (a `lying-events` spec), or a plain one.
fn event(lie: Option<&str>) -> Event {
    Event {
        id: EventId { hi: 0, lo: 0 },
        time_ns: halyard::plugin::host::wall_clock_ns(),
        source: "d1".into(),
        kind: "temp".into(),
        value: Some(1.0),
        unit: None,
        attributes: lie
            .map(|spec| Attribute {
                key: "lie".into(),
                value: AttrValue::Str(spec.into()),
            })
            .into_iter()
            .collect(),
        body: None,
    }
}

#[test]
fn a_sources_and_a_privacy_policys_over_cap_events_are_refused_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let (mut pipeline, buffer) =
        liar_pipeline(dir.path(), "good:a,source:102400,good:b,attrs:300,time:-1");
    const POLLS: u64 = 20;
    for poll in 0..POLLS {
        let report = pipeline.poll_source(0, 100).expect("commit");
        let expected = IngestReport {
            accepted: 2,
            rejected: 3,
            ..IngestReport::default()
        };
        assert_eq!(report, expected, "poll {poll}");
    }
    for batch in 0..POLLS {
        let events = vec![
            event(None),
            event(Some("source:102400")),
            event(Some("good:masked")),
            event(Some("attrs:300")),
        ];
        let report = pipeline.ingest_events(events).expect("commit");
        let expected = IngestReport {
            accepted: 2,
            privacy_dropped: 2,
            ..IngestReport::default()
        };
        assert_eq!(report, expected, "batch {batch}");
    }
    assert_eq!(pipeline.totals.accepted, 4 * POLLS);

    // The source is called once per poll; the privacy policy once per poll
    // and once per batch (the polled events go through it too), and once
    // more per poll to screen the refused events before they are
    // dead-lettered (not counted as events in or out).
    for (kind, _, stage) in pipeline.stages_with_roles() {
        assert!(!stage.is_quarantined(), "{kind}");
        let c = &stage.counters;
        assert_eq!(c.traps, 0, "{kind}: {c:?}");
        match kind {
            PluginKind::Source => assert_eq!(
                (c.calls, c.events_out, c.rejected, c.refused),
                (POLLS, 2 * POLLS, 3 * POLLS, 3 * POLLS),
                "{c:?}"
            ),
            PluginKind::Privacy => assert_eq!(
                (c.calls, c.events_in, c.events_out, c.dropped, c.refused),
                (3 * POLLS, 6 * POLLS, 4 * POLLS, 2 * POLLS, 2 * POLLS),
                "{c:?}"
            ),
            other => panic!("unexpected stage {other}"),
        }
    }

    let dead = buffer.dead_letters(1000).expect("dead letters");
    let mut by_reason = BTreeMap::<String, u64>::new();
    for d in &dead {
        *by_reason.entry(d.reason.clone()).or_default() += 1;
    }
    let expected: BTreeMap<String, u64> = [
        "source of 102400 bytes (limit 65536)",
        "event has 300 attributes (limit 256)",
        "event time -1 ns is before 1970",
    ]
    .iter()
    .map(|r| (format!("lying-source: source output refused: {r}"), POLLS))
    .collect();
    assert_eq!(by_reason, expected);
    let ids: BTreeSet<[u8; 16]> = dead.iter().map(|d| d.id).collect();
    assert_eq!(ids.len(), dead.len(), "each refused event has its own id");
}
