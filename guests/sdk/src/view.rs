//! Borrowed events: a stage's look at the host's batch without copying it.
//!
//! Why: the owned API hands a stage one `Event` per event, which costs the
//! guest an allocation for the source, the kind, the unit, the body, every
//! attribute key and string value, and the attribute vector, and as many
//! frees afterwards: most of what a simple validator or sampler spends per
//! event. An [`EventRef`] reads the same fields straight out of the buffer
//! the host sent. A plugin opts in by overriding the `*_views` method of its
//! trait; one that does not gets owned events exactly as before.

use halyard_flat::{Batch, EventView, Value};

use crate::{AttrValue, Attribute, Event, EventId};

/// The events of one stage call, borrowed from the host's batch.
#[derive(Debug, Clone, Copy)]
pub struct Events<'a> {
    batch: Batch<'a>,
}

impl<'a> Events<'a> {
    pub(crate) fn new(batch: Batch<'a>) -> Self {
        Events { batch }
    }

    /// Reads a batch in the host's layout. For a plugin's own tests of its
    /// `*_views` method, with bytes from [`Events::encode`]; the SDK's
    /// export glue reads the host's batches itself.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, String> {
        Batch::parse(bytes)
            .map(Events::new)
            .map_err(|err| err.to_string())
    }

    /// `events` in the layout the host sends (see [`Events::parse`]).
    pub fn encode(events: &[Event]) -> Vec<u8> {
        crate::flat::write_events(events)
    }

    /// The number of events.
    pub fn len(&self) -> usize {
        self.batch.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.batch.is_empty()
    }

    /// Event `i`, if `i < len()`.
    pub fn get(&self, i: usize) -> Option<EventRef<'a>> {
        self.batch.event(i).map(|view| EventRef { view })
    }

    /// Every event, in order: a stage returns one answer per item.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = EventRef<'a>> + 'a {
        let batch = self.batch;
        // Every index below `len` is an event of a checked batch.
        (0..batch.len()).map(move |i| EventRef {
            view: batch
                .event(i)
                .unwrap_or_else(|| unreachable!("index within the batch")),
        })
    }

    /// Every event, owned: what the owned trait methods are given.
    pub fn to_events(&self) -> Vec<Event> {
        self.iter().map(|event| event.to_event()).collect()
    }
}

/// One event, borrowed from the host's batch. The same fields as
/// [`Event`], read without copying.
#[derive(Debug, Clone, Copy)]
pub struct EventRef<'a> {
    view: EventView<'a>,
}

impl<'a> EventRef<'a> {
    pub(crate) fn view(&self) -> &EventView<'a> {
        &self.view
    }

    /// The host-assigned id.
    pub fn id(&self) -> EventId {
        let (hi, lo) = self.view.fields.id;
        EventId { hi, lo }
    }

    /// Nanoseconds since the Unix epoch.
    pub fn time_ns(&self) -> i64 {
        self.view.fields.time_ns
    }

    /// Where the event came from.
    pub fn source(&self) -> &'a str {
        self.view.fields.source
    }

    /// What the event is.
    pub fn kind(&self) -> &'a str {
        self.view.fields.kind
    }

    /// The numeric reading, if any.
    pub fn value(&self) -> Option<f64> {
        self.view.fields.value
    }

    /// The unit of the reading, if any.
    pub fn unit(&self) -> Option<&'a str> {
        self.view.fields.unit
    }

    /// The JSON body, if any.
    pub fn body(&self) -> Option<&'a str> {
        self.view.fields.body
    }

    /// The attributes, in order, as (key, value).
    pub fn attributes(&self) -> impl ExactSizeIterator<Item = (&'a str, AttrRef<'a>)> + 'a {
        self.view
            .attrs()
            .map(|(key, value)| (key, AttrRef::from(value)))
    }

    /// The value of the attribute named `key`, if present.
    pub fn attr(&self, key: &str) -> Option<AttrRef<'a>> {
        self.view
            .attrs()
            .find(|(k, _)| *k == key)
            .map(|(_, value)| AttrRef::from(value))
    }

    /// The event, owned.
    pub fn to_event(&self) -> Event {
        let f = &self.view.fields;
        Event {
            id: self.id(),
            time_ns: f.time_ns,
            source: f.source.to_owned(),
            kind: f.kind.to_owned(),
            value: f.value,
            unit: f.unit.map(str::to_owned),
            attributes: self
                .attributes()
                .map(|(key, value)| Attribute {
                    key: key.to_owned(),
                    value: value.to_owned(),
                })
                .collect(),
            body: f.body.map(str::to_owned),
        }
    }
}

/// An attribute value, borrowed: [`AttrValue`] without the copy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AttrRef<'a> {
    /// A string.
    Str(&'a str),
    /// A signed 64-bit integer.
    Int(i64),
    /// A 64-bit float.
    Float(f64),
    /// A boolean.
    Boolean(bool),
}

