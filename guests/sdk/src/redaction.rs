//! What a privacy policy returns from [`crate::Privacy::redact_views`]:
//! a decision per event, with changes said as an [`Edit`] of the event the
//! host sent rather than as a new event.
//!
//! Why: an owned rewrite makes the guest copy the whole event, change it,
//! and then diff it against the original to find the patch the host
//! applies. A policy that knows what it changes (drop this attribute, mask
//! that one) can say so directly, and the event is never copied.

use std::fmt;

use halyard_flat::{EditRef, Value};

use crate::bindings::privacy_v0_2::halyard::plugin0_2_0::flat::{FieldEdit, Patch};
use crate::{AttrRef, Attribute, Event};

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
///
/// Why it is one byte buffer: a policy makes an edit for nearly every
/// event, and a `Vec` per kind of change plus a `String` per key and value
/// were most of a simple policy's guest-side cost. The changes are
/// appended to one buffer (one allocation per edited event, none per
/// string) and copied from there into the answer. Two edits are equal when
/// they hold the same changes made in the same order.
#[derive(Clone, Default, PartialEq)]
pub struct Edit {
    ops: Vec<u8>,
}

/// Op codes of [`Edit`]'s buffer (its own; the answer layout has others).
const OP_REMOVE: u8 = 0;
const OP_SET: u8 = 1;
const OP_TIME: u8 = 2;
const OP_SOURCE: u8 = 3;
const OP_KIND: u8 = 4;
const OP_VALUE: u8 = 5;
const OP_UNIT: u8 = 6;
const OP_BODY: u8 = 7;

/// Value tags in a set op.
const V_STR: u8 = 0;
const V_INT: u8 = 1;
const V_FLOAT: u8 = 2;
const V_BOOL: u8 = 3;

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
        self.ops.is_empty()
    }

    /// Removes the attribute at position `index` of the event as sent
    /// (as [`crate::EventRef::attributes`] numbers them).
    pub fn remove_attr(&mut self, index: usize) {
        // An event holds far fewer than 2^32 attributes; an index past the
        // event's refuses the patch in the host, as the contract says.
        self.op(OP_REMOVE);
        self.put(&u32::try_from(index).unwrap_or(u32::MAX).to_le_bytes());
    }

    /// Sets attribute `key` (replacing its value in place, or appending).
    /// Takes borrowed values (`&str`, `&String`, numbers, booleans,
    /// `&AttrValue`, `AttrRef`): they are copied once, into the edit.
    pub fn set_attr<'v>(&mut self, key: &str, value: impl Into<AttrRef<'v>>) {
        self.op(OP_SET);
        self.put_str(key);
        match value.into() {
            AttrRef::Str(s) => {
                self.put(&[V_STR]);
                self.put_str(s);
            }
            AttrRef::Int(i) => {
                self.put(&[V_INT]);
                self.put(&i.to_le_bytes());
            }
            AttrRef::Float(x) => {
                self.put(&[V_FLOAT]);
                self.put(&x.to_bits().to_le_bytes());
            }
            AttrRef::Boolean(b) => self.put(&[V_BOOL, u8::from(b)]),
        }
    }

    /// Replaces the event time.
    pub fn set_time_ns(&mut self, time_ns: i64) {
        self.op(OP_TIME);
        self.put(&time_ns.to_le_bytes());
    }

    /// Replaces the source.
    pub fn set_source(&mut self, source: &str) {
        self.op(OP_SOURCE);
        self.put_str(source);
    }

    /// Replaces the kind.
    pub fn set_kind(&mut self, kind: &str) {
        self.op(OP_KIND);
        self.put_str(kind);
    }

    /// Replaces (or, with `None`, removes) the reading.
    pub fn set_value(&mut self, value: Option<f64>) {
        self.op(OP_VALUE);
        self.put(&[u8::from(value.is_some())]);
        self.put(&value.unwrap_or(0.0).to_bits().to_le_bytes());
    }

    /// Replaces (or removes) the unit.
    pub fn set_unit(&mut self, unit: Option<&str>) {
        self.op(OP_UNIT);
        self.put_optional(unit);
    }

    /// Replaces (or removes) the JSON body.
    pub fn set_body(&mut self, body: Option<&str>) {
        self.op(OP_BODY);
        self.put_optional(body);
    }

    /// The changes, in the order they were made.
    pub(crate) fn iter(&self) -> impl Iterator<Item = EditRef<'_>> + Clone {
        Ops { rest: &self.ops }
    }

    /// `event` with the edit applied by the host's rules, or `None` when
    /// a removal names a position the event does not have (the host
    /// refuses such a patch). For a plugin's own tests.
    pub fn apply(&self, event: &Event) -> Option<Event> {
        let mut out = event.clone();
        let n = out.attributes.len();
        let mut gone = vec![false; n];
        for edit in self.iter() {
            if let EditRef::Remove(i) = edit {
                *gone.get_mut(usize::try_from(i).ok()?)? = true;
            }
        }
        let mut at = 0;
        out.attributes.retain(|_| {
            at += 1;
            !gone[at - 1]
        });
        for edit in self.iter() {
            if let EditRef::Set(key, value) = edit {
                let value = AttrRef::from(value).to_owned();
                match out.attributes.iter_mut().find(|a| a.key == key) {
                    Some(existing) => existing.value = value,
                    None => out.attributes.push(Attribute {
                        key: key.to_owned(),
                        value,
                    }),
                }
            }
        }
        for edit in self.iter() {
            match edit {
                EditRef::Remove(_) | EditRef::Set(..) => {}
                EditRef::TimeNs(t) => out.time_ns = t,
                EditRef::Source(s) => out.source = s.to_owned(),
                EditRef::Kind(k) => out.kind = k.to_owned(),
                EditRef::Value(v) => out.value = v,
                EditRef::Unit(u) => out.unit = u.map(str::to_owned),
                EditRef::Body(b) => out.body = b.map(str::to_owned),
            }
        }
        Some(out)
    }

    /// The edit as a 0.2.0 `patch` (for `export_privacy_v0_2!`).
    pub(crate) fn into_patch(self) -> Patch {
        let mut patch = Patch {
            remove: Vec::new(),
            set: Vec::new(),
            fields: Vec::new(),
        };
        for edit in self.iter() {
            match edit {
                EditRef::Remove(i) => patch.remove.push(i),
                EditRef::Set(key, value) => patch.set.push(Attribute {
                    key: key.to_owned(),
                    value: AttrRef::from(value).to_owned(),
                }),
                EditRef::TimeNs(t) => patch.fields.push(FieldEdit::TimeNs(t)),
                EditRef::Source(s) => patch.fields.push(FieldEdit::Source(s.to_owned())),
                EditRef::Kind(k) => patch.fields.push(FieldEdit::Kind(k.to_owned())),
                EditRef::Value(v) => patch.fields.push(FieldEdit::Value(v)),
                EditRef::Unit(u) => patch.fields.push(FieldEdit::Unit(u.map(str::to_owned))),
                EditRef::Body(b) => patch.fields.push(FieldEdit::Body(b.map(str::to_owned))),
            }
        }
        patch
    }

    fn op(&mut self, code: u8) {
        if self.ops.capacity() == 0 {
            // One allocation for a typical edit (a masked attribute).
            self.ops.reserve(64);
        }
        self.ops.push(code);
    }

    fn put(&mut self, bytes: &[u8]) {
        self.ops.extend_from_slice(bytes);
    }

    fn put_str(&mut self, s: &str) {
        // A string in a guest is far below 4 GiB; the host caps it lower.
        self.put(&u32::try_from(s.len()).unwrap_or(u32::MAX).to_le_bytes());
        self.put(s.as_bytes());
    }

    fn put_optional(&mut self, s: Option<&str>) {
        self.put(&[u8::from(s.is_some())]);
        self.put_str(s.unwrap_or_default());
    }
}

