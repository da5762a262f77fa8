//! Where a decoder on the views API writes its events: straight into the
//! batch the SDK returns to the host.
//!
//! Why: the owned API has a decoder build an `Event` per line (an
//! allocation per string and for the attribute vector), which the SDK then
//! copies into the returned batch and frees. Pushing borrowed fields (most
//! of them slices of the line itself) copies each string once, into the
//! batch, and allocates nothing per event in steady state.

use halyard_flat::{Fields, Value, Writer};

use crate::{AttrRef, Event};

/// An event's fields other than its attributes, borrowed, for
/// [`EventSink::push`]. The host assigns the id.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NewEvent<'a> {
    /// Nanoseconds since the Unix epoch.
    pub time_ns: i64,
    /// Where the event came from.
    pub source: &'a str,
    /// What the event is.
    pub kind: &'a str,
    /// The numeric reading, if any.
    pub value: Option<f64>,
    /// The unit of the reading, if any.
    pub unit: Option<&'a str>,
    /// The JSON body, if any (the host checks that it parses).
    pub body: Option<&'a str>,
}

/// Why: an owned event's fields, borrowed, for [`EventSink::push`] or for
/// checks written once against `NewEvent` (its id is left out).
impl<'a> From<&'a Event> for NewEvent<'a> {
    fn from(event: &'a Event) -> Self {
        NewEvent {
            time_ns: event.time_ns,
            source: &event.source,
            kind: &event.kind,
            value: event.value,
            unit: event.unit.as_deref(),
            body: event.body.as_deref(),
        }
    }
}

/// The events a decoder call returns, written as they are pushed.
pub struct EventSink<'w> {
    writer: &'w mut Writer,
}

impl<'w> EventSink<'w> {
    pub(crate) fn new(writer: &'w mut Writer) -> Self {
        EventSink { writer }
    }

    /// Runs `decode` on a sink of its own and returns its result with the
    /// events pushed, read back as owned events: for a plugin's own tests
    /// of its [`crate::Decoder::decode_views`].
    pub fn capture<R>(decode: impl FnOnce(&mut EventSink<'_>) -> R) -> (R, Vec<Event>) {
        let mut writer = Writer::new();
        let result = decode(&mut EventSink::new(&mut writer));
        let bytes = writer.finish();
        (result, crate::flat::read_events(&bytes))
    }

    /// Events pushed so far in this call (every frame's).
    pub fn len(&self) -> usize {
        self.writer.len()
    }

    /// Whether nothing was pushed yet.
    pub fn is_empty(&self) -> bool {
        self.writer.is_empty()
    }

    /// Adds one event with its attributes (keys unique, as the contract
    /// requires).
    pub fn push<'s>(
        &mut self,
        event: &NewEvent<'_>,
        attributes: impl IntoIterator<Item = (&'s str, AttrRef<'s>)>,
    ) {
        self.push_with_id((0, 0), event, attributes);
    }

    fn push_with_id<'s>(
        &mut self,
        id: (u64, u64),
        event: &NewEvent<'_>,
        attributes: impl IntoIterator<Item = (&'s str, AttrRef<'s>)>,
    ) {
        let fields = Fields {
            id,
            time_ns: event.time_ns,
            source: event.source,
            kind: event.kind,
            value: event.value,
            unit: event.unit,
            body: event.body,
        };
        let attrs = attributes
            .into_iter()
            .map(|(key, value)| (key, Value::from(value)));
        if let Err(err) = self.writer.push(&fields, attrs) {
            panic!("cannot encode the plugin's events: {err}");
        }
    }

    /// Adds an owned event. Its id goes into the batch as it is (a test's
    /// batch from [`crate::Events::encode`] needs it); the host assigns
    /// the ids of the events a stage makes.
    pub fn push_event(&mut self, event: &Event) {
        let fields = NewEvent::from(event);
        let attrs = event
            .attributes
            .iter()
            .map(|a| (a.key.as_str(), AttrRef::from(&a.value)));
        self.push_with_id((event.id.hi, event.id.lo), &fields, attrs);
    }

    /// Runs `decode` for one frame, all or nothing: on `Ok` the frame's
    /// result is the number of events it pushed; on `Err` the events it
    /// pushed are taken back and the error is the frame's result.
    pub fn frame(
        &mut self,
        decode: impl FnOnce(&mut Self) -> Result<(), String>,
    ) -> Result<u32, String> {
        let mark = self.writer.mark();
        match decode(self) {
            // `max_events_out` bounds a call far below u32.
            Ok(()) => {
                let pushed = self.writer.len().saturating_sub(mark.events());
                Ok(u32::try_from(pushed).unwrap_or(u32::MAX))
            }
            Err(err) => {
                self.writer.rollback(mark);
                Err(err)
            }
        }
    }
}