impl<'a> AttrRef<'a> {
    /// The string, if this is a `str` value.
    pub fn as_str(&self) -> Option<&'a str> {
        match self {
            AttrRef::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The value, owned.
    pub fn to_owned(&self) -> AttrValue {
        match *self {
            AttrRef::Str(s) => AttrValue::Str(s.to_owned()),
            AttrRef::Int(i) => AttrValue::Int(i),
            AttrRef::Float(x) => AttrValue::Float(x),
            AttrRef::Boolean(b) => AttrValue::Boolean(b),
        }
    }

    /// Whether `owned` holds the same value (floats compared bit for bit).
    pub fn same_as(&self, owned: &AttrValue) -> bool {
        match (*self, owned) {
            (AttrRef::Str(a), AttrValue::Str(b)) => a == b,
            (AttrRef::Int(a), AttrValue::Int(b)) => a == *b,
            (AttrRef::Float(a), AttrValue::Float(b)) => a.to_bits() == b.to_bits(),
            (AttrRef::Boolean(a), AttrValue::Boolean(b)) => a == *b,
            _ => false,
        }
    }
}

impl<'a> From<Value<'a>> for AttrRef<'a> {
    fn from(value: Value<'a>) -> Self {
        match value {
            Value::Str(s) => AttrRef::Str(s),
            Value::Int(i) => AttrRef::Int(i),
            Value::Float(x) => AttrRef::Float(x),
            Value::Bool(b) => AttrRef::Boolean(b),
        }
    }
}

/// Why: [`crate::Edit::set_attr`] takes plain borrowed values.
impl<'a> From<&'a str> for AttrRef<'a> {
    fn from(value: &'a str) -> Self {
        AttrRef::Str(value)
    }
}

/// Why: as for `&str`.
impl<'a> From<&'a String> for AttrRef<'a> {
    fn from(value: &'a String) -> Self {
        AttrRef::Str(value)
    }
}

/// Why: as for `&str`.
impl From<i64> for AttrRef<'_> {
    fn from(value: i64) -> Self {
        AttrRef::Int(value)
    }
}

/// Why: as for `&str`.
impl From<f64> for AttrRef<'_> {
    fn from(value: f64) -> Self {
        AttrRef::Float(value)
    }
}

/// Why: as for `&str`.
impl From<bool> for AttrRef<'_> {
    fn from(value: bool) -> Self {
        AttrRef::Boolean(value)
    }
}

/// Why: the codec's form of a value, for writing it into a batch or an
/// answer.
impl<'a> From<AttrRef<'a>> for Value<'a> {
    fn from(value: AttrRef<'a>) -> Self {
        match value {
            AttrRef::Str(s) => Value::Str(s),
            AttrRef::Int(i) => Value::Int(i),
            AttrRef::Float(x) => Value::Float(x),
            AttrRef::Boolean(b) => Value::Bool(b),
        }
    }
}

/// Why: an owned value read without a copy (pushing an owned event, and
/// `AttrValue`'s `Display`, which is this one).
impl<'a> From<&'a AttrValue> for AttrRef<'a> {
    fn from(value: &'a AttrValue) -> Self {
        match value {
            AttrValue::Str(s) => AttrRef::Str(s),
            AttrValue::Int(i) => AttrRef::Int(*i),
            AttrValue::Float(x) => AttrRef::Float(*x),
            AttrValue::Boolean(b) => AttrRef::Boolean(*b),
        }
    }
}

/// Why: one canonical text per value (strings as-is, numbers and booleans
/// with Rust's `Display`) for logs, hashing and comparisons; `AttrValue`'s
/// `Display` is this one, so a hash cannot depend on which API a plugin
/// used.
impl std::fmt::Display for AttrRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttrRef::Str(s) => f.write_str(s),
            AttrRef::Int(i) => write!(f, "{i}"),
            AttrRef::Float(x) => write!(f, "{x}"),
            AttrRef::Boolean(b) => write!(f, "{b}"),
        }
    }
}

/// The frames of one decoder call, borrowed from the host's buffer.
#[derive(Debug, Clone)]
pub struct Frames<'a> {
    frames: Vec<&'a [u8]>,
    content_type: &'a str,
    origin: &'a str,
}

impl<'a> Frames<'a> {
    pub(crate) fn new(frames: Vec<&'a [u8]>, content_type: &'a str, origin: &'a str) -> Self {
        Frames {
            frames,
            content_type,
            origin,
        }
    }

    /// The number of frames.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Every frame, in order: a decoder returns one result per item.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = FrameRef<'a>> + '_ {
        self.frames.iter().map(|data| FrameRef {
            data,
            content_type: self.content_type,
            origin: self.origin,
        })
    }

    /// Every frame, owned: what the owned trait methods are given.
    pub fn to_frames(&self) -> Vec<crate::Frame> {
        self.iter().map(|frame| frame.to_frame()).collect()
    }
}

/// One frame, borrowed: [`crate::Frame`] without the copies.
#[derive(Debug, Clone, Copy)]
pub struct FrameRef<'a> {
    /// The raw bytes, exactly as read.
    pub data: &'a [u8],
    /// The media type if the input knows it; empty when unknown.
    pub content_type: &'a str,
    /// Which input produced the frame (`file:/var/log/x.jsonl`).
    pub origin: &'a str,
}

impl FrameRef<'_> {
    /// The frame, owned.
    pub fn to_frame(&self) -> crate::Frame {
        crate::Frame {
            data: self.data.to_vec(),
            content_type: self.content_type.to_owned(),
            origin: self.origin.to_owned(),
        }
    }
}
