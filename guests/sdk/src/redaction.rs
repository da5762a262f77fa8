//! What a privacy policy returns from [`crate::Privacy::redact_views`]:
//! a decision per event, with changes said as an [`Edit`] of the event the
//! host sent rather than as a new event.
//!
//! Why: an owned rewrite makes the guest copy the whole event, change it,
//! and then diff it against the original to find the patch the host
//! applies. A policy that knows what it changes (drop this attribute, mask
//! that one) can say so directly, and the event is never copied.

use crate::bindings::privacy::halyard::plugin0_2_0::flat::{FieldEdit, Patch};
use crate::{AttrValue, Attribute, Event};

/// A privacy policy's decision on one event (views API).
#[derive(Debug, Clone, PartialEq)]
pub enum Redaction {
    /// Ship the event unchanged.
    Keep,
    /// Do not ship the event.
    Drop,
    /// Ship the event with these changes (an empty edit is a keep).
    Edit(Edit),
    /// Ship this event instead (the host keeps the original id): for
    /// changes an edit cannot say, such as reordered attributes.
    Rewrite(Event),
}

/// Changes to one event. The host applies them in this order: the
/// removals (positions in the event as sent), then the sets (by key: in
/// place, or appended), then the field replacements in the order made.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Edit {
    remove: Vec<u32>,
    set: Vec<Attribute>,
    fields: Vec<FieldEdit>,
}

/// Why: the owned API's decision as a views-API one (the default of
/// [`crate::Privacy::redact_views`]).
impl From<crate::Action> for Redaction {
    fn from(action: crate::Action) -> Self {
        match action {
            crate::Action::Keep => Redaction::Keep,
            crate::Action::Drop => Redaction::Drop,
            crate::Action::Rewrite(event) => Redaction::Rewrite(event),
        }
    }
}

impl Edit {
    /// An edit that changes nothing yet.
    pub fn new() -> Self {
        Edit::default()
    }

    /// True when the edit changes nothing.
    pub fn is_empty(&self) -> bool {
        self.remove.is_empty() && self.set.is_empty() && self.fields.is_empty()
    }

    /// Removes the attribute at position `index` of the event as sent
    /// (as [`crate::EventRef::attributes`] numbers them).
    pub fn remove_attr(&mut self, index: usize) {
        // An event holds far fewer than 2^32 attributes; an index past the
        // event's refuses the patch in the host, as the contract says.
        self.remove.push(u32::try_from(index).unwrap_or(u32::MAX));
    }

    /// Sets attribute `key` (replacing its value in place, or appending).
    pub fn set_attr(&mut self, key: impl Into<String>, value: impl Into<AttrValue>) {
        self.set.push(Attribute {
            key: key.into(),
            value: value.into(),
        });
    }

    /// Replaces the event time.
    pub fn set_time_ns(&mut self, time_ns: i64) {
        self.fields.push(FieldEdit::TimeNs(time_ns));
    }

    /// Replaces the source.
    pub fn set_source(&mut self, source: impl Into<String>) {
        self.fields.push(FieldEdit::Source(source.into()));
    }

    /// Replaces the kind.
    pub fn set_kind(&mut self, kind: impl Into<String>) {
        self.fields.push(FieldEdit::Kind(kind.into()));
    }

    /// Replaces (or, with `None`, removes) the reading.
    pub fn set_value(&mut self, value: Option<f64>) {
        self.fields.push(FieldEdit::Value(value));
    }

    /// Replaces (or removes) the unit.
    pub fn set_unit(&mut self, unit: Option<String>) {
        self.fields.push(FieldEdit::Unit(unit));
    }

    /// Replaces (or removes) the JSON body.
    pub fn set_body(&mut self, body: Option<String>) {
        self.fields.push(FieldEdit::Body(body));
    }

    /// `event` with the edit applied by the host's rules, or `None` when
    /// a removal names a position the event does not have (the host
    /// refuses such a patch). For a plugin's own tests.
    pub fn apply(&self, event: &Event) -> Option<Event> {
        let mut out = event.clone();
        let n = out.attributes.len();
        let mut gone = vec![false; n];
        for &i in &self.remove {
            *gone.get_mut(usize::try_from(i).ok()?)? = true;
        }
        let mut at = 0;
        out.attributes.retain(|_| {
            at += 1;
            !gone[at - 1]
        });
        for attr in &self.set {
            match out.attributes.iter_mut().find(|a| a.key == attr.key) {
                Some(existing) => existing.value = attr.value.clone(),
                None => out.attributes.push(attr.clone()),
            }
        }
        for edit in &self.fields {
            match edit.clone() {
                FieldEdit::TimeNs(t) => out.time_ns = t,
                FieldEdit::Source(s) => out.source = s,
                FieldEdit::Kind(k) => out.kind = k,
                FieldEdit::Value(v) => out.value = v,
                FieldEdit::Unit(u) => out.unit = u,
                FieldEdit::Body(b) => out.body = b,
            }
        }
        Some(out)
    }

    pub(crate) fn into_patch(self) -> Patch {
        Patch {
            remove: self.remove,
            set: self.set,
            fields: self.fields,
        }
    }
}
