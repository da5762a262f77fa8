//! Reading a batch: one checking pass, then borrowed views.
//!
//! Every access uses checked slicing, so even a bug here cannot panic: the
//! worst a hostile buffer gets is a [`LayoutError`].

use crate::{
    ATTR_LEN, EVENT_LEN, Fields, HAS_BODY, HAS_UNIT, HAS_VALUE, HEADER_LEN, LAYOUT_VERSION,
    LayoutError, TAG_BOOL, TAG_FLOAT, TAG_INT, TAG_STR, Value, batch_len,
};

/// A checked batch: every record, reference and tag was verified by
/// [`Batch::parse`], so reading it cannot fail.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    records: &'a [u8],
    attrs: &'a [u8],
    strings: &'a str,
    events: usize,
    referenced: u64,
}

impl<'a> Batch<'a> {
    /// Checks `buf` against every rule of the layout (see the WIT) and
    /// returns a view of it. Cost: one pass over the records and one UTF-8
    /// check of the string area; no allocation.
    pub fn parse(buf: &'a [u8]) -> Result<Self, LayoutError> {
        let header = buf
            .get(..HEADER_LEN)
            .ok_or(LayoutError::TooShort { len: buf.len() })?;
        if header[0] != LAYOUT_VERSION {
            return Err(LayoutError::Version { found: header[0] });
        }
        if header[1..4] != [0, 0, 0] {
            return Err(LayoutError::record(
                "header: reserved bytes 1..4 not zero".into(),
            ));
        }
        let events = u32_at(header, 4);
        let attr_count = u32_at(header, 8);
        let string_len = u32_at(header, 12);
        let expected =
            batch_len(events.into(), attr_count.into(), string_len.into()).unwrap_or(u64::MAX);
        if expected != buf.len() as u64 {
            return Err(LayoutError::Length {
                expected,
                actual: buf.len(),
            });
        }
        let (events, attr_count) = (events as usize, attr_count as usize);
        let attrs_at = HEADER_LEN + EVENT_LEN * events;
        let strings_at = attrs_at + ATTR_LEN * attr_count;
        let strings = std::str::from_utf8(&buf[strings_at..]).map_err(|e| LayoutError::Utf8 {
            at: e.valid_up_to(),
        })?;
        let batch = Batch {
            records: &buf[HEADER_LEN..attrs_at],
            attrs: &buf[attrs_at..strings_at],
            strings,
            events,
            referenced: 0,
        };
        batch.check(attr_count)
    }

    /// The one checking pass over the records.
    fn check(mut self, attr_count: usize) -> Result<Self, LayoutError> {
        let mut next_attr = 0usize;
        let mut referenced = 0u64;
        let strings = self.strings;
        let mut str_ref = |what: &dyn Fn() -> String, rec: &[u8], at: usize| {
            let (o, l) = (u32_at(rec, at) as usize, u32_at(rec, at + 4) as usize);
            match o.checked_add(l).and_then(|end| strings.get(o..end)) {
                Some(_) => {
                    referenced += l as u64;
                    Ok(())
                }
                None => Err(LayoutError::record(format!(
                    "{}: reference {o}+{l} outside the {}-byte string area or not on a character boundary",
                    what(),
                    strings.len()
                ))),
            }
        };
        for i in 0..self.events {
            let rec = record(self.records, i, EVENT_LEN);
            let flags = u32_at(rec, 72);
            if flags & !(HAS_VALUE | HAS_UNIT | HAS_BODY) != 0 || u32_at(rec, 76) != 0 {
                return Err(LayoutError::record(format!(
                    "event {i}: unknown flag bits or reserved bytes set"
                )));
            }
            str_ref(&|| format!("event {i} source"), rec, 32)?;
            str_ref(&|| format!("event {i} kind"), rec, 40)?;
            if flags & HAS_UNIT != 0 {
                str_ref(&|| format!("event {i} unit"), rec, 48)?;
            }
            if flags & HAS_BODY != 0 {
                str_ref(&|| format!("event {i} body"), rec, 56)?;
            }
            let (first, count) = (u32_at(rec, 64) as usize, u32_at(rec, 68) as usize);
            if first != next_attr || count > attr_count - next_attr {
                return Err(LayoutError::record(format!(
                    "event {i}: attributes {first}+{count} are not the next in order (expected to start at {next_attr}, {} left)",
                    attr_count - next_attr
                )));
            }
            for j in first..first + count {
                let attr = record(self.attrs, j, ATTR_LEN);
                str_ref(&|| format!("attribute {j} key"), attr, 0)?;
                if u32_at(attr, 12) != 0 {
                    return Err(LayoutError::record(format!(
                        "attribute {j}: reserved bytes set"
                    )));
                }
                match u32_at(attr, 8) {
                    TAG_STR => str_ref(&|| format!("attribute {j} value"), attr, 16)?,
                    TAG_INT | TAG_FLOAT => {}
                    TAG_BOOL if u64_at(attr, 16) <= 1 => {}
                    TAG_BOOL => {
                        return Err(LayoutError::record(format!(
                            "attribute {j}: boolean is neither 0 nor 1"
                        )));
                    }
                    tag => {
                        return Err(LayoutError::record(format!(
                            "attribute {j}: unknown tag {tag}"
                        )));
                    }
                }
            }
            next_attr += count;
        }
        if next_attr != attr_count {
            return Err(LayoutError::record(format!(
                "events use {next_attr} of {attr_count} attributes"
            )));
        }
        self.referenced = referenced;
        Ok(self)
    }

