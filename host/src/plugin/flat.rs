//! The host side of contract 0.2.0: events to and from the flat batch form
//! (through the `halyard-flat` codec the guest SDK shares), the WIT records
//! of `halyard:plugin/flat@0.2.0`, and applying a privacy patch (0.2.0) or
//! a privacy answer's edits (0.4.0), which follow one rule.
//!
//! Guest output is hostile: a buffer that breaks the layout, or whose
//! strings (counting shared bytes once per reference) add up past the
//! output cap, is refused as a whole call, exactly like a 0.1.0 result
//! wasmtime cannot lift; a patch or rewrite that cannot apply is refused
//! for its event alone (privacy then drops it: fails closed). Nothing here
//! panics on any input.

use halyard_flat::{Batch, EditRef, EventView, Fields, LayoutError, Value, Writer};
use wasmtime::component::{ComponentType, Lift, Lower};

use super::bindings::{AttrValue, Attribute, Event, EventId};
use super::limits::Limits;

/// `flat.frame-batch`: many frames from one input in one buffer.
#[derive(ComponentType, Lower, Lift, Debug, Clone, Default, PartialEq)]
#[component(record)]
pub struct FrameBatch {
    /// Every frame's bytes, back to back.
    #[component(name = "data")]
    pub data: Vec<u8>,
    /// The end offset of each frame in `data`.
    #[component(name = "ends")]
    pub ends: Vec<u32>,
    /// The frames' media type; empty when unknown.
    #[component(name = "content-type")]
    pub content_type: String,
    /// The input that produced them.
    #[component(name = "origin")]
    pub origin: String,
}

/// `flat.decoded`: one result per frame and every event in one batch.
#[derive(ComponentType, Lower, Lift, Debug, Clone, PartialEq)]
#[component(record)]
pub struct Decoded {
    /// Per frame: its number of events, or the decoder's reason.
    #[component(name = "results")]
    pub results: Vec<Result<u32, String>>,
    /// The events of the frames that decoded, in order.
    #[component(name = "events")]
    pub events: Vec<u8>,
}

/// `flat.field-edit`: one field replaced.
#[derive(ComponentType, Lower, Lift, Debug, Clone, PartialEq)]
#[component(variant)]
pub enum FieldEdit {
    /// A new time.
    #[component(name = "time-ns")]
    TimeNs(i64),
    /// A new source.
    #[component(name = "source")]
    Source(String),
    /// A new kind.
    #[component(name = "kind")]
    Kind(String),
    /// A new value, or none.
    #[component(name = "value")]
    Value(Option<f64>),
    /// A new unit, or none.
    #[component(name = "unit")]
    Unit(Option<String>),
    /// A new body, or none.
    #[component(name = "body")]
    Body(Option<String>),
}

/// `flat.patch`: what a privacy policy changes in one event.
#[derive(ComponentType, Lower, Lift, Debug, Clone, PartialEq)]
#[component(record)]
pub struct Patch {
    /// Positions of attributes to remove, in the event as sent.
    #[component(name = "remove")]
    pub remove: Vec<u32>,
    /// Attributes to set (in place by key, else appended).
    #[component(name = "set")]
    pub set: Vec<Attribute>,
    /// Field replacements, in order.
    #[component(name = "fields")]
    pub fields: Vec<FieldEdit>,
}

/// `flat.action`: a privacy decision in 0.2.0.
#[derive(ComponentType, Lower, Lift, Debug, Clone, PartialEq)]
#[component(variant)]
pub enum FlatAction {
    /// Ship unchanged.
    #[component(name = "keep")]
    Keep,
    /// Ship with the patch applied.
    #[component(name = "patch")]
    Patch(Patch),
    /// Ship this one-event batch instead.
    #[component(name = "rewrite")]
    Rewrite(Vec<u8>),
    /// Do not ship.
    #[component(name = "drop")]
    Drop,
}

