//! The 0.2.0 glue: flat batches to and from the SDK's views and `Event`s,
//! and a privacy rewrite turned into a patch.
//!
//! Why: contract 0.2.0 moves a batch as one buffer (layout in
//! `wit/0.2.0/plugin.wit`, code in the `halyard-flat` crate the host shares)
//! so the host no longer lowers every string of every event into the guest
//! one allocation at a time. The trait methods read the batch in place
//! (`view.rs`) or, by default, as owned `Event`s converted here at the
//! edge, inside the guest, where an allocation is an ordinary `malloc`
//! rather than a call across the sandbox.

use std::cell::RefCell;

use halyard_flat::{AnswerWriter, Batch, EditRef, EventView, Value, Writer};

use crate::bindings::decoder::halyard::plugin0_2_0::flat as decoder_flat;
use crate::bindings::privacy_v0_2::halyard::plugin0_2_0::flat as privacy_flat;
use crate::{AttrRef, Attribute, Event, EventSink, Events, Frames, Redaction};

thread_local! {
    /// One writer per instance, so its buffers keep their capacity.
    static WRITER: RefCell<Writer> = RefCell::new(Writer::new());
    /// The same for privacy answers (contract 0.4.0).
    static ANSWER: RefCell<AnswerWriter> = RefCell::new(AnswerWriter::new());
}

/// Reads a batch the host sent. The host's own buffer is well formed; if
/// it is not, trapping (with the reason in the guest's output) is right.
pub(crate) fn parse(bytes: &[u8]) -> Batch<'_> {
    match Batch::parse(bytes) {
        Ok(batch) => batch,
        Err(err) => panic!("the host sent a malformed event batch: {err}"),
    }
}

/// A batch the host sent, for the views API.
pub(crate) fn views(bytes: &[u8]) -> Events<'_> {
    Events::new(parse(bytes))
}

/// Every event of a batch, owned.
pub(crate) fn read_events(bytes: &[u8]) -> Vec<Event> {
    views(bytes).to_events()
}

/// Events as one batch (a source's poll, a privacy rewrite).
pub(crate) fn write_events<'e>(events: impl IntoIterator<Item = &'e Event>) -> Vec<u8> {
    WRITER.with(|w| {
        let mut w = w.borrow_mut();
        w.clear();
        let mut sink = EventSink::new(&mut w);
        events.into_iter().for_each(|event| sink.push_event(event));
        w.finish()
    })
}

/// The `decode` export: the frames read in place, the plugin's
/// `decode_views`, and every event it pushed as one batch.
pub(crate) fn decode(
    batch: decoder_flat::FrameBatch,
    decode_views: impl FnOnce(&Frames<'_>, &mut EventSink<'_>) -> Vec<Result<u32, String>>,
) -> decoder_flat::Decoded {
    let frames = match halyard_flat::frames(&batch.data, &batch.ends) {
        Ok(frames) => frames,
        Err(err) => panic!("the host sent a malformed frame batch: {err}"),
    };
    let frames = Frames::new(frames, &batch.content_type, &batch.origin);
    WRITER.with(|w| {
        let mut w = w.borrow_mut();
        w.clear();
        let results = decode_views(&frames, &mut EventSink::new(&mut w));
        decoder_flat::Decoded {
            results,
            events: w.finish(),
        }
    })
}

/// The `redact` export: the plugin's decision per event; an edit goes
/// back as a patch, and a rewrite as the patch that says it when one can.
pub(crate) fn redact(
    bytes: &[u8],
    redact_views: impl FnOnce(&Events<'_>) -> Vec<Redaction>,
) -> Vec<privacy_flat::Action> {
    let events = views(bytes);
    redact_views(&events)
        .into_iter()
        .enumerate()
        .map(|(i, decision)| match decision {
            Redaction::Keep => privacy_flat::Action::Keep,
            Redaction::Drop => privacy_flat::Action::Drop,
            Redaction::Edit(edit) if edit.is_empty() => privacy_flat::Action::Keep,
            Redaction::Edit(edit) => privacy_flat::Action::Patch(edit.into_patch()),
            Redaction::Rewrite(new) => {
                match events.get(i).and_then(|old| patch(old.view(), &new)) {
                    Some(patch) if is_noop(&patch) => privacy_flat::Action::Keep,
                    Some(patch) => privacy_flat::Action::Patch(patch),
                    None => privacy_flat::Action::Rewrite(write_events([&new])),
                }
            }
        })
        .collect()
}

/// The 0.4.0 `redact` export: the same decisions as [`redact`], written as
/// one answer buffer (layout in `wit/0.4.0/plugin.wit`).
pub(crate) fn redact_answer(
    bytes: &[u8],
    redact_views: impl FnOnce(&Events<'_>) -> Vec<Redaction>,
) -> Vec<u8> {
    let events = views(bytes);
    let decisions = redact_views(&events);
    ANSWER.with(|w| {
        let mut w = w.borrow_mut();
        w.clear();
        for (i, decision) in decisions.into_iter().enumerate() {
            // An edit or patch with no changes is written as a keep.
            let written = match decision {
                Redaction::Keep => w.patch([]),
                Redaction::Drop => {
                    w.drop_event();
                    Ok(())
                }
                Redaction::Edit(edit) => w.patch(edit.iter()),
                Redaction::Rewrite(new) => {
                    match events.get(i).and_then(|old| patch(old.view(), &new)) {
                        Some(patch) => {
                            w.patch(edit_refs((&patch.remove, &patch.set, &patch.fields)))
                        }
                        None => w.rewrite(&write_events([&new])),
                    }
                }
            };
            // Only an answer past 4 GiB fails; the host could not take it.
            if let Err(err) = written {
                panic!("privacy answer cannot be written: {err}");
            }
        }
        w.finish()
    })
}

/// A 0.2.0 patch's removals, sets and field replacements as the answer
/// layout's edit records, in the order the host applies them.
fn edit_refs<'p>(
    (remove, set, fields): (&'p [u32], &'p [Attribute], &'p [privacy_flat::FieldEdit]),
) -> impl Iterator<Item = EditRef<'p>> {
    use privacy_flat::FieldEdit;
    let removes = remove.iter().map(|&i| EditRef::Remove(i));
    let sets = set
        .iter()
        .map(|a| EditRef::Set(&a.key, Value::from(AttrRef::from(&a.value))));
    let fields = fields.iter().map(|f| match f {
        FieldEdit::TimeNs(t) => EditRef::TimeNs(*t),
        FieldEdit::Source(s) => EditRef::Source(s),
        FieldEdit::Kind(k) => EditRef::Kind(k),
        FieldEdit::Value(v) => EditRef::Value(*v),
        FieldEdit::Unit(u) => EditRef::Unit(u.as_deref()),
        FieldEdit::Body(b) => EditRef::Body(b.as_deref()),
    });
    removes.chain(sets).chain(fields)
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
                if !AttrRef::from(value).same_as(now) {
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

#[cfg(test)]
#[path = "flat_tests.rs"]
mod tests;
