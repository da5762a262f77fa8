//! The field mapping from one JSON object to one event.

use std::borrow::Cow;

use halyard_sdk::{AttrRef, Attribute, Config, Event, EventSink, InitError, NewEvent};
use serde_json::{Map, Number, Value};

use crate::limits::Limits;
use crate::line::{self, Field, Line, Object, ParseError};
use crate::topic::{FromTopic, TopicPattern};

/// How the decoder maps JSON fields onto an event (see README.md).
#[derive(Debug)]
pub struct Mapping {
    pub(crate) source_field: String,
    pub(crate) kind_field: String,
    pub(crate) value_field: String,
    pub(crate) unit_field: String,
    pub(crate) time_field: String,
    /// Nanoseconds per unit of the time field.
    time_scale: i64,
    pub(crate) kind_prefix: String,
    pub(crate) default_source: Option<String>,
    /// Source and kind from an MQTT topic, for lines naming neither.
    pub(crate) topic_pattern: Option<TopicPattern>,
    /// The host's caps, checked on every event (see [`Limits`]).
    pub(crate) limits: Limits,
}

/// Fallback field names tried when the configured one is absent.
const SOURCE_FALLBACK: &str = "source";
const KIND_FALLBACK: &str = "kind";

impl Mapping {
    /// Parses and checks the config (see README.md).
    pub fn from_config(config: &Config) -> Result<Self, InitError> {
        let field = |key: &str, default: &str| -> Result<String, InitError> {
            let name = config.get(key).map(str::trim).unwrap_or(default);
            if name.is_empty() {
                return Err(InitError::for_key(key, format!("{key} must not be empty")));
            }
            Ok(name.to_owned())
        };
        let time_unit = config.get("time_unit").map(str::trim).unwrap_or("ms");
        let time_scale = match time_unit {
            "s" => 1_000_000_000,
            "ms" => 1_000_000,
            "us" => 1_000,
            "ns" => 1,
            other => {
                return Err(InitError::for_key(
                    "time_unit",
                    format!("invalid value {other:?} for time_unit: expected s, ms, us or ns"),
                ));
            }
        };
        Ok(Mapping {
            source_field: field("source_field", "device")?,
            kind_field: field("kind_field", "metric")?,
            value_field: field("value_field", "value")?,
            unit_field: field("unit_field", "unit")?,
            time_field: field("time_field", "ts")?,
            time_scale,
            kind_prefix: config.get("kind_prefix").unwrap_or_default().to_owned(),
            default_source: config.get("default_source").map(str::to_owned),
            topic_pattern: config
                .get("topic_pattern")
                .map(|p| TopicPattern::parse(p.trim()))
                .transpose()
                .map_err(|message| InitError::for_key("topic_pattern", message))?,
            limits: Limits::from_config(config)?,
        })
    }

    /// Decodes every line of a frame, all or nothing: the first bad line
    /// fails the whole frame with `line {n}: {reason}`. A line whose event
    /// would break a host cap is a bad line (see [`Limits`]).
    pub fn decode_frame(
        &self,
        data: &[u8],
        origin: &str,
        now: &mut dyn FnMut() -> i64,
    ) -> Result<Vec<Event>, String> {
        let mut events = Vec::new();
        self.each_event(data, origin, now, |event| events.push(event.to_event()))?;
        Ok(events)
    }

    /// [`Mapping::decode_frame`] into the SDK's batch: the same events,
    /// pushed as borrowed fields (mostly slices of the line). A failed
    /// frame's events are taken back by the caller ([`EventSink::frame`]).
    pub fn decode_frame_into(
        &self,
        data: &[u8],
        origin: &str,
        now: &mut dyn FnMut() -> i64,
        out: &mut EventSink<'_>,
    ) -> Result<(), String> {
        self.each_event(data, origin, now, |event| event.push_to(out))
    }

