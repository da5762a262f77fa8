//! The 0.2.0 glue: flat batches to and from the SDK's `Event`, and a
//! privacy rewrite turned into a patch.
//!
//! Why: contract 0.2.0 moves a batch as one buffer (layout in
//! `wit/0.2.0/plugin.wit`, code in the `halyard-flat` crate the host shares)
//! so the host no longer lowers every string of every event into the guest
//! one allocation at a time. Plugin authors keep writing against `Event`;
//! this module converts at the edge, inside the guest, where an allocation
//! is an ordinary `malloc` rather than a call across the sandbox.

use std::cell::RefCell;

use halyard_flat::{Batch, EventView, Fields, Value, Writer};

use crate::bindings::decoder::halyard::plugin0_2_0::flat as decoder_flat;
use crate::bindings::privacy::halyard::plugin0_2_0::flat as privacy_flat;
use crate::{Action, AttrValue, Attribute, Event, EventId, Frame};

thread_local! {
    /// One writer per instance, so its buffers keep their capacity.
    static WRITER: RefCell<Writer> = RefCell::new(Writer::new());
}

/// Reads a batch the host sent. The host's own buffer is well formed; if
/// it is not, trapping (with the reason in the guest's output) is right.
pub(crate) fn parse(bytes: &[u8]) -> Batch<'_> {
    match Batch::parse(bytes) {
        Ok(batch) => batch,
        Err(err) => panic!("the host sent a malformed event batch: {err}"),
    }
}

/// Every event of a batch, owned.
pub(crate) fn read_events(bytes: &[u8]) -> Vec<Event> {
    parse(bytes).iter().map(|view| to_event(&view)).collect()
}

/// One borrowed event as the SDK's owned `Event`.
pub(crate) fn to_event(view: &EventView<'_>) -> Event {
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
                value: to_attr_value(value),
            })
            .collect(),
        body: f.body.map(str::to_owned),
    }
}

fn to_attr_value(value: Value<'_>) -> AttrValue {
    match value {
        Value::Str(s) => AttrValue::Str(s.to_owned()),
        Value::Int(i) => AttrValue::Int(i),
        Value::Float(x) => AttrValue::Float(x),
        Value::Bool(b) => AttrValue::Boolean(b),
    }
}

fn from_attr_value(value: &AttrValue) -> Value<'_> {
    match value {
        AttrValue::Str(s) => Value::Str(s),
        AttrValue::Int(i) => Value::Int(*i),
        AttrValue::Float(x) => Value::Float(*x),
        AttrValue::Boolean(b) => Value::Bool(*b),
    }
}

fn push(writer: &mut Writer, event: &Event) {
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
        .map(|a| (a.key.as_str(), from_attr_value(&a.value)));
    if let Err(err) = writer.push(&fields, attrs) {
        panic!("cannot encode the plugin's events: {err}");
    }
}

/// Events as one batch (a source's poll, a privacy rewrite).
pub(crate) fn write_events<'e>(events: impl IntoIterator<Item = &'e Event>) -> Vec<u8> {
    WRITER.with(|w| {
        let mut w = w.borrow_mut();
        w.clear();
        for event in events {
            push(&mut w, event);
        }
        w.finish()
    })
}

/// The `decode` export: frames out of the buffer, the plugin's batch
/// method, and every decoded event into one batch.
pub(crate) fn decode(
    batch: decoder_flat::FrameBatch,
    decode_batch: impl FnOnce(Vec<Frame>) -> Vec<Result<Vec<Event>, String>>,
) -> decoder_flat::Decoded {
    let frames = match halyard_flat::frames(&batch.data, &batch.ends) {
        Ok(frames) => frames,
        Err(err) => panic!("the host sent a malformed frame batch: {err}"),
    };
    let frames = frames
        .into_iter()
        .map(|data| Frame {
            data: data.to_vec(),
            content_type: batch.content_type.clone(),
            origin: batch.origin.clone(),
        })
        .collect();
    let decoded = decode_batch(frames);
    WRITER.with(|w| {
        let mut w = w.borrow_mut();
        w.clear();
        let results = decoded
            .into_iter()
            .map(|result| {
                result.map(|events| {
                    events.iter().for_each(|e| push(&mut w, e));
                    // `max_events_out` bounds this far below u32.
                    u32::try_from(events.len()).unwrap_or(u32::MAX)
                })
            })
            .collect();
        decoder_flat::Decoded {
            results,
            events: w.finish(),
        }
    })
}

