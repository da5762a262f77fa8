//! Contract versions: the example guests are built against
//! `halyard:plugin@0.2.0` (flat batches) but for the privacy policy, which
//! the SDK exports as 0.4.0 (a flat answer); `legacy-redact` is the same
//! policy built against 0.1.0 and `redact-v0-2` against 0.2.0, and the
//! host runs all three. The policy built every way gives exactly the same
//! actions: the patch paths (rewrite → patch in the SDK, patch or answer
//! edits → event in the host) change nothing an operator can see.

use halyard::plugin::{
    Action, AttrValue, Attribute, Contract, Event, EventId, PluginKind, Verdict,
};
use halyard_test_components as components;

use crate::support::{reading, runtime, with_attr};

#[test]
fn example_guests_are_0_2_or_0_4_and_the_legacy_guests_are_0_1_and_0_2() {
    let rt = runtime();
    let cases = [
        (components::SIM_SOURCE, PluginKind::Source, Contract::V0_2),
        (
            components::JSONL_DECODER,
            PluginKind::Decoder,
            Contract::V0_2,
        ),
        (
            components::RANGE_VALIDATOR,
            PluginKind::Validator,
            Contract::V0_2,
        ),
        (
            components::REDACT_PRIVACY,
            PluginKind::Privacy,
            Contract::V0_4,
        ),
        (
            components::FRACTION_SAMPLER,
            PluginKind::Sampler,
            Contract::V0_2,
        ),
        (
            components::LEGACY_REDACT,
            PluginKind::Privacy,
            Contract::V0_1,
        ),
        (components::REDACT_V0_2, PluginKind::Privacy, Contract::V0_2),
    ];
    for (path, kind, contract) in cases {
        let plugin = rt.load(path, kind, &[]);
        assert_eq!(plugin.contract, contract, "{path}");
    }
    let privacy = rt.load(components::REDACT_PRIVACY, PluginKind::Privacy, &[]);
    assert_eq!(privacy.contract.to_string(), "halyard:plugin@0.4.0");
}