/// `events` as one batch, for a stage's input. Strings repeated from one
/// event to the next are stored once.
pub fn encode(writer: &mut Writer, events: &[Event]) -> Result<Vec<u8>, LayoutError> {
    writer.clear();
    for event in events {
        let fields = Fields {
            id: (event.id.hi, event.id.lo),
            time_ns: event.time_ns,
            source: &event.source,
            kind: &event.kind,
            value: event.value,
            unit: event.unit.as_deref(),
            body: event.body.as_deref(),
        };
        let attrs = event
            .attributes
            .iter()
            .map(|a| (a.key.as_str(), value_ref(&a.value)));
        writer.push(&fields, attrs)?;
    }
    Ok(writer.finish())
}

/// Reads a guest's event batch, holding what reading it costs to the
/// output cap; the error is the reason the whole call is refused.
pub fn decode(bytes: &[u8], limits: &Limits) -> Result<Vec<Event>, String> {
    let batch = Batch::parse(bytes).map_err(|e| e.to_string())?;
    let cap = limits.max_output_bytes as u64;
    if batch.referenced_bytes() > cap {
        return Err(format!(
            "batch strings add up to {} bytes, over the {}-byte output cap",
            batch.referenced_bytes(),
            cap
        ));
    }
    Ok(batch.iter().map(|v| to_event(&v)).collect())
}

fn to_event(view: &EventView<'_>) -> Event {
    let f = &view.fields;
    Event {
        id: EventId {
            hi: f.id.0,
            lo: f.id.1,
        },
        time_ns: f.time_ns,
        source: f.source.to_owned(),
        kind: f.kind.to_owned(),
        value: f.value,
        unit: f.unit.map(str::to_owned),
        attributes: view
            .attrs()
            .map(|(key, value)| Attribute {
                key: key.to_owned(),
                value: owned_value(value),
            })
            .collect(),
        body: f.body.map(str::to_owned),
    }
}

/// Reads a privacy rewrite: a batch of exactly one event.
pub fn decode_rewrite(bytes: &[u8], limits: &Limits) -> Result<Event, String> {
    let mut events = decode(bytes, limits).map_err(|e| format!("rewrite: {e}"))?;
    match events.len() {
        1 => Ok(events.remove(0)),
        n => Err(format!("rewrite holds {n} events (must be exactly 1)")),
    }
}

/// Applies `patch` to `event` in place (see the WIT's `patch`): the same
/// rule as a 0.4.0 answer's edits, [`apply_edits`].
pub fn apply_patch(event: &mut Event, patch: &Patch, limits: &Limits) -> Result<(), String> {
    let removes = patch.remove.iter().map(|&i| EditRef::Remove(i));
    let sets = patch
        .set
        .iter()
        .map(|a| EditRef::Set(&a.key, value_ref(&a.value)));
    let fields = patch.fields.iter().map(|f| match f {
        FieldEdit::TimeNs(t) => EditRef::TimeNs(*t),
        FieldEdit::Source(s) => EditRef::Source(s),
        FieldEdit::Kind(k) => EditRef::Kind(k),
        FieldEdit::Value(v) => EditRef::Value(*v),
        FieldEdit::Unit(u) => EditRef::Unit(u.as_deref()),
        FieldEdit::Body(b) => EditRef::Body(b.as_deref()),
    });
    apply_edits(event, removes.chain(sets).chain(fields), limits)
}

