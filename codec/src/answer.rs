//! The privacy answer layout of `halyard:plugin@0.4.0` (answer layout
//! version [`ANSWER_VERSION`], documented on the `privacy` world in
//! `wit/0.4.0/plugin.wit`): one action per event, patches as edit
//! records, their strings in one UTF-8 area (checked once per answer) and
//! rewrites in another.
//!
//! Why a layout of its own: a 0.2.0 answer is a `list<action>` whose every
//! masked attribute is a nested list and two strings, each lowered by the
//! guest and lifted by the host one by one. Here the guest appends records
//! to three buffers and the host checks the whole answer in one pass, then
//! reads it in place. Like [`crate::Batch::parse`], [`Answer::parse`] never
//! panics, whatever the bytes.

use crate::read::{record, u32_at, u64_at};
use crate::{LayoutError, TAG_BOOL, TAG_FLOAT, TAG_INT, TAG_STR, Value};

/// The answer layout version this crate reads and writes (byte 0).
pub const ANSWER_VERSION: u8 = 1;
/// Bytes in the answer header.
pub const ANSWER_HEADER_LEN: usize = 24;
/// Bytes in one action record.
pub const ACTION_LEN: usize = 16;
/// Bytes in one edit record.
pub const EDIT_LEN: usize = 24;

const KEEP: u32 = 0;
const DROP: u32 = 1;
const PATCH: u32 = 2;
const REWRITE: u32 = 3;

const REMOVE: u32 = 0;
const SET: u32 = 1;
const TIME_NS: u32 = 2;
const SOURCE: u32 = 3;
const KIND: u32 = 4;
const VALUE: u32 = 5;
const UNIT: u32 = 6;
const BODY: u32 = 7;