/// The `redact` export: the plugin's action per event, with each rewrite
/// sent as a patch against the event when a patch can say it exactly.
pub(crate) fn redact(
    bytes: &[u8],
    redact_batch: impl FnOnce(Vec<Event>) -> Vec<Action>,
) -> Vec<privacy_flat::Action> {
    let batch = parse(bytes);
    let actions = redact_batch(batch.iter().map(|v| to_event(&v)).collect());
    actions
        .into_iter()
        .enumerate()
        .map(|(i, action)| match action {
            Action::Keep => privacy_flat::Action::Keep,
            Action::Drop => privacy_flat::Action::Drop,
            Action::Rewrite(new) => match batch.event(i).and_then(|old| patch(&old, &new)) {
                Some(patch) if is_noop(&patch) => privacy_flat::Action::Keep,
                Some(patch) => privacy_flat::Action::Patch(patch),
                None => privacy_flat::Action::Rewrite(write_events([&new])),
            },
        })
        .collect()
}

fn is_noop(patch: &privacy_flat::Patch) -> bool {
    patch.remove.is_empty() && patch.set.is_empty() && patch.fields.is_empty()
}

/// The patch that turns `old` into `new` under the host's rules (remove
/// by position, then set by key in place or appended, then fields), or
/// `None` when no patch can: the attributes were reordered, or a key
/// repeats.
pub(crate) fn patch(old: &EventView<'_>, new: &Event) -> Option<privacy_flat::Patch> {
    use privacy_flat::FieldEdit;
    let f = &old.fields;
    let mut fields = Vec::new();
    if f.time_ns != new.time_ns {
        fields.push(FieldEdit::TimeNs(new.time_ns));
    }
    if f.source != new.source {
        fields.push(FieldEdit::Source(new.source.clone()));
    }
    if f.kind != new.kind {
        fields.push(FieldEdit::Kind(new.kind.clone()));
    }
    if f.value.map(f64::to_bits) != new.value.map(f64::to_bits) {
        fields.push(FieldEdit::Value(new.value));
    }
    if f.unit != new.unit.as_deref() {
        fields.push(FieldEdit::Unit(new.unit.clone()));
    }
    if f.body != new.body.as_deref() {
        fields.push(FieldEdit::Body(new.body.clone()));
    }
    let new_attrs = &new.attributes;
    for (i, a) in new_attrs.iter().enumerate() {
        if new_attrs[..i].iter().any(|b| b.key == a.key) {
            return None;
        }
    }
    let mut remove = Vec::new();
    let mut set = Vec::new();
    // The kept attributes must come first in `new`, in their old order.
    let mut kept = 0;
    for (i, (key, value)) in old.attrs().enumerate() {
        match new_attrs.iter().position(|a| a.key == key) {
            None => remove.push(u32::try_from(i).ok()?),
            Some(at) if at == kept => {
                let now = &new_attrs[at].value;
                if !same_value(value, now) {
                    set.push(new_attrs[at].clone());
                }
                kept += 1;
            }
            Some(_) => return None,
        }
    }
    set.extend(new_attrs[kept..].iter().cloned());
    Some(privacy_flat::Patch {
        remove,
        set,
        fields,
    })
}

fn same_value(old: Value<'_>, new: &AttrValue) -> bool {
    match (old, new) {
        (Value::Str(a), AttrValue::Str(b)) => a == b,
        (Value::Int(a), AttrValue::Int(b)) => a == *b,
        (Value::Float(a), AttrValue::Float(b)) => a.to_bits() == b.to_bits(),
        (Value::Bool(a), AttrValue::Boolean(b)) => a == *b,
        _ => false,
    }
}

#[cfg(test)]
#[path = "flat_tests.rs"]
mod tests;