    /// Every line of a frame as a [`LineEvent`] handed to `each`, in order,
    /// until the first bad line.
    fn each_event(
        &self,
        data: &[u8],
        origin: &str,
        now: &mut dyn FnMut() -> i64,
        mut each: impl FnMut(LineEvent<'_>),
    ) -> Result<(), String> {
        let topic = self
            .topic_pattern
            .as_ref()
            .and_then(|p| p.captures(origin))
            .unwrap_or_default();
        let mut count = 0;
        for (index, raw) in data.split(|b| *b == b'\n').enumerate() {
            let n = index + 1;
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            let line = std::str::from_utf8(raw).map_err(|_| format!("line {n}: not UTF-8"))?;
            if line.trim().is_empty() {
                continue;
            }
            let event = self
                .limits
                .room_for_another(count)
                .and_then(|()| self.decode_line(line, origin, &topic, now))
                .and_then(|event| event.check(&self.limits, &self.time_field).map(|()| event))
                .map_err(|reason| format!("line {n}: {reason}"))?;
            each(event);
            count += 1;
        }
        Ok(())
    }

    /// One non-blank line to one event; the error is the reason only.
    fn decode_line<'a>(
        &'a self,
        line: &'a str,
        origin: &'a str,
        topic: &FromTopic<'a>,
        now: &mut dyn FnMut() -> i64,
    ) -> Result<LineEvent<'a>, String> {
        let parsed = line::parse(line, self.limits.parse_caps()).map_err(|err| match err {
            ParseError::Json(err) => json_error(err),
            ParseError::BodyTooLarge => self.limits.body_too_large(),
            ParseError::TooManyFields => self.limits.too_many_fields(),
        });
        let Line::Object(mut object) = parsed? else {
            return Err("not a JSON object".to_owned());
        };
        let source = take_text(&mut object, &self.source_field)?;
        let source = match source {
            Some(s) => s,
            None => take_text(&mut object, SOURCE_FALLBACK)?
                .or_else(|| topic.source.map(Cow::Borrowed))
                .or_else(|| self.default_source.as_deref().map(Cow::Borrowed))
                .unwrap_or(Cow::Borrowed(origin)),
        };
        let kind = match take_text(&mut object, &self.kind_field)? {
            Some(k) => Some(k),
            None => {
                take_text(&mut object, KIND_FALLBACK)?.or_else(|| topic.kind.map(Cow::Borrowed))
            }
        };
        let kind = match kind {
            None => Cow::Borrowed(""),
            Some(k) if self.kind_prefix.is_empty() => k,
            Some(k) => Cow::Owned(format!("{}{k}", self.kind_prefix)),
        };
        let value = match object.take(&self.value_field) {
            None | Some(Field::Null) => None,
            Some(Field::Number(n)) => n.as_f64(),
            Some(_) => return Err(format!("field {:?} is not a number", self.value_field)),
        };
        let unit = take_text(&mut object, &self.unit_field)?;
        let time_ns = match object.take(&self.time_field) {
            None | Some(Field::Null) => now(),
            Some(Field::Number(n)) => self.scale_time(&n)?,
            Some(_) => return Err(format!("field {:?} is not a number", self.time_field)),
        };

        let mut attributes = Vec::new();
        let mut body = Map::new();
        // Keys are unique (see `Object::insert`).
        for (key, field) in object.into_rest() {
            let value = match field {
                Field::Str(s) => Attr::Str(s),
                Field::Bool(b) => Attr::Bool(b),
                Field::Number(n) => number_attr(&n),
                Field::Null => {
                    body.insert(key.into_owned(), Value::Null);
                    continue;
                }
                Field::Nested(nested) => {
                    body.insert(key.into_owned(), nested);
                    continue;
                }
            };
            attributes.push((key, value));
        }
        let body = (!body.is_empty()).then(|| Value::Object(body).to_string());
        Ok(LineEvent {
            source,
            kind,
            value,
            unit,
            time_ns,
            attributes,
            body,
        })
    }

    /// A JSON time number in the configured unit, to nanoseconds.
    pub(crate) fn scale_time(&self, n: &Number) -> Result<i64, String> {
        let out_of_range = || format!("field {:?} is out of range", self.time_field);
        if let Some(i) = n.as_i64() {
            return i.checked_mul(self.time_scale).ok_or_else(out_of_range);
        }
        let ns = n.as_f64().map(|f| (f * self.time_scale as f64).round());
        match ns {
            // i64::MAX as f64 rounds up to 2^63, hence the strict bound.
            Some(ns) if ns.is_finite() && ns >= i64::MIN as f64 && ns < i64::MAX as f64 => {
                Ok(ns as i64)
            }
            _ => Err(out_of_range()),
        }
    }
}