/// Events that exercise every kind of edit the policy makes: attributes
/// removed, hashed in place, a hashed source, a body with keys to drop and
/// hash, every attribute type, blocked sources, and events left alone.
fn events() -> Vec<Event> {
    let typed = |mut e: Event| {
        e.attributes.extend([
            Attribute {
                key: "seq".into(),
                value: AttrValue::Int(-7),
            },
            Attribute {
                key: "ratio".into(),
                value: AttrValue::Float(0.25),
            },
            Attribute {
                key: "ok".into(),
                value: AttrValue::Boolean(true),
            },
        ]);
        e
    };
    let mut with_body = reading("d3", "log", None);
    with_body.body = Some(r#"{"email":"a@b.c","operator":"carol","msg":"hi","n":[1,2]}"#.into());
    with_body.unit = Some("none".into());
    let mut odd_body = reading("d4", "log", Some(f64::NAN));
    odd_body.body = Some(r#"[1,"operator"]"#.into());
    let mut events = vec![
        with_attr(
            with_attr(reading("d1", "temp", Some(20.0)), "operator", "alice"),
            "email",
            "alice@example.com",
        ),
        typed(with_attr(reading("d1", "temp", Some(-1.0)), "email", "x@y")),
        typed(with_attr(reading("d2", "hum", None), "operator", "bob")),
        with_attr(reading("d2", "hum", Some(3.0)), "site", "north"),
        with_body,
        odd_body,
        reading("blocked", "temp", Some(1.0)),
        reading("test-rig-9", "temp", Some(1.0)),
        reading("blocked-not", "temp", Some(1.0)),
        with_attr(
            with_attr(reading("d5", "temp", Some(2.0)), "email", "e"),
            "operator",
            "dave",
        ),
    ];
    // Distinct ids, so an action given to the wrong event would show.
    for (i, e) in events.iter_mut().enumerate() {
        e.id = EventId {
            hi: 1,
            lo: i as u64 + 1,
        };
    }
    events
}

#[test]
fn one_policy_built_for_0_1_0_2_and_0_4_gives_identical_actions() {
    let rt = runtime();
    let configs: [&[(&str, &str)]; 3] = [
        &[
            ("drop_keys", "email"),
            ("hash_keys", "operator"),
            ("salt", "s3cret"),
            ("block_sources", "test-*, blocked"),
        ],
        &[
            ("hash_source", "true"),
            ("salt", "x"),
            ("drop_keys", "seq, ratio"),
        ],
        &[("drop_keys", "operator")],
    ];
    let events = events();
    for config in configs {
        let new = rt.load(components::REDACT_PRIVACY, PluginKind::Privacy, config);
        let old = rt.load(components::LEGACY_REDACT, PluginKind::Privacy, config);
        let mid = rt.load(components::REDACT_V0_2, PluginKind::Privacy, config);
        let new_actions = new.instance().redact(&events).expect("0.4.0 redact");
        let old_actions = old.instance().redact(&events).expect("0.1.0 redact");
        let mid_actions = mid.instance().redact(&events).expect("0.2.0 redact");
        assert_eq!(new_actions.len(), events.len());
        // NaN != NaN: compare the debug form, which prints it.
        assert_eq!(
            format!("{new_actions:?}"),
            format!("{old_actions:?}"),
            "config {config:?}"
        );
        assert_eq!(
            format!("{mid_actions:?}"),
            format!("{old_actions:?}"),
            "config {config:?}"
        );
        let rewrites = new_actions
            .iter()
            .filter(|a| matches!(a, Action::Rewrite(_)))
            .count();
        assert!(rewrites >= 3, "config {config:?}: {new_actions:?}");
        // One batch again: the instance (and its cached typed function)
        // is reused, with the same result.
        let mut instance = new.instance();
        let first = instance.redact(&events).expect("first");
        let second = instance.redact(&events).expect("second");
        assert_eq!(format!("{first:?}"), format!("{second:?}"));
    }
}

#[test]
fn the_0_1_and_0_2_guests_run_in_one_instance_pool_in_turn() {
    let rt = runtime();
    let config: &[(&str, &str)] = &[("drop_keys", "operator")];
    let validator = rt.load(
        components::RANGE_VALIDATOR,
        PluginKind::Validator,
        &[("min", "0")],
    );
    let legacy = rt.load(components::LEGACY_REDACT, PluginKind::Privacy, config);
    let sampler = rt.load(
        components::FRACTION_SAMPLER,
        PluginKind::Sampler,
        &[("fraction", "1")],
    );
    let (mut v, mut p, mut s) = (
        validator.started_instance(),
        legacy.started_instance(),
        sampler.started_instance(),
    );
    for round in 0..3 {
        let events: Vec<Event> = (0..50)
            .map(|i| {
                with_attr(
                    reading("d1", "temp", Some(f64::from(i) - 10.0)),
                    "operator",
                    "alice",
                )
            })
            .collect();
        let verdicts = v.validate(&events).expect("validate");
        let valid: Vec<Event> = events
            .into_iter()
            .zip(&verdicts)
            .filter(|(_, v)| matches!(v, Verdict::Accept))
            .map(|(e, _)| e)
            .collect();
        assert_eq!(valid.len(), 40, "round {round}");
        let actions = p.redact(&valid).expect("redact");
        let redacted: Vec<Event> = actions
            .into_iter()
            .map(|a| match a {
                Action::Rewrite(e) => e,
                other => panic!("expected a rewrite, got {other:?}"),
            })
            .collect();
        assert!(redacted.iter().all(|e| e.attributes.is_empty()));
        let keep = s.sample(&redacted).expect("sample");
        assert_eq!(keep.iter().filter(|k| **k).count(), 40, "round {round}");
    }
    assert_eq!((v.traps(), p.traps(), s.traps()), (0, 0, 0));
}
