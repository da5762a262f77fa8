//! Each example guest's exact outcomes on fixed input.

use halyard::plugin::{
    Action, AttrValue, Event, EventId, Frame, LoadError, Plugin, PluginKind, Verdict,
};
use halyard_test_components as components;
use sha2::{Digest, Sha256};
use std::sync::Arc;

use crate::support::{TestRuntime, attr, now_ns, reading, runtime, with_attr};

fn reject(reason: &str) -> Verdict {
    Verdict::Reject(reason.to_string())
}

#[test]
fn range_validator_accepts_and_rejects_with_exact_reasons() {
    let rt = runtime();
    let plugin = rt.load(
        components::RANGE_VALIDATOR,
        PluginKind::Validator,
        &[
            ("min.temp", "0"),
            ("max.temp", "100"),
            ("max_future_s", "300"),
            ("max_past_s", "3600"),
        ],
    );
    assert_eq!(plugin.info.name, "range-validator");
    let hour = 3_600_000_000_000i64;
    let mut future = reading("d1", "temp", Some(20.0));
    future.time_ns = now_ns() + hour;
    let mut past = reading("d1", "temp", Some(20.0));
    past.time_ns = now_ns() - 2 * hour;
    let events = vec![
        reading("d1", "temp", Some(21.5)),
        reading("d1", "temp", Some(-3.5)),
        reading("d1", "temp", Some(120.0)),
        reading("d1", "temp", None),
        reading("d1", "temp", Some(f64::NAN)),
        reading("d1", "temp", Some(f64::INFINITY)),
        reading("", "temp", Some(1.0)),
        reading("d1", "", Some(1.0)),
        future,
        past,
        reading("d2", "humidity", Some(500.0)),
        reading("d1", "temp", Some(0.0)),
        reading("d1", "temp", Some(100.0)),
    ];
    let verdicts = plugin.instance().validate(&events).expect("validate");
    let expected = vec![
        Verdict::Accept,
        reject("value -3.5 is below the minimum 0 for temp"),
        reject("value 120 is above the maximum 100 for temp"),
        reject("missing value"),
        reject("value is not finite"),
        reject("value is not finite"),
        reject("missing source"),
        reject("missing kind"),
        reject("time is 3599s in the future (limit 300s)"),
        reject("time is 7200s in the past (limit 3600s)"),
        Verdict::Accept,
        Verdict::Accept,
        Verdict::Accept,
    ];
    assert_eq!(verdicts.len(), expected.len());
    for (i, (got, want)) in verdicts.iter().zip(&expected).enumerate() {
        // The time checks round down whole seconds; allow the clock to tick.
        if let (Verdict::Reject(g), Verdict::Reject(w)) = (got, want)
            && w.starts_with("time is")
        {
            let ok =
                g == w || g.replace("3598s", "3599s") == *w || g.replace("7201s", "7200s") == *w;
            assert!(ok, "event {i}: got {g:?}, want {w:?}");
            continue;
        }
        assert_eq!(got, want, "event {i}");
    }
}

#[test]
fn range_validator_refuses_bad_config_naming_the_key() {
    let rt = runtime();
    let err = rt
        .try_load(
            components::RANGE_VALIDATOR,
            PluginKind::Validator,
            &[("min.temp", "cold")],
        )
        .expect_err("a non-numeric minimum must be refused");
    match &err {
        LoadError::Init { key, .. } => assert_eq!(key.as_deref(), Some("min.temp"), "{err}"),
        other => panic!("expected an init error, got {other}"),
    }
}

fn frame(text: &[u8]) -> Frame {
    Frame {
        data: text.to_vec(),
        content_type: "application/x-ndjson".to_string(),
        origin: "file:/tmp/sensors.jsonl".to_string(),
    }
}