/// Removes `field` and returns it as text: strings as-is, numbers and
/// booleans as their JSON text; absent or null is `None`.
fn take_text<'a>(object: &mut Object<'a>, field: &str) -> Result<Option<Cow<'a, str>>, String> {
    match object.take(field) {
        None | Some(Field::Null) => Ok(None),
        Some(Field::Str(s)) => Ok(Some(s)),
        Some(Field::Number(n)) => Ok(Some(Cow::Owned(Value::Number(n).to_string()))),
        Some(Field::Bool(b)) => Ok(Some(Cow::Owned(Value::Bool(b).to_string()))),
        Some(Field::Nested(_)) => Err(format!("field {field:?} is not a string")),
    }
}

/// `invalid JSON at column {c}: {what}`; the line number is added by the
/// caller, so serde_json's own "at line 1" suffix is dropped.
fn json_error(err: serde_json::Error) -> String {
    let text = err.to_string();
    let suffix = format!(" at line {} column {}", err.line(), err.column());
    let what = text.strip_suffix(&suffix).unwrap_or(&text);
    format!("invalid JSON at column {}: {what}", err.column())
}

/// A JSON number as an attribute: `int` when it is an integer that fits
/// i64, otherwise `float`.
fn number_attr<'a>(n: &Number) -> Attr<'a> {
    match n.as_i64() {
        Some(i) => Attr::Int(i),
        None => Attr::Float(n.as_f64().unwrap_or(f64::NAN)),
    }
}

/// An attribute value of a [`LineEvent`]: a string borrowed from the line
/// unless it had escapes.
#[derive(Debug)]
pub(crate) enum Attr<'a> {
    Str(Cow<'a, str>),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl Attr<'_> {
    fn as_ref(&self) -> AttrRef<'_> {
        match self {
            Attr::Str(s) => AttrRef::Str(s),
            Attr::Int(i) => AttrRef::Int(*i),
            Attr::Float(x) => AttrRef::Float(*x),
            Attr::Bool(b) => AttrRef::Boolean(*b),
        }
    }
}

/// One line's event, its strings borrowed from the line (or the config,
/// or the frame's origin) where they can be: what both the owned and the
/// views path build from, so the two cannot differ.
#[derive(Debug)]
pub(crate) struct LineEvent<'a> {
    pub(crate) source: Cow<'a, str>,
    pub(crate) kind: Cow<'a, str>,
    pub(crate) value: Option<f64>,
    pub(crate) unit: Option<Cow<'a, str>>,
    pub(crate) time_ns: i64,
    pub(crate) attributes: Vec<(Cow<'a, str>, Attr<'a>)>,
    pub(crate) body: Option<String>,
}

impl LineEvent<'_> {
    /// The host's caps (see [`Limits::check_parts`]).
    fn check(&self, limits: &Limits, time_field: &str) -> Result<(), String> {
        let attributes = self.attributes.iter().map(|(key, value)| {
            let text = match value {
                Attr::Str(s) => Some(&**s),
                _ => None,
            };
            (&**key, text)
        });
        limits.check_parts(&self.fields(), attributes, time_field)
    }

    /// Every field but the attributes, borrowed.
    fn fields(&self) -> NewEvent<'_> {
        NewEvent {
            time_ns: self.time_ns,
            source: &self.source,
            kind: &self.kind,
            value: self.value,
            unit: self.unit.as_deref(),
            body: self.body.as_deref(),
        }
    }

    /// The event, owned.
    fn to_event(&self) -> Event {
        let mut event = Event::new(self.source.as_ref(), self.kind.as_ref(), self.time_ns);
        event.value = self.value;
        event.unit = self.unit.as_deref().map(str::to_owned);
        event.attributes = self
            .attributes
            .iter()
            .map(|(key, value)| Attribute {
                key: key.clone().into_owned(),
                value: value.as_ref().to_owned(),
            })
            .collect();
        event.body = self.body.clone();
        event
    }

    /// The event, pushed into the SDK's batch.
    fn push_to(&self, out: &mut EventSink<'_>) {
        out.push(
            &self.fields(),
            self.attributes
                .iter()
                .map(|(key, value)| (&**key, value.as_ref())),
        );
    }
}
