//! The rewrite-to-patch diff: exact patches when the host's rules can
//! say the rewrite, `None` (a full rewrite) when they cannot.

use super::*;
use crate::bindings::privacy::halyard::plugin0_2_0::flat::{FieldEdit, Patch};

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
