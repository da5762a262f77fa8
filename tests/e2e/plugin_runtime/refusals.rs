//! Guest output over a host cap for one input is refused for that input
//! alone, with the reason, and is never a trap (issue 11, item 4): a lying
//! decoder loses only its bad frames, a lying source only its bad events, a
//! lying privacy policy's bad rewrites are dropped (never shipped), and an
//! over-long reject reason is cut. `jsonl-decoder` refuses such lines
//! itself.

use halyard::plugin::{
    Action, AttrValue, Attribute, Event, Frame, FrameError, PluginKind, Verdict,
};
use halyard_test_components as components;

use crate::support::{TestRuntime, options, reading, runtime};

fn frames(lines: &[&str]) -> Vec<Frame> {
    lines
        .iter()
        .map(|l| Frame {
            data: l.as_bytes().to_vec(),
            content_type: String::new(),
            origin: "http:web".into(),
        })
        .collect()
}

fn sources(events: &[Event]) -> Vec<&str> {
    events.iter().map(|e| e.source.as_str()).collect()
}

fn refused(reason: &str) -> Result<Vec<&'static str>, FrameError> {
    Err(FrameError::Refused(reason.to_string()))
}

fn lying(
    rt: &TestRuntime,
    path: &str,
    kind: PluginKind,
    config: &[(&str, &str)],
) -> halyard::plugin::PluginInstance {
    rt.try_load_with(path, kind, options(config))
        .unwrap_or_else(|e| panic!("loading {path}: {e}"))
        .instance()
}

#[test]
fn a_lying_decoder_loses_only_its_bad_frames_and_never_traps() {
    let rt = runtime();
    let mut decoder = lying(&rt, components::LYING_DECODER, PluginKind::Decoder, &[]);
    let batch = frames(&[
        "good:a",
        "source:102400",
        "good:b,good:c",
        "attrs:300",
        "good:d,kind:70000",
        "unit:65537",
        "attr-value:65537",
        "body:1048577",
        "bad-body",
        "time:-1",
        "many:10001",
        "error:100000",
        "good:e",
    ]);
    let expected = vec![
        Ok(vec!["a"]),
        refused("event 0: source of 102400 bytes (limit 65536)"),
        Ok(vec!["b", "c"]),
        refused("event 0: event has 300 attributes (limit 256)"),
        refused("event 1: kind of 70000 bytes (limit 65536)"),
        refused("event 0: unit of 65537 bytes (limit 65536)"),
        refused("event 0: attribute value of 65537 bytes (limit 65536)"),
        refused("event 0: body of 1048577 bytes (limit 1048576)"),
        refused("event 0: body is not valid JSON"),
        refused("event 0: event time -1 ns is before 1970"),
        refused("10001 events in one result (limit 10000)"),
        Err(FrameError::Decoder(format!(
            "{}… (decode error of 100000 bytes cut to the 65536-byte limit)",
            "e".repeat(65536)
        ))),
        Ok(vec!["e"]),
    ];
    // Far more calls than the 5 traps that would quarantine the plugin.
    for call in 1..=20 {
        let results = decoder.decode_checked(&batch).expect("no trap");
        let got: Vec<Result<Vec<&str>, FrameError>> = results
            .iter()
            .map(|r| r.as_ref().map(|e| sources(e)).map_err(Clone::clone))
            .collect();
        assert_eq!(got, expected, "call {call}");
    }
    assert_eq!((decoder.calls(), decoder.traps()), (20, 0));

    // The WIT-shaped `decode` (what `plugin run` prints) says who refused.
    let results = decoder.decode(&batch[..2]).expect("no trap");
    assert_eq!(
        results[1],
        Err("output refused by the host: event 0: source of 102400 bytes (limit 65536)".into())
    );
    assert_eq!(decoder.traps(), 0);
}

#[test]
fn a_lying_source_loses_only_its_bad_events_and_never_traps() {
    let rt = runtime();
    let mut source = lying(
        &rt,
        components::LYING_SOURCE,
        PluginKind::Source,
        &[(
            "pattern",
            "good:a,source:102400,good:b,attrs:300,time:-1,good:c",
        )],
    );
    for _ in 0..10 {
        let polled = source.poll_checked(100).expect("no trap");
        assert_eq!(sources(&polled.events), ["a", "b", "c"]);
        let reasons: Vec<&str> = polled.refused.iter().map(|(_, r)| r.as_str()).collect();
        assert_eq!(
            reasons,
            [
                "source of 102400 bytes (limit 65536)",
                "event has 300 attributes (limit 256)",
                "event time -1 ns is before 1970",
            ]
        );
    }
    assert_eq!(
        sources(&source.poll(100).expect("no trap")),
        ["a", "b", "c"]
    );
    assert_eq!((source.calls(), source.traps()), (11, 0));
}