/// Applies a privacy policy's edits to `event` in place, so a masked
/// attribute costs its new value and not a copy of the event: every
/// removal (by position in the event as sent), then every set in order (by
/// key: in place, or appended), then the field replacements in order. The
/// edits' strings were held to the output cap; the caller checks the
/// result like any rewrite. Removing a position past the event's
/// attributes refuses the edits and leaves the event as it was: every
/// position is checked before anything changes. A replaced string reuses
/// the old one's allocation when it fits.
///
/// A set finds its attribute by scanning the event's, so a guest that
/// appends many keys could make the work grow with the square of its
/// edits: more edits than an honest patch can need (a removal per
/// attribute, twice the attribute cap in sets, each field once) refuse the
/// patch before anything changes, which bounds the scan.
pub fn apply_edits<'a>(
    event: &mut Event,
    edits: impl Iterator<Item = EditRef<'a>> + Clone,
    limits: &Limits,
) -> Result<(), String> {
    let n = event.attributes.len();
    let most = n
        .saturating_add(limits.max_attributes.saturating_mul(2))
        .saturating_add(FIELDS);
    let mut gone: Option<Vec<bool>> = None;
    for (count, edit) in edits.clone().enumerate() {
        if count == most {
            return Err(format!(
                "patch makes more than {most} edits to an event of {n} attributes"
            ));
        }
        if let EditRef::Remove(i) = edit {
            let at = usize::try_from(i)
                .ok()
                .filter(|&at| at < n)
                .ok_or_else(|| format!("patch removes attribute {i} of an event with {n}"))?;
            gone.get_or_insert_with(|| vec![false; n])[at] = true;
        }
    }
    if let Some(gone) = gone {
        let mut i = 0;
        event.attributes.retain(|_| {
            i += 1;
            !gone[i - 1]
        });
    }
    for edit in edits.clone() {
        if let EditRef::Set(key, value) = edit {
            match event.attributes.iter_mut().find(|a| a.key == key) {
                Some(existing) => set_value(&mut existing.value, value),
                None => event.attributes.push(Attribute {
                    key: key.to_owned(),
                    value: owned_value(value),
                }),
            }
        }
    }
    for edit in edits {
        match edit {
            EditRef::Remove(_) | EditRef::Set(..) => {}
            EditRef::TimeNs(t) => event.time_ns = t,
            EditRef::Source(s) => replace(&mut event.source, s),
            EditRef::Kind(k) => replace(&mut event.kind, k),
            EditRef::Value(v) => event.value = v,
            EditRef::Unit(u) => replace_optional(&mut event.unit, u),
            EditRef::Body(b) => replace_optional(&mut event.body, b),
        }
    }
    Ok(())
}

/// The fields an edit can replace besides attributes: time, source, kind,
/// value, unit, body.
const FIELDS: usize = 6;

fn value_ref(value: &AttrValue) -> Value<'_> {
    match value {
        AttrValue::Str(s) => Value::Str(s),
        AttrValue::Int(i) => Value::Int(*i),
        AttrValue::Float(x) => Value::Float(*x),
        AttrValue::Boolean(b) => Value::Bool(*b),
    }
}

fn owned_value(value: Value<'_>) -> AttrValue {
    match value {
        Value::Str(s) => AttrValue::Str(s.to_owned()),
        Value::Int(i) => AttrValue::Int(i),
        Value::Float(x) => AttrValue::Float(x),
        Value::Bool(b) => AttrValue::Boolean(b),
    }
}

fn set_value(slot: &mut AttrValue, value: Value<'_>) {
    match (slot, value) {
        (AttrValue::Str(old), Value::Str(new)) => replace(old, new),
        (slot, value) => *slot = owned_value(value),
    }
}

fn replace(old: &mut String, new: &str) {
    old.clear();
    old.push_str(new);
}