    /// The number of events.
    pub fn len(&self) -> usize {
        self.events
    }

    /// Whether the batch holds no event.
    pub fn is_empty(&self) -> bool {
        self.events == 0
    }

    /// The total length of every string referenced, counting shared bytes
    /// once per reference: what reading every event into owned strings
    /// costs. The host holds it to its output cap.
    pub fn referenced_bytes(&self) -> u64 {
        self.referenced
    }

    /// Event `i`, if `i < len()`.
    pub fn event(&self, i: usize) -> Option<EventView<'a>> {
        (i < self.events).then(|| {
            let rec = record(self.records, i, EVENT_LEN);
            let flags = u32_at(rec, 72);
            let s = |at| str_at(self.strings, rec, at);
            let first = u32_at(rec, 64) as usize;
            let count = u32_at(rec, 68) as usize;
            EventView {
                fields: Fields {
                    id: (u64_at(rec, 0), u64_at(rec, 8)),
                    time_ns: u64_at(rec, 16) as i64,
                    source: s(32),
                    kind: s(40),
                    value: (flags & HAS_VALUE != 0).then(|| f64::from_bits(u64_at(rec, 24))),
                    unit: (flags & HAS_UNIT != 0).then(|| s(48)),
                    body: (flags & HAS_BODY != 0).then(|| s(56)),
                },
                attrs: self
                    .attrs
                    .get(first * ATTR_LEN..(first + count) * ATTR_LEN)
                    .unwrap_or_default(),
                strings: self.strings,
            }
        })
    }

    /// Every event, in order.
    pub fn iter(&self) -> impl Iterator<Item = EventView<'a>> + 'a {
        let batch = *self;
        (0..self.events).filter_map(move |i| batch.event(i))
    }
}

/// One event of a checked [`Batch`], borrowed.
#[derive(Debug, Clone, Copy)]
pub struct EventView<'a> {
    /// Every field but the attributes.
    pub fields: Fields<'a>,
    attrs: &'a [u8],
    strings: &'a str,
}

impl<'a> EventView<'a> {
    /// The number of attributes.
    pub fn attr_count(&self) -> usize {
        self.attrs.len() / ATTR_LEN
    }

    /// The attributes, in order, as (key, value).
    pub fn attrs(&self) -> AttrIter<'a> {
        AttrIter {
            attrs: self.attrs,
            strings: self.strings,
        }
    }
}

/// The attributes of an [`EventView`].
#[derive(Debug, Clone)]
pub struct AttrIter<'a> {
    attrs: &'a [u8],
    strings: &'a str,
}

impl<'a> Iterator for AttrIter<'a> {
    type Item = (&'a str, Value<'a>);

    fn next(&mut self) -> Option<Self::Item> {
        let (rec, rest) = self.attrs.split_at_checked(ATTR_LEN)?;
        self.attrs = rest;
        let key = str_at(self.strings, rec, 0);
        let value = match u32_at(rec, 8) {
            TAG_INT => Value::Int(u64_at(rec, 16) as i64),
            TAG_FLOAT => Value::Float(f64::from_bits(u64_at(rec, 16))),
            TAG_BOOL => Value::Bool(u64_at(rec, 16) != 0),
            _ => Value::Str(str_at(self.strings, rec, 16)),
        };
        Some((key, value))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let n = self.attrs.len() / ATTR_LEN;
        (n, Some(n))
    }
}

impl ExactSizeIterator for AttrIter<'_> {}

/// Splits a decoder's frame buffer (`frame-batch.data` and `ends`) into
/// frames. `ends` must be non-decreasing and end at `data.len()`.
pub fn frames<'a>(data: &'a [u8], ends: &'a [u32]) -> Result<Vec<&'a [u8]>, LayoutError> {
    let mut out = Vec::with_capacity(ends.len());
    let mut start = 0usize;
    for (i, &end) in ends.iter().enumerate() {
        let end = end as usize;
        let frame = data.get(start..end).ok_or_else(|| {
            LayoutError::record(format!(
                "frame {i}: end {end} before its start {start} or past the {}-byte data",
                data.len()
            ))
        })?;
        out.push(frame);
        start = end;
    }
    if start != data.len() {
        return Err(LayoutError::record(format!(
            "frames end at {start} but data is {} bytes",
            data.len()
        )));
    }
    Ok(out)
}

/// Record `i` of `size` bytes; empty if out of range (never, after parse).
pub(crate) fn record(area: &[u8], i: usize, size: usize) -> &[u8] {
    area.get(i * size..(i + 1) * size).unwrap_or_default()
}

pub(crate) fn u32_at(rec: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    if let Some(s) = rec.get(at..at + 4) {
        b.copy_from_slice(s);
    }
    u32::from_le_bytes(b)
}

pub(crate) fn u64_at(rec: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    if let Some(s) = rec.get(at..at + 8) {
        b.copy_from_slice(s);
    }
    u64::from_le_bytes(b)
}

/// The string a reference at `at` points to; empty if invalid (never,
/// after parse).
fn str_at<'a>(strings: &'a str, rec: &[u8], at: usize) -> &'a str {
    let (o, l) = (u32_at(rec, at) as usize, u32_at(rec, at + 4) as usize);
    o.checked_add(l)
        .and_then(|end| strings.get(o..end))
        .unwrap_or_default()
}