fn lie(spec: &str) -> Event {
    let mut e = reading("d1", "temp", Some(1.0));
    e.attributes.push(Attribute {
        key: "lie".into(),
        value: AttrValue::Str(spec.into()),
    });
    e
}

#[test]
fn a_lying_privacy_rewrite_is_dropped_never_shipped_and_never_traps() {
    let rt = runtime();
    let mut privacy = lying(&rt, components::LYING_PRIVACY, PluginKind::Privacy, &[]);
    let events = vec![
        reading("d1", "temp", Some(1.0)),
        lie("source:102400"),
        lie("good:masked"),
        lie("attrs:300"),
    ];
    for _ in 0..10 {
        let redacted = privacy.redact_checked(&events).expect("no trap");
        assert_eq!(redacted.actions.len(), 4);
        assert_eq!(redacted.actions[0], Action::Keep);
        assert_eq!(redacted.actions[1], Action::Drop);
        match &redacted.actions[2] {
            Action::Rewrite(e) => {
                assert_eq!(e.source, "masked");
                assert_eq!(e.id, events[2].id, "the host keeps the original id");
            }
            other => panic!("expected the good rewrite, got {other:?}"),
        }
        assert_eq!(redacted.actions[3], Action::Drop);
        assert_eq!(
            redacted.refused,
            vec![
                (
                    1,
                    "rewrite source of 102400 bytes (limit 65536)".to_string()
                ),
                (
                    3,
                    "rewrite event has 300 attributes (limit 256)".to_string()
                ),
            ]
        );
    }
    assert_eq!((privacy.calls(), privacy.traps()), (10, 0));
}

/// A 0.4.0 answer written by hand: an edit that cannot apply, or that
/// makes its event too big, refuses that event alone (dropped, never
/// shipped unredacted); the sound edits of the same answer apply.
#[test]
fn a_lying_privacy_answers_bad_edits_are_refused_for_their_events_alone() {
    let rt = runtime();
    let mut privacy = lying(&rt, components::LYING_ANSWER, PluginKind::Privacy, &[]);
    let mut mask = lie("mask");
    mask.attributes.push(Attribute {
        key: "operator".into(),
        value: AttrValue::Str("alice".into()),
    });
    let plain = reading("d1", "temp", Some(1.0));
    let original = vec![plain.clone(), lie("remove:7"), mask, lie("body:1048577")];
    for _ in 0..5 {
        let mut events = original.clone();
        let redacted = privacy.redact_in_place(&mut events).expect("no trap");
        assert_eq!(
            redacted.actions,
            [Action::Keep, Action::Drop, Action::Keep, Action::Drop]
        );
        assert_eq!(
            redacted.refused,
            vec![
                (
                    1,
                    "patch removes attribute 7 of an event with 1".to_string()
                ),
                (
                    3,
                    "rewrite body of 1048579 bytes (limit 1048576)".to_string()
                ),
            ]
        );
        assert_eq!(events[0], plain);
        assert_eq!(events[1], original[1], "a refused patch changes nothing");
        let operator = events[2].attributes.iter().find(|a| a.key == "operator");
        assert_eq!(
            operator.map(|a| &a.value),
            Some(&AttrValue::Str("masked".into()))
        );
    }
    assert_eq!((privacy.calls(), privacy.traps()), (5, 0));
}

/// A 0.4.0 answer that breaks the layout is a broken call, like a 0.2.0
/// result wasmtime cannot lift: nothing of it applies, the reason names
/// the rule, and the next call runs on a fresh instance.
#[test]
fn a_broken_privacy_answer_is_a_broken_call_that_applies_nothing() {
    let rt = runtime();
    let mut privacy = lying(&rt, components::LYING_ANSWER, PluginKind::Privacy, &[]);
    let cases = [
        ("short", "0 actions for 1 inputs"),
        ("garbage", "answer layout version 171"),
        ("version", "answer layout version 9"),
        ("string", "answer edit 0: string 4294967295+8 outside the"),
        (
            "huge",
            "answer strings add up to 20971680 bytes, over the 16777216-byte output cap",
        ),
    ];
    for (i, (mode, want)) in cases.iter().enumerate() {
        let mut masked = lie(&format!("answer:{mode}"));
        masked.attributes.push(Attribute {
            key: "operator".into(),
            value: AttrValue::Str("alice".into()),
        });
        let original = vec![masked];
        let mut events = original.clone();
        let err = privacy
            .redact_in_place(&mut events)
            .expect_err("a broken answer");
        let message = err.to_string();
        assert!(message.contains(want), "{mode}: {message}");
        assert_eq!(events, original, "{mode}: nothing applied");
        assert_eq!(privacy.traps(), i as u64 + 1, "{mode}");
        // A sound call right after works.
        let mut fine = vec![reading("d1", "temp", Some(1.0))];
        let ok = privacy.redact_in_place(&mut fine).expect("sound call");
        assert_eq!(ok.actions, [Action::Keep]);
    }
}

