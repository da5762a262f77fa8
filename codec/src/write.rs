//! Building a batch.

use crate::{
    ATTR_LEN, EVENT_LEN, Fields, HAS_BODY, HAS_UNIT, HAS_VALUE, HEADER_LEN, LAYOUT_VERSION,
    LayoutError, TAG_BOOL, TAG_FLOAT, TAG_INT, TAG_STR, Value,
};

/// A string reference: offset and length in the string area.
type Ref = (u32, u32);

/// Builds one batch, event by event. Reusable: [`Writer::finish_into`]
/// leaves it empty with its buffers' capacity kept, so a long-lived writer
/// allocates nothing in steady state.
///
/// Strings that repeat from one event to the next in the same place (the
/// source, kind, unit, and the key of the attribute at the same position)
/// are stored once: the common case of a batch from one device or one
/// input costs one copy of each, with no hashing.
#[derive(Debug, Default)]
pub struct Writer {
    records: Vec<u8>,
    attrs: Vec<u8>,
    strings: Vec<u8>,
    events: u32,
    attr_count: u32,
    last_source: Ref,
    last_kind: Ref,
    last_unit: Ref,
    /// The previous event's attribute key references, by position.
    last_keys: Vec<Ref>,
    keys: Vec<Ref>,
}

impl Writer {
    /// An empty writer.
    pub fn new() -> Self {
        Writer::default()
    }

    /// Events written so far.
    pub fn len(&self) -> usize {
        self.events as usize
    }

    /// Whether no event was written yet.
    pub fn is_empty(&self) -> bool {
        self.events == 0
    }