#[test]
fn jsonl_decoder_maps_fields_and_isolates_bad_frames() {
    let rt = runtime();
    let plugin = rt.load(components::JSONL_DECODER, PluginKind::Decoder, &[]);
    let frames = vec![
        frame(br#"{"device":"d7","metric":"temp","value":21.5,"ts":1700000000123,"operator":"alice","seq":4,"ok":true,"ratio":0.5,"meta":{"fw":"1.2"}}"#),
        frame(br#"{"device":"#),
        frame(b"[1,2,3]"),
        frame(br#"{"device":"d1","metric":"temp","value":"hot"}"#),
        frame(b"{\"device\":\"a\",\"metric\":\"temp\",\"value\":1}\n\n{\"device\":\"b\",\"metric\":\"temp\",\"value\":2}\r\n"),
        frame(b"{\"device\":\"a\",\"value\":1}\n{oops"),
        frame(b"\xff\xfe{}"),
        frame(br#"{"metric":"temp","value":null}"#),
        frame(b""),
    ];
    let results = plugin.instance().decode(&frames).expect("decode");
    assert_eq!(results.len(), frames.len());

    let first = results[0].as_ref().expect("frame 0 decodes");
    assert_eq!(first.len(), 1);
    let e = &first[0];
    assert_eq!(
        (e.source.as_str(), e.kind.as_str(), e.value),
        ("d7", "temp", Some(21.5))
    );
    assert_eq!(e.time_ns, 1_700_000_000_123_000_000);
    assert_eq!(attr(e, "operator"), Some("alice"));
    let typed = |k: &str| {
        e.attributes
            .iter()
            .find(|a| a.key == k)
            .map(|a| a.value.clone())
    };
    assert_eq!(typed("seq"), Some(AttrValue::Int(4)));
    assert_eq!(typed("ok"), Some(AttrValue::Boolean(true)));
    assert_eq!(typed("ratio"), Some(AttrValue::Float(0.5)));
    assert_eq!(
        e.attributes.len(),
        4,
        "device, metric, value, ts and meta are not attributes"
    );
    let body: serde_json::Value = serde_json::from_str(e.body.as_deref().expect("body")).unwrap();
    assert_eq!(body, serde_json::json!({"meta": {"fw": "1.2"}}));

    for (i, prefix) in [(1, "line 1: "), (2, "line 1: ")] {
        let err = results[i].as_ref().expect_err("malformed frame");
        assert!(err.starts_with(prefix), "frame {i}: {err}");
    }
    assert_eq!(
        results[3].as_ref().unwrap_err(),
        "line 1: field \"value\" is not a number"
    );
    let two = results[4].as_ref().expect("two good lines");
    assert_eq!(
        two.iter().map(|e| e.source.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    assert!(
        results[5].as_ref().unwrap_err().starts_with("line 2: "),
        "all-or-nothing per frame"
    );
    assert_eq!(results[6].as_ref().unwrap_err(), "line 1: not UTF-8");
    let defaulted = &results[7].as_ref().expect("null value is allowed")[0];
    assert_eq!(
        defaulted.source, "file:/tmp/sensors.jsonl",
        "source defaults to the origin"
    );
    assert_eq!(defaulted.value, None);
    assert!(results[8].as_ref().expect("empty frame").is_empty());
}

fn salted(salt: &str, value: &str) -> String {
    let digest = Sha256::digest(format!("{salt}{value}").as_bytes());
    format!("h:{}", &hex::encode(digest)[..16])
}

/// redact-privacy dropping `email`, hashing `operator` with salt
/// `s3cret`, and blocking `test-*` and `blocked`.
fn redact_privacy(rt: &TestRuntime) -> Arc<Plugin> {
    redact_privacy_built(rt, components::REDACT_PRIVACY)
}

/// The example policy's config on `path`: the example (contract 0.4.0) or
/// the same policy built for another contract version.
fn redact_privacy_built(rt: &TestRuntime, path: &str) -> Arc<Plugin> {
    rt.load(
        path,
        PluginKind::Privacy,
        &[
            ("drop_keys", "email"),
            ("hash_keys", "operator"),
            ("salt", "s3cret"),
            ("block_sources", "test-*, blocked"),
        ],
    )
}

/// A reading with an `operator` and an `email` attribute.
fn sensitive() -> Event {
    with_attr(
        with_attr(reading("d1", "temp", Some(20.0)), "operator", "alice"),
        "email",
        "alice@example.com",
    )
}

#[test]
fn redact_privacy_drops_hashes_and_blocks() {
    let rt = runtime();
    let plugin = redact_privacy(&rt);
    let sensitive = sensitive();
    let events = vec![
        sensitive.clone(),
        with_attr(reading("d2", "temp", Some(20.0)), "site", "north"),
        reading("test-rig-4", "temp", Some(20.0)),
        reading("blocked", "temp", Some(20.0)),
        reading("blocked-not", "temp", Some(20.0)),
    ];
    let actions = plugin.instance().redact(&events).expect("redact");
    assert_eq!(actions.len(), 5);
    match &actions[0] {
        Action::Rewrite(e) => {
            assert_eq!(
                (e.id.hi, e.id.lo),
                (sensitive.id.hi, sensitive.id.lo),
                "id kept"
            );
            assert_eq!(attr(e, "email"), None);
            assert_eq!(
                attr(e, "operator"),
                Some(salted("s3cret", "alice").as_str())
            );
            assert_eq!(e.attributes.len(), 1);
        }
        other => panic!("expected a rewrite, got {other:?}"),
    }
    assert_eq!(actions[1], Action::Keep);
    assert_eq!(actions[2], Action::Drop);
    assert_eq!(actions[3], Action::Drop);
    assert_eq!(actions[4], Action::Keep);
}

#[test]
fn redact_privacy_edits_in_place_what_it_would_rewrite() {
    let rt = runtime();
    // A 0.4.0 answer's edits and a 0.2.0 patch apply by one rule.
    for path in [components::REDACT_PRIVACY, components::REDACT_V0_2] {
        let plugin = redact_privacy_built(&rt, path);
        let sensitive = sensitive();
        let plain = with_attr(reading("d2", "temp", Some(20.0)), "site", "north");
        let original = vec![sensitive, plain, reading("blocked", "temp", Some(20.0))];
        let mut inst = plugin.instance();
        let copied = inst.redact_checked(&original).expect("redact");
        let mut events = original.clone();
        let edited = inst.redact_in_place(&mut events).expect("redact");
        // The edit is made where the event lies: kept as it now is.
        assert_eq!(
            edited.actions,
            [Action::Keep, Action::Keep, Action::Drop],
            "{path}"
        );
        assert!(edited.refused.is_empty());
        assert_eq!(attr(&events[0], "email"), None);
        assert_eq!(
            attr(&events[0], "operator"),
            Some(salted("s3cret", "alice").as_str())
        );
        assert_eq!(events[0].id, original[0].id);
        assert_eq!(
            events[1], original[1],
            "an event kept unedited is untouched"
        );
        // The copying form answers the same edit as a rewrite of a copy.
        assert_eq!(copied.actions[0], Action::Rewrite(events[0].clone()));
        assert_eq!(copied.actions[1..], [Action::Keep, Action::Drop]);
    }
}

#[test]
fn a_second_worker_runs_the_first_workers_loaded_plugin() {
    use halyard::pipeline::{QuarantinePolicy, Stage};
    let rt = runtime();
    let policy = QuarantinePolicy {
        threshold: 3,
        window: std::time::Duration::from_secs(60),
    };
    let config = [("hash_keys", "operator"), ("salt", "s")];
    // Each worker's pipeline loads the file on its own, as at start.
    let first = rt.load(components::REDACT_PRIVACY, PluginKind::Privacy, &config);
    let second = rt.load(components::REDACT_PRIVACY, PluginKind::Privacy, &config);
    assert!(!Arc::ptr_eq(&first, &second), "two loads, two copies");
    let leader = Stage::new("redact".into(), &first, policy);
    let mut follower = Stage::new("redact".into(), &second, policy);
    follower.share_health(&leader);
    let runs = follower.plugin().expect("a component stage");
    assert!(Arc::ptr_eq(runs, &first), "one copy of the code for both");
    drop(follower);
    assert_eq!(Arc::strong_count(&second), 1, "the second load is let go");
}

#[test]
fn redact_privacy_requires_a_salt_to_hash() {
    let rt = runtime();
    let err = rt
        .try_load(
            components::REDACT_PRIVACY,
            PluginKind::Privacy,
            &[("hash_keys", "operator")],
        )
        .expect_err("hashing without a salt must be refused");
    match &err {
        LoadError::Init { key, message } => {
            assert_eq!(key.as_deref(), Some("salt"));
            assert!(message.contains("salt must be set"), "{message}");
        }
        other => panic!("expected an init error, got {other}"),
    }
}

/// The sampler's documented decision function, reproduced natively.
fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn keeps(id: &EventId, fraction: f64) -> bool {
    let h = splitmix64(id.hi ^ splitmix64(id.lo));
    fraction >= 1.0 || (h as f64 / 18_446_744_073_709_551_616.0) < fraction
}

fn numbered(n: u64) -> Vec<Event> {
    (0..n)
        .map(|i| {
            let mut e = reading(&format!("d{}", i % 50), "temp", Some(1.0));
            e.id = EventId {
                hi: i,
                lo: i.wrapping_mul(7919),
            };
            e
        })
        .collect()
}

#[test]
fn fraction_sampler_is_deterministic_by_event_id() {
    let rt = runtime();
    let plugin = rt.load(
        components::FRACTION_SAMPLER,
        PluginKind::Sampler,
        &[("fraction", "0.25")],
    );
    let events = numbered(10_000);
    let mut instance = plugin.instance();
    let decisions: Vec<bool> = events
        .chunks(1000)
        .flat_map(|batch| instance.sample(batch).expect("sample"))
        .collect();
    let expected: Vec<bool> = events.iter().map(|e| keeps(&e.id, 0.25)).collect();
    assert_eq!(decisions, expected, "decisions follow the documented hash");
    let kept = decisions.iter().filter(|k| **k).count();
    assert!(
        (2_300..=2_700).contains(&kept),
        "kept {kept} of 10000 at 0.25"
    );
    // The same event gets the same decision from a fresh instance.
    let again = plugin.instance().sample(&events[..100]).expect("sample");
    assert_eq!(again, expected[..100]);
}

#[test]
fn fraction_sampler_caps_each_source_per_second() {
    let rt = runtime();
    let plugin = rt.load(
        components::FRACTION_SAMPLER,
        PluginKind::Sampler,
        &[("fraction", "1"), ("max_per_source_per_s", "3")],
    );
    let second = 1_700_000_000_000_000_000i64;
    let mut events = numbered(10);
    for e in &mut events {
        e.source = "d1".into();
        e.time_ns = second + 10;
    }
    let mut other = numbered(2);
    other[0].source = "d2".into();
    other[0].time_ns = second + 20;
    other[1].source = "d1".into();
    other[1].time_ns = second + 1_000_000_000;
    events.extend(other);
    let decisions = plugin.instance().sample(&events).expect("sample");
    let kept: Vec<usize> = (0..decisions.len()).filter(|i| decisions[*i]).collect();
    assert_eq!(
        kept,
        vec![0, 1, 2, 10, 11],
        "3 from d1 in the first second, then d2, then d1's next second"
    );
}

#[test]
fn sim_source_emits_exactly_per_poll_readings() {
    let rt = runtime();
    let plugin = rt.load(
        components::SIM_SOURCE,
        PluginKind::Source,
        &[
            ("devices", "2"),
            ("metrics", "temperature"),
            ("per_poll", "7"),
            ("fault_rate", "0"),
        ],
    );
    let mut instance = plugin.instance();
    let events = instance.poll(100).expect("poll");
    assert_eq!(events.len(), 7);
    assert!(
        events
            .iter()
            .all(|e| e.kind == "temperature" && e.unit.as_deref() == Some("celsius"))
    );
    assert!(events.iter().all(|e| e.value.is_some_and(f64::is_finite)));
    let mut sources: Vec<&str> = events.iter().map(|e| e.source.as_str()).collect();
    sources.sort();
    sources.dedup();
    assert_eq!(sources, ["sim-0000", "sim-0001"]);
    assert_eq!(instance.poll(5).expect("poll").len(), 5, "capped by max");
}

#[test]
fn sim_source_injects_faults_at_the_configured_rate() {
    let rt = runtime();
    let plugin = rt.load(
        components::SIM_SOURCE,
        PluginKind::Source,
        &[("per_poll", "1000"), ("fault_rate", "1")],
    );
    let events = plugin.instance().poll(1000).expect("poll");
    assert_eq!(events.len(), 1000);
    let faulty = events
        .iter()
        .filter(|e| match e.value {
            None => true,
            Some(v) => !v.is_finite() || !(-100.0..=1000.0).contains(&v),
        })
        .count();
    assert_eq!(faulty, 1000, "fault_rate=1 makes every reading faulty");
}