impl fmt::Debug for Edit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Reads [`Edit`]'s buffer back. It is only ever written by `Edit`'s own
/// methods; a short read (impossible) ends the iteration.
#[derive(Clone)]
struct Ops<'a> {
    rest: &'a [u8],
}

impl<'a> Ops<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.rest.split_at_checked(n)?;
        self.rest = rest;
        Some(head)
    }

    fn byte(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn str(&mut self) -> Option<&'a str> {
        let len = u32::from_le_bytes(self.take(4)?.try_into().ok()?);
        std::str::from_utf8(self.take(usize::try_from(len).ok()?)?).ok()
    }

    fn optional(&mut self) -> Option<Option<&'a str>> {
        let present = self.byte()? == 1;
        let s = self.str()?;
        Some(present.then_some(s))
    }
}

impl<'a> Iterator for Ops<'a> {
    type Item = EditRef<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        Some(match self.byte()? {
            OP_REMOVE => EditRef::Remove(u32::from_le_bytes(self.take(4)?.try_into().ok()?)),
            OP_SET => {
                let key = self.str()?;
                let value = match self.byte()? {
                    V_STR => Value::Str(self.str()?),
                    V_INT => Value::Int(self.u64()? as i64),
                    V_FLOAT => Value::Float(f64::from_bits(self.u64()?)),
                    _ => Value::Bool(self.byte()? == 1),
                };
                EditRef::Set(key, value)
            }
            OP_TIME => EditRef::TimeNs(self.u64()? as i64),
            OP_SOURCE => EditRef::Source(self.str()?),
            OP_KIND => EditRef::Kind(self.str()?),
            OP_VALUE => {
                let present = self.byte()? == 1;
                let x = f64::from_bits(self.u64()?);
                EditRef::Value(present.then_some(x))
            }
            OP_UNIT => EditRef::Unit(self.optional()?),
            _ => EditRef::Body(self.optional()?),
        })
    }
}
