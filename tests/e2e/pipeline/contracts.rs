//! A pipeline mixing contract versions: a 0.1.0 privacy policy
//! (`legacy-redact`) between a 0.2.0 source, validator and sampler, on a
//! real SQLite buffer, with exact counts; and a second pipeline worker
//! built from the first one's loaded plugins.

use std::path::Path;
use std::sync::Arc;

use halyard::config::HostConfig;
use halyard::pipeline::{IngestReport, NativeStages, Pipeline};
use halyard::plugin::{AttrValue, Attribute, Contract, Event, EventId, Runtime};
use halyard_buffer::{Buffer, BufferConfig};
use halyard_test_components as components;

/// The mixed pipeline's config, its four plugins copied into
/// `dir/plugins` (so a test may remove them).
fn mixed_config(dir: &Path) -> HostConfig {
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let copy = |from: &str, name: &str| {
        let to = plugins.join(name);
        std::fs::copy(from, &to).unwrap();
        to.display().to_string()
    };
    let text = format!(
        r#"
[host]
data_dir = "{dir}"

[[input]]
type = "source"
name = "sim"
source = {{ plugin = "{source}", limits = {{ deadline_ms = 5000 }} }}

[[stages.validate]]
plugin = "{validator}"
limits = {{ deadline_ms = 5000 }}
config = {{ min = 0 }}

[[stages.privacy]]
plugin = "{legacy}"
limits = {{ deadline_ms = 5000 }}
config = {{ drop_keys = "operator", block_sources = "blocked" }}

[[stages.sample]]
plugin = "{sampler}"
limits = {{ deadline_ms = 5000 }}
config = {{ fraction = 1 }}

[transport]
type = "file"
path = "{dir}/out.jsonl"
"#,
        dir = dir.display(),
        source = copy(components::SIM_SOURCE, "source.wasm"),
        validator = copy(components::RANGE_VALIDATOR, "validator.wasm"),
        legacy = copy(components::LEGACY_REDACT, "privacy.wasm"),
        sampler = copy(components::FRACTION_SAMPLER, "sampler.wasm"),
    );
    HostConfig::parse(&dir.join("halyard.toml"), &text, |_| None).expect("config")
}

fn mixed_pipeline(dir: &Path) -> (Pipeline, Arc<Buffer>) {
    let config = mixed_config(dir);
    let runtime = Runtime::new(Some(dir.join("cache"))).expect("runtime");
    let (buffer, _) =
        Buffer::open(BufferConfig::new(dir.join("buffer.db"), 1 << 30)).expect("buffer");
    let buffer = Arc::new(buffer);
    let pipeline = Pipeline::build(&config, &runtime, buffer.clone()).expect("pipeline");
    (pipeline, buffer)
}

/// What the mixed chain makes of events 0..100: 20 below the minimum;
/// of the other 80, 10 blocked.
fn hundred_events_report() -> IngestReport {
    IngestReport {
        accepted: 70,
        rejected: 20,
        privacy_dropped: 10,
        ..IngestReport::default()
    }
}

/// Event `i`: every fifth is below the minimum, every tenth (of the rest)
/// from a blocked source; all carry an `operator` to drop.
fn event(i: u64) -> Event {
    Event {
        id: EventId { hi: 0, lo: 0 },
        time_ns: halyard::plugin::host::wall_clock_ns(),
        source: if i % 10 == 1 { "blocked" } else { "d1" }.into(),
        kind: "temp".into(),
        value: Some(if i.is_multiple_of(5) { -1.0 } else { i as f64 }),
        unit: Some("celsius".into()),
        attributes: vec![Attribute {
            key: "operator".into(),
            value: AttrValue::Str("alice".into()),
        }],
        body: None,
    }
}

#[test]
fn a_0_1_guest_runs_between_0_2_guests_with_exact_counts() {
    let dir = tempfile::tempdir().unwrap();
    let (mut pipeline, _buffer) = mixed_pipeline(dir.path());
    let contracts: Vec<Contract> = pipeline
        .stages()
        .filter_map(|s| s.plugin().map(|p| p.contract))
        .collect();
    assert_eq!(
        contracts,
        [
            Contract::V0_2,
            Contract::V0_2,
            Contract::V0_1,
            Contract::V0_2
        ],
        "source, validator, privacy, sampler"
    );
    for batch in 0..5 {
        let events: Vec<Event> = (0..100).map(event).collect();
        let report = pipeline.ingest_events(events).expect("commit");
        assert_eq!(report, hundred_events_report(), "batch {batch}");
    }
    // The 0.2.0 source feeds the same chain.
    let report = pipeline.poll_source(0, 10).expect("poll");
    assert_eq!(
        report.accepted + report.rejected + report.privacy_dropped + report.sampled_out,
        10,
        "{report:?}"
    );
    assert_eq!(pipeline.totals.accepted, 350 + report.accepted);
    for stage in pipeline.stages() {
        assert_eq!(stage.counters.traps, 0, "{}", stage.name);
    }
}

#[test]
fn a_second_worker_starts_from_the_first_workers_plugins_without_loading_them_again() {
    let dir = tempfile::tempdir().unwrap();
    let config = mixed_config(dir.path());
    let runtime = Runtime::new(Some(dir.path().join("cache"))).expect("runtime");
    let (buffer, _) =
        Buffer::open(BufferConfig::new(dir.path().join("buffer.db"), 1 << 30)).expect("buffer");
    let buffer = Arc::new(buffer);
    let natives = NativeStages::default();
    let mut leader =
        Pipeline::build_with(&config, &runtime, buffer.clone(), &natives).expect("leader");
    // The files are gone: a follower that loaded them again would fail.
    std::fs::remove_dir_all(dir.path().join("plugins")).unwrap();
    let mut follower = Pipeline::build_follower(&config, &runtime, buffer, &natives, &leader)
        .expect("a follower needs no plugin file");
    let leads: Vec<_> = leader.stages().map(|s| s.plugin().cloned()).collect();
    let follows: Vec<_> = follower.stages().map(|s| s.plugin().cloned()).collect();
    assert_eq!(follows.len(), 4, "source, validator, privacy, sampler");
    for (lead, follow) in leads.iter().zip(&follows) {
        let (lead, follow) = (lead.as_ref().unwrap(), follow.as_ref().unwrap());
        assert!(Arc::ptr_eq(lead, follow), "{} is shared", lead.info.name);
    }
    // Each worker runs its own instances, with the same outcome.
    for pipeline in [&mut leader, &mut follower] {
        let events: Vec<Event> = (0..100).map(event).collect();
        let report = pipeline.ingest_events(events).expect("commit");
        assert_eq!(report, hundred_events_report());
    }
    assert_eq!(leader.totals.accepted, 70);
    assert_eq!(follower.totals.accepted, 70);
}