#[test]
fn an_over_long_reject_reason_is_cut_and_the_events_stay_rejected() {
    let rt = runtime();
    let mut validator = lying(
        &rt,
        components::HOSTILE_VALIDATOR,
        PluginKind::Validator,
        &[("mode", "long-reason")],
    );
    let events: Vec<Event> = (0..3).map(|_| reading("d1", "temp", Some(1.0))).collect();
    let verdicts = validator.validate(&events).expect("no trap");
    let cut = format!(
        "{}… (reject reason of 4194304 bytes cut to the 65536-byte limit)",
        "x".repeat(65536)
    );
    assert_eq!(verdicts, vec![Verdict::Reject(cut); 3]);
    assert_eq!(validator.traps(), 0);
}

#[test]
fn jsonl_decoder_refuses_lines_over_the_host_caps_itself() {
    let rt = runtime();
    let mut decoder = lying(&rt, components::JSONL_DECODER, PluginKind::Decoder, &[]);
    let long_source = format!(r#"{{"device":"{}","value":1}}"#, "s".repeat(100 << 10));
    let attrs: Vec<String> = (0..300).map(|i| format!("\"a{i}\":{i}")).collect();
    let wide = format!(r#"{{"device":"d1",{}}}"#, attrs.join(","));
    let lines = [
        r#"{"device":"d1","metric":"temp","value":1}"#,
        long_source.as_str(),
        wide.as_str(),
        r#"{"device":"d2","ts":-5}"#,
        r#"{"device":"d3","metric":"temp","value":2}"#,
    ];
    let results = decoder.decode_checked(&frames(&lines)).expect("no trap");
    let got: Vec<Result<Vec<&str>, FrameError>> = results
        .iter()
        .map(|r| r.as_ref().map(|e| sources(e)).map_err(Clone::clone))
        .collect();
    let decoder_says = |m: &str| Err(FrameError::Decoder(m.to_string()));
    assert_eq!(
        got,
        vec![
            Ok(vec!["d1"]),
            decoder_says("line 1: source of 102400 bytes (limit 65536)"),
            decoder_says("line 1: 300 attributes (limit 256)"),
            decoder_says("line 1: field \"ts\" is before 1970 (-5000000 ns)"),
            Ok(vec!["d3"]),
        ]
    );
    assert_eq!(decoder.traps(), 0);

    // The caps are its config keys.
    let mut strict = lying(
        &rt,
        components::JSONL_DECODER,
        PluginKind::Decoder,
        &[("max_attributes", "2")],
    );
    let results = strict
        .decode_checked(&frames(&[r#"{"a":1,"b":2,"c":3}"#]))
        .expect("no trap");
    assert_eq!(
        results[0],
        Err(FrameError::Decoder("line 1: 3 attributes (limit 2)".into()))
    );
}

#[test]
fn jsonl_decoder_fails_lines_too_big_for_any_event_without_trapping() {
    let rt = runtime();
    let mut decoder = lying(&rt, components::JSONL_DECODER, PluginKind::Decoder, &[]);
    let ones = "1,".repeat(2 << 20);
    let nulls: Vec<String> = (0..500_000).map(|i| format!("\"k{i}\":null")).collect();
    let ints: Vec<String> = (0..100_000).map(|i| format!("\"k{i}\":1")).collect();
    let cases = [
        // ~70 bytes of guest memory per element if built whole: 280 MiB.
        (
            format!(r#"{{"device":"d","x":[{ones}1]}}"#),
            "line 1: body of more than 1048576 bytes (limit 1048576)",
        ),
        (format!("[{ones}1]"), "line 1: not a JSON object"),
        // Quadratic to insert one by one: far past any deadline.
        (
            format!("{{{}}}", nulls.join(",")),
            "line 1: more than 175026 fields (an event carries at most 256 attributes \
             and a 1048576-byte body)",
        ),
        (
            format!("{{{}}}", ints.join(",")),
            "line 1: 100000 attributes (limit 256)",
        ),
    ];
    for (line, reason) in &cases {
        let results = decoder
            .decode_checked(&frames(&[line.as_str()]))
            .unwrap_or_else(|e| panic!("{reason}: trapped: {e}"));
        assert_eq!(results, vec![Err(FrameError::Decoder(reason.to_string()))]);
    }
    let good = decoder
        .decode_checked(&frames(&[r#"{"device":"d1","metric":"temp","value":1}"#]))
        .expect("no trap");
    assert_eq!(good[0].as_ref().map(|e| e.len()), Ok(1));
    assert_eq!((decoder.calls(), decoder.traps()), (5, 0));
}