    /// Appends one event with its attributes.
    pub fn push<'s>(
        &mut self,
        fields: &Fields<'_>,
        attrs: impl IntoIterator<Item = (&'s str, Value<'s>)>,
    ) -> Result<(), LayoutError> {
        let source = self.intern(fields.source, self.last_source)?;
        let kind = self.intern(fields.kind, self.last_kind)?;
        let unit = match fields.unit {
            Some(u) => self.intern(u, self.last_unit)?,
            None => (0, 0),
        };
        let body = match fields.body {
            Some(b) => self.append(b)?,
            None => (0, 0),
        };
        self.last_source = source;
        self.last_kind = kind;
        if fields.unit.is_some() {
            self.last_unit = unit;
        }
        let first = self.attr_count;
        self.keys.clear();
        for (i, (key, value)) in attrs.into_iter().enumerate() {
            let hint = self.last_keys.get(i).copied().unwrap_or((0, 0));
            let key = self.intern(key, hint)?;
            self.keys.push(key);
            let (tag, payload) = match value {
                Value::Str(s) => {
                    let (o, l) = self.append(s)?;
                    (TAG_STR, u64::from(o) | (u64::from(l) << 32))
                }
                Value::Int(n) => (TAG_INT, n as u64),
                Value::Float(x) => (TAG_FLOAT, x.to_bits()),
                Value::Bool(b) => (TAG_BOOL, u64::from(b)),
            };
            let mut rec = [0u8; ATTR_LEN];
            put_ref(&mut rec[0..8], key);
            rec[8..12].copy_from_slice(&tag.to_le_bytes());
            rec[16..24].copy_from_slice(&payload.to_le_bytes());
            self.attrs.extend_from_slice(&rec);
            self.attr_count = self
                .attr_count
                .checked_add(1)
                .ok_or(LayoutError::TooLarge)?;
        }
        std::mem::swap(&mut self.keys, &mut self.last_keys);
        let count = self.attr_count - first;
        let mut flags = 0;
        if fields.value.is_some() {
            flags |= HAS_VALUE;
        }
        if fields.unit.is_some() {
            flags |= HAS_UNIT;
        }
        if fields.body.is_some() {
            flags |= HAS_BODY;
        }
        let mut rec = [0u8; EVENT_LEN];
        rec[0..8].copy_from_slice(&fields.id.0.to_le_bytes());
        rec[8..16].copy_from_slice(&fields.id.1.to_le_bytes());
        rec[16..24].copy_from_slice(&fields.time_ns.to_le_bytes());
        rec[24..32].copy_from_slice(&fields.value.unwrap_or(0.0).to_bits().to_le_bytes());
        put_ref(&mut rec[32..40], source);
        put_ref(&mut rec[40..48], kind);
        put_ref(&mut rec[48..56], unit);
        put_ref(&mut rec[56..64], body);
        rec[64..68].copy_from_slice(&first.to_le_bytes());
        rec[68..72].copy_from_slice(&count.to_le_bytes());
        rec[72..76].copy_from_slice(&flags.to_le_bytes());
        self.records.extend_from_slice(&rec);
        self.events = self.events.checked_add(1).ok_or(LayoutError::TooLarge)?;
        Ok(())
    }

    /// The finished batch; the writer is left empty.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        self.finish_into(&mut out);
        out
    }

    /// Writes the finished batch into `out` (cleared first) and leaves the
    /// writer empty, keeping both sides' capacity.
    pub fn finish_into(&mut self, out: &mut Vec<u8>) {
        out.clear();
        out.reserve(HEADER_LEN + self.records.len() + self.attrs.len() + self.strings.len());
        out.push(LAYOUT_VERSION);
        out.extend_from_slice(&[0, 0, 0]);
        out.extend_from_slice(&self.events.to_le_bytes());
        out.extend_from_slice(&self.attr_count.to_le_bytes());
        // `append` keeps the string area within u32.
        let strings = u32::try_from(self.strings.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&strings.to_le_bytes());
        out.extend_from_slice(&self.records);
        out.extend_from_slice(&self.attrs);
        out.extend_from_slice(&self.strings);
        self.clear();
    }

    /// Where the writer is now, to [`Writer::rollback`] to: how a decoder's
    /// failed frame takes back the events it had already written.
    pub fn mark(&self) -> Mark {
        Mark {
            records: self.records.len(),
            attrs: self.attrs.len(),
            strings: self.strings.len(),
            events: self.events,
            attr_count: self.attr_count,
        }
    }

    /// Forgets every event written since `mark` (taken from this writer,
    /// with no rollback to an earlier mark in between). The repeat hints
    /// are reset, since they may point at forgotten strings: the next
    /// event stores its strings afresh.
    pub fn rollback(&mut self, mark: Mark) {
        self.records.truncate(mark.records);
        self.attrs.truncate(mark.attrs);
        self.strings.truncate(mark.strings);
        self.events = mark.events.min(self.events);
        self.attr_count = mark.attr_count.min(self.attr_count);
        self.last_source = (0, 0);
        self.last_kind = (0, 0);
        self.last_unit = (0, 0);
        self.last_keys.clear();
    }

    /// Forgets every event written, keeping capacity.
    pub fn clear(&mut self) {
        self.records.clear();
        self.attrs.clear();
        self.strings.clear();
        self.events = 0;
        self.attr_count = 0;
        self.last_source = (0, 0);
        self.last_kind = (0, 0);
        self.last_unit = (0, 0);
        self.last_keys.clear();
        self.keys.clear();
    }

    /// `s`'s reference: `hint` if it already holds the same text, else a
    /// fresh copy.
    fn intern(&mut self, s: &str, hint: Ref) -> Result<Ref, LayoutError> {
        let (o, l) = (hint.0 as usize, hint.1 as usize);
        if l == s.len() && self.strings.get(o..o + l) == Some(s.as_bytes()) {
            return Ok(hint);
        }
        self.append(s)
    }

    fn append(&mut self, s: &str) -> Result<Ref, LayoutError> {
        if s.is_empty() {
            return Ok((0, 0));
        }
        let offset = u32::try_from(self.strings.len()).map_err(|_| LayoutError::TooLarge)?;
        let len = u32::try_from(s.len()).map_err(|_| LayoutError::TooLarge)?;
        offset.checked_add(len).ok_or(LayoutError::TooLarge)?;
        self.strings.extend_from_slice(s.as_bytes());
        Ok((offset, len))
    }
}

fn put_ref(out: &mut [u8], (offset, len): Ref) {
    out[0..4].copy_from_slice(&offset.to_le_bytes());
    out[4..8].copy_from_slice(&len.to_le_bytes());
}

/// A position in a [`Writer`] (see [`Writer::mark`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    records: usize,
    attrs: usize,
    strings: usize,
    events: u32,
    attr_count: u32,
}

impl Mark {
    /// Events written before the mark.
    pub fn events(&self) -> usize {
        self.events as usize
    }
}

/// Builds a decoder's frame buffer: every frame's bytes back to back, and
/// the end offset of each (the `data` and `ends` of `frame-batch`).
pub fn frame_buffer<'f>(
    frames: impl IntoIterator<Item = &'f [u8]>,
    data: &mut Vec<u8>,
    ends: &mut Vec<u32>,
) -> Result<(), LayoutError> {
    data.clear();
    ends.clear();
    for frame in frames {
        data.extend_from_slice(frame);
        ends.push(u32::try_from(data.len()).map_err(|_| LayoutError::TooLarge)?);
    }
    Ok(())
}