fn replace_optional(old: &mut Option<String>, new: Option<&str>) {
    match (old.as_mut(), new) {
        (Some(old), Some(new)) => replace(old, new),
        (_, new) => *old = new.map(str::to_owned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Event {
        Event {
            id: EventId { hi: 1, lo: 2 },
            time_ns: 5,
            source: "d1".into(),
            kind: "temp".into(),
            value: Some(-1.5),
            unit: Some("c".into()),
            attributes: vec![
                Attribute {
                    key: "operator".into(),
                    value: AttrValue::Str("alice".into()),
                },
                Attribute {
                    key: "seq".into(),
                    value: AttrValue::Int(3),
                },
                Attribute {
                    key: "ok".into(),
                    value: AttrValue::Boolean(true),
                },
            ],
            body: Some(r#"{"a":1}"#.into()),
        }
    }

    #[test]
    fn events_round_trip_through_the_codec() {
        let events = vec![
            event(),
            Event {
                body: None,
                value: None,
                ..event()
            },
        ];
        let bytes = encode(&mut Writer::new(), &events).unwrap();
        assert_eq!(decode(&bytes, &Limits::default()).unwrap(), events);
    }

    #[test]
    fn referenced_strings_are_held_to_the_output_cap() {
        let events = vec![event(); 10];
        let bytes = encode(&mut Writer::new(), &events).unwrap();
        let limits = Limits {
            max_output_bytes: 100,
            ..Limits::default()
        };
        let err = decode(&bytes, &limits).unwrap_err();
        assert!(err.contains("over the 100-byte output cap"), "{err}");
    }

    #[test]
    fn a_patch_removes_sets_and_replaces_fields() {
        let patch = Patch {
            remove: vec![0, 0],
            set: vec![
                Attribute {
                    key: "seq".into(),
                    value: AttrValue::Int(4),
                },
                Attribute {
                    key: "new".into(),
                    value: AttrValue::Float(1.0),
                },
            ],
            fields: vec![
                FieldEdit::Source("masked".into()),
                FieldEdit::Unit(None),
                FieldEdit::Body(None),
            ],
        };
        let mut out = event();
        apply_patch(&mut out, &patch, &Limits::default()).unwrap();
        let keys: Vec<&str> = out.attributes.iter().map(|a| a.key.as_str()).collect();
        assert_eq!(keys, ["seq", "ok", "new"]);
        assert_eq!(out.attributes[0].value, AttrValue::Int(4));
        assert_eq!(
            (out.source.as_str(), out.unit, out.body),
            ("masked", None, None)
        );
        assert_eq!(out.id, event().id);
    }

    #[test]
    fn a_patch_past_the_attributes_is_refused() {
        let patch = Patch {
            remove: vec![0, 3],
            set: Vec::new(),
            fields: Vec::new(),
        };
        let mut out = event();
        let err = apply_patch(&mut out, &patch, &Limits::default()).unwrap_err();
        assert_eq!(err, "patch removes attribute 3 of an event with 3");
        assert_eq!(out, event(), "a refused patch changes nothing");
    }

    #[test]
    fn a_patch_with_more_edits_than_any_honest_one_is_refused_unapplied() {
        let limits = Limits {
            max_attributes: 4,
            ..Limits::default()
        };
        let keys: Vec<String> = (0..20).map(|i| format!("k{i}")).collect();
        let edits = keys
            .iter()
            .map(|k| EditRef::Set(k, Value::Int(1)))
            .collect::<Vec<_>>();
        let mut out = event();
        // 3 attributes + 2 × 4 sets + 6 fields = 17 edits at most.
        let err = apply_edits(&mut out, edits.iter().copied(), &limits).unwrap_err();
        assert_eq!(
            err,
            "patch makes more than 17 edits to an event of 3 attributes"
        );
        assert_eq!(out, event(), "nothing applied");
        apply_edits(&mut out, edits[..17].iter().copied(), &limits).unwrap();
        assert_eq!(
            out.attributes.len(),
            3 + 17,
            "the caller's cap check refuses it"
        );
    }

    #[test]
    fn a_rewrite_must_hold_one_event() {
        let limits = Limits::default();
        let two = encode(&mut Writer::new(), &[event(), event()]).unwrap();
        assert_eq!(
            decode_rewrite(&two, &limits).unwrap_err(),
            "rewrite holds 2 events (must be exactly 1)"
        );
        let err = decode_rewrite(&[1, 2, 3], &limits).unwrap_err();
        assert!(err.starts_with("rewrite: batch of 3 bytes"), "{err}");
    }
}