/// One change to an event, borrowed from an answer (or from the caller of
/// [`AnswerWriter::patch`]). The meaning of each is that of 0.2.0's
/// `patch` and `field-edit`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EditRef<'a> {
    /// Remove the attribute at this position of the event as sent.
    Remove(u32),
    /// Set the attribute with this key (in place, or appended).
    Set(&'a str, Value<'a>),
    /// A new event time.
    TimeNs(i64),
    /// A new source.
    Source(&'a str),
    /// A new kind.
    Kind(&'a str),
    /// A new reading, or none.
    Value(Option<f64>),
    /// A new unit, or none.
    Unit(Option<&'a str>),
    /// A new JSON body, or none.
    Body(Option<&'a str>),
}

/// One action of a checked [`Answer`].
#[derive(Debug, Clone, Copy)]
pub enum ActionRef<'a> {
    /// Ship the event unchanged.
    Keep,
    /// Do not ship it.
    Drop,
    /// Ship it with these edits applied.
    Patch(Edits<'a>),
    /// Ship this one-event batch (0.2.0 flat layout, not yet checked)
    /// instead.
    Rewrite(&'a [u8]),
}

/// The edit records of one patch, in record order.
#[derive(Debug, Clone, Copy)]
pub struct Edits<'a> {
    records: &'a [u8],
    strings: &'a str,
}

impl<'a> Edits<'a> {
    /// The number of edit records.
    pub fn len(&self) -> usize {
        self.records.len() / EDIT_LEN
    }

    /// Whether the patch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

impl<'a> Iterator for Edits<'a> {
    type Item = EditRef<'a>;

    fn next(&mut self) -> Option<Self::Item> {
        let (rec, rest) = self.records.split_at_checked(EDIT_LEN)?;
        self.records = rest;
        // Checked by `Answer::parse`: the codes, tags and references.
        let s = |at| area_str(self.strings, rec, at).unwrap_or_default();
        let present = u32_at(rec, 4) == 1;
        Some(match u32_at(rec, 0) {
            REMOVE => EditRef::Remove(u32_at(rec, 8)),
            SET => EditRef::Set(
                s(8),
                match u32_at(rec, 4) {
                    TAG_INT => Value::Int(u64_at(rec, 16) as i64),
                    TAG_FLOAT => Value::Float(f64::from_bits(u64_at(rec, 16))),
                    TAG_BOOL => Value::Bool(u64_at(rec, 16) != 0),
                    _ => Value::Str(s(16)),
                },
            ),
            TIME_NS => EditRef::TimeNs(u64_at(rec, 16) as i64),
            SOURCE => EditRef::Source(s(16)),
            KIND => EditRef::Kind(s(16)),
            VALUE => EditRef::Value(present.then(|| f64::from_bits(u64_at(rec, 16)))),
            UNIT => EditRef::Unit(present.then(|| s(16))),
            _ => EditRef::Body(present.then(|| s(16))),
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.len(), Some(self.len()))
    }
}

impl ExactSizeIterator for Edits<'_> {}

/// A checked answer: every record, reference and code was verified by
/// [`Answer::parse`], so reading it cannot fail.
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    actions: &'a [u8],
    edits: &'a [u8],
    strings: &'a str,
    rewrites: &'a [u8],
    referenced: u64,
}

impl<'a> Answer<'a> {
    /// Checks `buf` against every rule of the answer layout (see the WIT).
    /// Cost: one pass over the records and one UTF-8 check of the string
    /// area; no allocation.
    pub fn parse(buf: &'a [u8]) -> Result<Self, LayoutError> {
        let bad = |what: String| LayoutError::Answer { what };
        let header = buf.get(..ANSWER_HEADER_LEN).ok_or_else(|| {
            bad(format!(
                "of {} bytes is shorter than its {ANSWER_HEADER_LEN}-byte header",
                buf.len()
            ))
        })?;
        if header[0] != ANSWER_VERSION {
            return Err(bad(format!(
                "layout version {} (this reader knows {ANSWER_VERSION})",
                header[0]
            )));
        }
        if header[1..4] != [0, 0, 0] {
            return Err(bad("header: reserved bytes 1..4 not zero".into()));
        }
        if u32_at(header, 20) != 0 {
            return Err(bad("header: reserved bytes 20..24 not zero".into()));
        }
        let [n, e, s, r] = [4, 8, 12, 16].map(|at| u32_at(header, at));
        let expected = answer_len(n.into(), e.into(), s.into(), r.into());
        if expected != buf.len() as u64 {
            return Err(bad(format!(
                "is {} bytes but its header says {expected}",
                buf.len()
            )));
        }
        let edits_at = ANSWER_HEADER_LEN + ACTION_LEN * n as usize;
        let strings_at = edits_at + EDIT_LEN * e as usize;
        let rewrites_at = strings_at + s as usize;
        let strings = std::str::from_utf8(&buf[strings_at..rewrites_at]).map_err(|err| {
            bad(format!(
                "string area is not UTF-8 (at byte {})",
                err.valid_up_to()
            ))
        })?;
        let answer = Answer {
            actions: &buf[ANSWER_HEADER_LEN..edits_at],
            edits: &buf[edits_at..strings_at],
            strings,
            rewrites: &buf[rewrites_at..],
            referenced: 0,
        };
        answer.check(e as usize).map_err(bad)
    }

    /// The one checking pass over the records.
    fn check(mut self, edit_count: usize) -> Result<Self, String> {
        let mut next_edit = 0usize;
        for i in 0..self.len() {
            let rec = record(self.actions, i, ACTION_LEN);
            let (a, b) = (u32_at(rec, 4) as usize, u32_at(rec, 8) as usize);
            if u32_at(rec, 12) != 0 {
                return Err(format!("action {i}: reserved bytes set"));
            }
            match u32_at(rec, 0) {
                KEEP | DROP if a == 0 && b == 0 => {}
                KEEP | DROP => return Err(format!("action {i}: keep or drop with a range")),
                PATCH => {
                    if a != next_edit || b > edit_count - next_edit {
                        return Err(format!(
                            "action {i}: edits {a}+{b} are not the next in order (expected to start at {next_edit}, {} left)",
                            edit_count - next_edit
                        ));
                    }
                    for j in a..a + b {
                        self.referenced +=
                            check_edit(record(self.edits, j, EDIT_LEN), self.strings)
                                .map_err(|why| format!("edit {j}: {why}"))?;
                    }
                    next_edit += b;
                }
                REWRITE => {
                    if a.checked_add(b).is_none_or(|end| end > self.rewrites.len()) {
                        return Err(format!(
                            "action {i}: rewrite {a}+{b} outside the {}-byte rewrite area",
                            self.rewrites.len()
                        ));
                    }
                    self.referenced += b as u64;
                }
                code => return Err(format!("action {i}: unknown action {code}")),
            }
        }
        if next_edit != edit_count {
            return Err(format!("patches use {next_edit} of {edit_count} edits"));
        }
        Ok(self)
    }

    /// The number of actions.
    pub fn len(&self) -> usize {
        self.actions.len() / ACTION_LEN
    }

    /// Whether the answer holds no action.
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    /// The total length of every string and rewrite referenced, counting
    /// shared bytes once per reference: what applying every action into
    /// owned strings can cost. The host holds it to its output cap.
    pub fn referenced_bytes(&self) -> u64 {
        self.referenced
    }

    /// Every action, in order.
    pub fn iter(&self) -> impl Iterator<Item = ActionRef<'a>> + 'a {
        let answer = *self;
        (0..self.len()).map(move |i| answer.action(i))
    }

    fn action(&self, i: usize) -> ActionRef<'a> {
        let rec = record(self.actions, i, ACTION_LEN);
        let (a, b) = (u32_at(rec, 4) as usize, u32_at(rec, 8) as usize);
        match u32_at(rec, 0) {
            PATCH => ActionRef::Patch(Edits {
                records: self
                    .edits
                    .get(a * EDIT_LEN..(a + b) * EDIT_LEN)
                    .unwrap_or_default(),
                strings: self.strings,
            }),
            REWRITE => ActionRef::Rewrite(self.rewrites.get(a..a + b).unwrap_or_default()),
            DROP => ActionRef::Drop,
            _ => ActionRef::Keep,
        }
    }
}

/// Checks one edit record; returns the bytes its strings reference.
fn check_edit(rec: &[u8], strings: &str) -> Result<u64, String> {
    let string = |at| {
        area_str(strings, rec, at)
            .map(|s| s.len() as u64)
            .ok_or_else(|| {
                format!(
                    "string {}+{} outside the {}-byte string area or not on a character boundary",
                    u32_at(rec, at),
                    u32_at(rec, at + 4),
                    strings.len()
                )
            })
    };
    let zero =
        |range: std::ops::Range<usize>| rec.get(range).is_some_and(|b| b.iter().all(|&x| x == 0));
    let unused = |ok: bool| {
        if ok {
            Ok(0)
        } else {
            Err("unused bytes set".to_string())
        }
    };
    let flag = u32_at(rec, 4);
    match u32_at(rec, 0) {
        REMOVE => unused(zero(4..8) && zero(12..24)),
        SET => {
            let key = string(8)?;
            let value = match flag {
                TAG_STR => string(16)?,
                TAG_INT | TAG_FLOAT => 0,
                TAG_BOOL if u64_at(rec, 16) <= 1 => 0,
                TAG_BOOL => return Err("boolean is neither 0 nor 1".into()),
                tag => return Err(format!("unknown tag {tag}")),
            };
            Ok(key + value)
        }
        TIME_NS => unused(zero(4..16)),
        SOURCE | KIND => {
            unused(zero(4..16))?;
            string(16)
        }
        VALUE | UNIT | BODY => match flag {
            0 => unused(zero(8..24)),
            1 if zero(8..16) => {
                if u32_at(rec, 0) == VALUE {
                    Ok(0)
                } else {
                    string(16)
                }
            }
            1 => unused(false),
            _ => Err(format!("presence {flag} is neither 0 nor 1")),
        },
        code => Err(format!("unknown edit {code}")),
    }
}

/// The string a reference at `at` of `rec` points to in `strings`, if it
/// lies within it on character boundaries.
fn area_str<'a>(strings: &'a str, rec: &[u8], at: usize) -> Option<&'a str> {
    let (o, l) = (u32_at(rec, at) as usize, u32_at(rec, at + 4) as usize);
    strings.get(o..o.checked_add(l)?)
}

/// The total length of an answer with `actions` actions, `edits` edit
/// records, `strings` bytes of strings and `rewrites` bytes of rewrites
/// (saturated on overflow).
fn answer_len(actions: u64, edits: u64, strings: u64, rewrites: u64) -> u64 {
    (ACTION_LEN as u64 * actions)
        .saturating_add(EDIT_LEN as u64 * edits)
        .saturating_add(strings)
        .saturating_add(rewrites)
        .saturating_add(ANSWER_HEADER_LEN as u64)
}

/// Builds one answer, action by action. Reusable: [`AnswerWriter::finish`]
/// leaves it empty with its buffers' capacity kept.
#[derive(Debug, Default)]
pub struct AnswerWriter {
    actions: Vec<u8>,
    edits: Vec<u8>,
    strings: Vec<u8>,
    rewrites: Vec<u8>,
    edit_count: u32,
    /// The last `set` key written, reused when the next is the same text
    /// (a policy masks the same key in event after event).
    last_key: (u32, u32),
}

impl AnswerWriter {
    /// An empty writer.
    pub fn new() -> Self {
        AnswerWriter::default()
    }

    /// Actions written so far.
    pub fn len(&self) -> usize {
        self.actions.len() / ACTION_LEN
    }

    /// Whether no action was written yet.
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    /// Ship the next event unchanged.
    pub fn keep(&mut self) {
        self.action(KEEP, 0, 0);
    }

    /// Do not ship the next event.
    pub fn drop_event(&mut self) {
        self.action(DROP, 0, 0);
    }

    /// Ship `batch` (one event, 0.2.0 flat layout) instead of the next event.
    pub fn rewrite(&mut self, batch: &[u8]) -> Result<(), LayoutError> {
        let (offset, len) = append(&mut self.rewrites, batch)?;
        self.action(REWRITE, offset, len);
        Ok(())
    }

    /// Ship the next event with `edits` applied; no edits at all is
    /// written as a keep. On an error (offsets past `u32`) nothing of the
    /// patch is written.
    pub fn patch<'e>(
        &mut self,
        edits: impl IntoIterator<Item = EditRef<'e>>,
    ) -> Result<(), LayoutError> {
        let (edits_len, strings_len, count) =
            (self.edits.len(), self.strings.len(), self.edit_count);
        let last_key = self.last_key;
        let written = self.write_edits(edits);
        match written {
            Ok(0) => {
                self.keep();
                Ok(())
            }
            Ok(n) => {
                self.action(PATCH, count, n);
                Ok(())
            }
            Err(e) => {
                self.edits.truncate(edits_len);
                self.strings.truncate(strings_len);
                self.edit_count = count;
                self.last_key = last_key;
                Err(e)
            }
        }
    }

    fn write_edits<'e>(
        &mut self,
        edits: impl IntoIterator<Item = EditRef<'e>>,
    ) -> Result<u32, LayoutError> {
        let mut n = 0u32;
        for edit in edits {
            let mut rec = [0u8; EDIT_LEN];
            let (code, flag) = match edit {
                EditRef::Remove(p) => {
                    rec[8..12].copy_from_slice(&p.to_le_bytes());
                    (REMOVE, 0)
                }
                EditRef::Set(key, value) => {
                    let key = self.key(key)?;
                    put_ref(&mut rec[8..16], key);
                    let (tag, payload) = match value {
                        Value::Str(s) => (TAG_STR, ref_bits(self.append(s.as_bytes())?)),
                        Value::Int(i) => (TAG_INT, i as u64),
                        Value::Float(x) => (TAG_FLOAT, x.to_bits()),
                        Value::Bool(b) => (TAG_BOOL, u64::from(b)),
                    };
                    rec[16..24].copy_from_slice(&payload.to_le_bytes());
                    (SET, tag)
                }
                EditRef::TimeNs(t) => {
                    rec[16..24].copy_from_slice(&t.to_le_bytes());
                    (TIME_NS, 0)
                }
                EditRef::Source(s) => {
                    put_ref(&mut rec[16..24], self.append(s.as_bytes())?);
                    (SOURCE, 0)
                }
                EditRef::Kind(s) => {
                    put_ref(&mut rec[16..24], self.append(s.as_bytes())?);
                    (KIND, 0)
                }
                EditRef::Value(v) => {
                    rec[16..24].copy_from_slice(&v.map_or(0, f64::to_bits).to_le_bytes());
                    (VALUE, u32::from(v.is_some()))
                }
                EditRef::Unit(u) => (UNIT, self.optional(&mut rec, u)?),
                EditRef::Body(b) => (BODY, self.optional(&mut rec, b)?),
            };
            rec[0..4].copy_from_slice(&code.to_le_bytes());
            rec[4..8].copy_from_slice(&flag.to_le_bytes());
            self.edits.extend_from_slice(&rec);
            n = n.checked_add(1).ok_or(LayoutError::TooLarge)?;
            self.edit_count = self
                .edit_count
                .checked_add(1)
                .ok_or(LayoutError::TooLarge)?;
        }
        Ok(n)
    }

    /// Writes the finished answer into `out` (cleared first) and leaves the
    /// writer empty, keeping capacity.
    pub fn finish_into(&mut self, out: &mut Vec<u8>) {
        out.clear();
        out.reserve(
            ANSWER_HEADER_LEN
                + self.actions.len()
                + self.edits.len()
                + self.strings.len()
                + self.rewrites.len(),
        );
        out.push(ANSWER_VERSION);
        out.extend_from_slice(&[0, 0, 0]);
        let actions = u32::try_from(self.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&actions.to_le_bytes());
        out.extend_from_slice(&self.edit_count.to_le_bytes());
        // `append` keeps both areas within u32.
        for area in [&self.strings, &self.rewrites] {
            let len = u32::try_from(area.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&len.to_le_bytes());
        }
        out.extend_from_slice(&[0, 0, 0, 0]);
        out.extend_from_slice(&self.actions);
        out.extend_from_slice(&self.edits);
        out.extend_from_slice(&self.strings);
        out.extend_from_slice(&self.rewrites);
        self.clear();
    }

    /// The finished answer; the writer is left empty.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        self.finish_into(&mut out);
        out
    }

    /// Forgets everything written, keeping capacity.
    pub fn clear(&mut self) {
        self.actions.clear();
        self.edits.clear();
        self.strings.clear();
        self.rewrites.clear();
        self.edit_count = 0;
        self.last_key = (0, 0);
    }

    fn action(&mut self, code: u32, a: u32, b: u32) {
        let mut rec = [0u8; ACTION_LEN];
        rec[0..4].copy_from_slice(&code.to_le_bytes());
        rec[4..8].copy_from_slice(&a.to_le_bytes());
        rec[8..12].copy_from_slice(&b.to_le_bytes());
        self.actions.extend_from_slice(&rec);
    }

    fn optional(&mut self, rec: &mut [u8; EDIT_LEN], s: Option<&str>) -> Result<u32, LayoutError> {
        match s {
            Some(s) => {
                put_ref(&mut rec[16..24], self.append(s.as_bytes())?);
                Ok(1)
            }
            None => Ok(0),
        }
    }

    fn key(&mut self, key: &str) -> Result<(u32, u32), LayoutError> {
        let (o, l) = (self.last_key.0 as usize, self.last_key.1 as usize);
        if l == key.len() && self.strings.get(o..o + l) == Some(key.as_bytes()) {
            return Ok(self.last_key);
        }
        self.last_key = self.append(key.as_bytes())?;
        Ok(self.last_key)
    }

    fn append(&mut self, text: &[u8]) -> Result<(u32, u32), LayoutError> {
        append(&mut self.strings, text)
    }
}

/// Appends `bytes` to `area`; returns its reference.
fn append(area: &mut Vec<u8>, bytes: &[u8]) -> Result<(u32, u32), LayoutError> {
    if bytes.is_empty() {
        return Ok((0, 0));
    }
    let offset = u32::try_from(area.len()).map_err(|_| LayoutError::TooLarge)?;
    let len = u32::try_from(bytes.len()).map_err(|_| LayoutError::TooLarge)?;
    offset.checked_add(len).ok_or(LayoutError::TooLarge)?;
    area.extend_from_slice(bytes);
    Ok((offset, len))
}

fn put_ref(out: &mut [u8], (offset, len): (u32, u32)) {
    out[0..4].copy_from_slice(&offset.to_le_bytes());
    out[4..8].copy_from_slice(&len.to_le_bytes());
}

fn ref_bits((offset, len): (u32, u32)) -> u64 {
    u64::from(offset) | (u64::from(len) << 32)
}

#[cfg(test)]
#[path = "answer_tests.rs"]
mod tests;
