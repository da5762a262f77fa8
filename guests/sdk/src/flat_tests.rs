//! The rewrite-to-patch diff: exact patches when the host's rules can
//! say the rewrite, `None` (a full rewrite) when they cannot.

use super::*;
use crate::bindings::privacy_v0_2::halyard::plugin0_2_0::flat::{FieldEdit, Patch};

fn event() -> Event {
    Event::new("d1", "temp", 5)
        .with_value(-1.5)
        .with_unit("c")
        .with_attr("operator", "alice")
        .with_attr("seq", 3i64)
        .with_attr("ok", true)
}

/// The patch from `old` to `new`, through a real batch.
fn diff(old: &Event, new: &Event) -> Option<Patch> {
    let bytes = write_events([old]);
    let event = views(&bytes).get(0).expect("one event");
    assert_eq!(&event.to_event(), old, "the batch round-trips");
    patch(event.view(), new)
}

#[test]
fn a_removed_attribute_is_its_position() {
    let mut new = event();
    new.remove_attr("operator");
    let p = diff(&event(), &new).unwrap();
    assert_eq!((p.remove, p.set, p.fields), (vec![0], vec![], vec![]));
}

#[test]
fn changed_and_added_attributes_are_set_and_fields_replaced() {
    let mut new = event().with_attr("seq", "masked").with_attr("extra", 1.0);
    new.source = "anon".into();
    new.unit = None;
    let p = diff(&event(), &new).unwrap();
    assert!(p.remove.is_empty());
    let keys: Vec<&str> = p.set.iter().map(|a| a.key.as_str()).collect();
    assert_eq!(keys, ["seq", "extra"]);
    assert_eq!(
        p.fields,
        vec![FieldEdit::Source("anon".into()), FieldEdit::Unit(None)]
    );
}

#[test]
fn an_unchanged_rewrite_is_an_empty_patch() {
    let p = diff(&event(), &event()).unwrap();
    assert!(is_noop(&p));
}

#[test]
fn reordered_or_repeated_keys_need_a_full_rewrite() {
    let mut reordered = event();
    reordered.attributes.swap(0, 1);
    assert_eq!(diff(&event(), &reordered), None);
    let mut repeated = event();
    repeated.attributes.push(repeated.attributes[0].clone());
    assert_eq!(diff(&event(), &repeated), None);
}

/// Every kind of change an [`Edit`](crate::Edit) can hold, in call order.
fn every_edit() -> crate::Edit {
    let mut edit = crate::Edit::new();
    edit.set_attr("operator", "h:00");
    edit.remove_attr(2);
    edit.set_attr("seq", 4i64);
    edit.set_attr("ratio", 0.5f64);
    edit.set_attr("ok", false);
    edit.set_source("anon");
    edit.set_kind("k2");
    edit.set_time_ns(9);
    edit.set_value(None);
    edit.set_value(Some(2.5));
    edit.set_unit(Some("f"));
    edit.set_unit(None);
    edit.set_body(Some("{}"));
    edit
}

#[test]
fn an_edit_reads_back_in_call_order_and_splits_into_a_0_2_patch() {
    use halyard_flat::{EditRef, Value};
    let edit = every_edit();
    assert_eq!(
        edit.iter().collect::<Vec<_>>(),
        [
            EditRef::Set("operator", Value::Str("h:00")),
            EditRef::Remove(2),
            EditRef::Set("seq", Value::Int(4)),
            EditRef::Set("ratio", Value::Float(0.5)),
            EditRef::Set("ok", Value::Bool(false)),
            EditRef::Source("anon"),
            EditRef::Kind("k2"),
            EditRef::TimeNs(9),
            EditRef::Value(None),
            EditRef::Value(Some(2.5)),
            EditRef::Unit(Some("f")),
            EditRef::Unit(None),
            EditRef::Body(Some("{}")),
        ]
    );
    let patch = edit.clone().into_patch();
    assert_eq!(patch.remove, [2]);
    let keys: Vec<&str> = patch.set.iter().map(|a| a.key.as_str()).collect();
    assert_eq!(keys, ["operator", "seq", "ratio", "ok"]);
    assert_eq!(patch.fields.len(), 8);
    // The host's order: removal first, then sets, then fields.
    let applied = edit.apply(&event()).expect("positions within the event");
    assert_eq!(applied.attr("ok"), Some(&crate::AttrValue::Boolean(false)));
    assert_eq!(applied.attributes.len(), 4, "ok removed, then set again");
    assert_eq!(
        (
            applied.source.as_str(),
            applied.value,
            applied.unit,
            applied.body.as_deref()
        ),
        ("anon", Some(2.5), None, Some("{}"))
    );
}

/// The 0.4.0 answer says exactly what the 0.2.0 actions say, for every kind
/// of decision: the two exports differ only in shape.
#[test]
fn the_0_4_answer_and_the_0_2_actions_say_the_same() {
    use halyard_flat::{ActionRef, Answer};
    let old = event();
    let bytes = write_events([&old, &old, &old, &old, &old, &old]);
    let mut patchable = old.clone();
    patchable.source = "anon".into();
    let mut reordered = old.clone();
    reordered.attributes.swap(0, 1);
    let decisions = || {
        vec![
            Redaction::Keep,
            Redaction::Drop,
            Redaction::Edit(every_edit()),
            Redaction::Edit(crate::Edit::new()),
            Redaction::Rewrite(patchable.clone()),
            Redaction::Rewrite(reordered.clone()),
        ]
    };
    let actions = redact(&bytes, |_| decisions());
    let answer_bytes = redact_answer(&bytes, |_| decisions());
    let answer = Answer::parse(&answer_bytes).expect("a sound answer");
    assert_eq!(answer.len(), actions.len());
    for (i, (action, old_action)) in answer.iter().zip(&actions).enumerate() {
        let same = match (action, old_action) {
            (ActionRef::Keep, privacy_flat::Action::Keep)
            | (ActionRef::Drop, privacy_flat::Action::Drop) => true,
            (ActionRef::Patch(edits), privacy_flat::Action::Patch(patch)) => {
                let from_patch: Vec<_> =
                    edit_refs((&patch.remove, &patch.set, &patch.fields)).collect();
                let mut sorted: Vec<_> = edits.collect();
                // The answer keeps call order; the host applies removals,
                // sets and fields in passes, so compare in that order.
                sorted.sort_by_key(|e| match e {
                    halyard_flat::EditRef::Remove(_) => 0,
                    halyard_flat::EditRef::Set(..) => 1,
                    _ => 2,
                });
                sorted == from_patch
            }
            (ActionRef::Rewrite(a), privacy_flat::Action::Rewrite(b)) => a == b.as_slice(),
            _ => false,
        };
        assert!(same, "decision {i}: {action:?} vs {old_action:?}");
    }
}
