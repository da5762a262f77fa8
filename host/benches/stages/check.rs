//! Before timing: each guest's output on the whole input must equal its
//! native twin's. A mismatch is a bug in the guest (or in the twin) and
//! aborts the benchmark with both outputs of the first differing input.

use std::fmt::Debug;

use halyard::plugin::{
    Action, AttrValue, Attribute, Event, EventId, Frame, PluginInstance, Verdict,
};
use sha2::{Digest, Sha256};

use crate::native;

/// Asserts equal outputs, naming the first input where they differ.
fn assert_same<T: PartialEq + Debug>(stage: &str, guest: &[T], native: &[T]) {
    assert_eq!(
        guest.len(),
        native.len(),
        "{stage}: guest and native return different numbers of results"
    );
    if let Some(i) = (0..guest.len()).find(|&i| guest[i] != native[i]) {
        panic!(
            "{stage}: guest and native differ at input {i}:\n  guest:  {:?}\n  native: {:?}",
            guest[i], native[i]
        );
    }
}

/// Decoded events with their ids cleared (ids are the host's business).
fn without_ids(results: Vec<Result<Vec<Event>, String>>) -> Vec<Result<Vec<Event>, String>> {
    results
        .into_iter()
        .map(|r| {
            r.map(|events| {
                events
                    .into_iter()
                    .map(|mut e| {
                        e.id = EventId { hi: 0, lo: 0 };
                        e
                    })
                    .collect()
            })
        })
        .collect()
}

/// jsonl-decoder: identical events (ids aside) or identical errors.
pub fn decoder(inst: &mut PluginInstance, native: &native::JsonlDecoder, frames: &[Frame]) {
    let guest = without_ids(inst.decode(frames).expect("decode"));
    let twin = without_ids(native.decode_batch(frames));
    assert_same("jsonl-decoder", &guest, &twin);
    let events: usize = guest.iter().flatten().map(Vec::len).sum();
    println!(
        "- jsonl-decoder: {} frames -> {events} events, identical",
        frames.len()
    );
}

/// range-validator: identical verdicts, reject reasons included.
pub fn validator(inst: &mut PluginInstance, native: &native::RangeValidator, events: &[Event]) {
    let guest = inst.validate(events).expect("validate");
    assert_same("range-validator", &guest, &native.validate_batch(events));
    let rejected = guest.iter().filter(|v| **v != Verdict::Accept).count();
    let negative = events
        .iter()
        .filter(|e| e.value.is_some_and(|v| v < 0.0))
        .count();
    assert_eq!(
        rejected, negative,
        "min.temp=0 rejects exactly the negative readings"
    );
    let example = guest.iter().find(|v| **v != Verdict::Accept);
    println!(
        "- range-validator: {rejected} of {} rejected, identical (e.g. {example:?})",
        events.len()
    );
}

/// The documented hash, computed independently of both implementations:
/// `"h:"` + the first 16 hex digits of SHA-256(salt ++ value).
fn spec_hash(salt: &str, value: &str) -> String {
    let digest = Sha256::digest(format!("{salt}{value}").as_bytes());
    format!("h:{}", &hex::encode(digest)[..16])
}

/// redact-privacy: identical actions, rewritten events included, and every
/// `operator` replaced by the documented hash.
pub fn redact(
    inst: &mut PluginInstance,
    native: &native::RedactPolicy,
    salt: &str,
    events: &[Event],
) {
    let guest = inst.redact(events).expect("redact");
    assert_same("redact-privacy", &guest, &native.redact_batch(events));
    for (action, event) in guest.iter().zip(events) {
        let Action::Rewrite(rewritten) = action else {
            panic!("redact-privacy: {action:?} for an event with an operator");
        };
        let operator = |e: &Event| e.attributes.iter().find(|a| a.key == "operator").cloned();
        let Some(Attribute {
            value: AttrValue::Str(original),
            ..
        }) = operator(event)
        else {
            panic!("benchmark events carry a string operator");
        };
        let expected = AttrValue::Str(spec_hash(salt, &original));
        assert_eq!(operator(rewritten).map(|a| a.value), Some(expected));
    }
    let rewritten = guest
        .iter()
        .filter(|a| matches!(a, Action::Rewrite(_)))
        .count();
    let example = guest.iter().find_map(|a| match a {
        Action::Rewrite(e) => e.attributes.first().map(|a| (&a.key, &a.value)),
        _ => None,
    });
    println!(
        "- redact-privacy: {rewritten} of {} rewritten, identical (e.g. {example:?})",
        events.len()
    );
}

/// fraction-sampler: identical keep/discard decisions.
pub fn sampler(
    inst: &mut PluginInstance,
    native: &native::FractionSampler,
    stage: &str,
    events: &[Event],
) {
    let guest = inst.sample(events).expect("sample");
    assert_same(stage, &guest, &native.sample_batch(events));
    let kept = guest.iter().filter(|k| **k).count();
    if native.keeps_all() {
        assert_eq!(kept, events.len(), "{stage}: fraction 1 keeps every event");
    }
    println!("- {stage}: {kept} of {} kept, identical", events.len());
}
