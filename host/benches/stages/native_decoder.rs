//! Native twin of `jsonl-decoder` (`guests/jsonl-decoder/src/mapping.rs`)
//! with its default config.
//!
//! Like the guest, it parses each line into its top-level fields in line
//! order (the guest's own `line.rs`, compiled natively), borrowing
//! strings from the line, and builds `serde_json` values only for nested
//! objects and arrays, which go into the body.

use halyard::plugin::{AttrValue, Attribute, Event, EventId, Frame};
use serde_json::{Map, Number, Value};

use super::line::{self, Caps, Field, Line, Object, ParseError};
use super::now_ns;

/// `jsonl-decoder` with its default mapping: `device` → source, `metric` →
/// kind, `value`, `unit`, `ts` (ms) → time, other scalars → attributes,
/// nested values → body.
pub struct JsonlDecoder;

impl JsonlDecoder {
    /// One result per frame, reading the clock at most once per batch.
    pub fn decode_batch(&self, frames: &[Frame]) -> Vec<Result<Vec<Event>, String>> {
        let mut now = None;
        frames
            .iter()
            .map(|frame| decode_frame(frame, &mut || *now.get_or_insert_with(now_ns)))
            .collect()
    }
}

/// Every non-blank line of a frame, all or nothing.
fn decode_frame(frame: &Frame, now: &mut dyn FnMut() -> i64) -> Result<Vec<Event>, String> {
    let mut events = Vec::new();
    for (index, raw) in frame.data.split(|b| *b == b'\n').enumerate() {
        let n = index + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let line = std::str::from_utf8(raw).map_err(|_| format!("line {n}: not UTF-8"))?;
        if line.trim().is_empty() {
            continue;
        }
        let event = decode_line(line, &frame.origin, now)
            .map_err(|reason| format!("line {n}: {reason}"))?;
        events.push(event);
    }
    Ok(events)
}

/// One line to one event with the default field names (and the default
/// empty `kind_prefix`, so the kind is used as it is).
fn decode_line(line: &str, origin: &str, now: &mut dyn FnMut() -> i64) -> Result<Event, String> {
    let parsed = line::parse(line, Caps::default()).map_err(|err| match err {
        ParseError::Json(err) => json_error(err),
        // Lines past the caps; the benchmark's input has none.
        other => format!("{other:?}"),
    });
    let Line::Object(mut object) = parsed? else {
        return Err("not a JSON object".to_owned());
    };
    let source = match take_text(&mut object, "device")? {
        Some(s) => s,
        None => take_text(&mut object, "source")?.unwrap_or_else(|| origin.to_owned()),
    };
    let kind = match take_text(&mut object, "metric")? {
        Some(k) => Some(k),
        None => take_text(&mut object, "kind")?,
    };
    let kind = kind.unwrap_or_default();
    let value = match object.take("value") {
        None | Some(Field::Null) => None,
        Some(Field::Number(n)) => n.as_f64(),
        Some(_) => return Err("field \"value\" is not a number".to_owned()),
    };
    let unit = take_text(&mut object, "unit")?;
    let time_ns = match object.take("ts") {
        None | Some(Field::Null) => now(),
        Some(Field::Number(n)) => scale_ms(&n)?,
        Some(_) => return Err("field \"ts\" is not a number".to_owned()),
    };
    let mut event = Event {
        id: EventId { hi: 0, lo: 0 },
        time_ns,
        source,
        kind,
        value,
        unit,
        attributes: Vec::new(),
        body: None,
    };
    let mut body = Map::new();
    for (key, field) in object.into_rest() {
        let value = match field {
            Field::Str(s) => AttrValue::Str(s.into_owned()),
            Field::Bool(b) => AttrValue::Boolean(b),
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
        event.attributes.push(Attribute {
            key: key.into_owned(),
            value,
        });
    }
    if !body.is_empty() {
        event.body = Some(Value::Object(body).to_string());
    }
    Ok(event)
}

/// A millisecond time number to nanoseconds.
fn scale_ms(n: &Number) -> Result<i64, String> {
    const SCALE: i64 = 1_000_000;
    let out_of_range = || "field \"ts\" is out of range".to_owned();
    if let Some(i) = n.as_i64() {
        return i.checked_mul(SCALE).ok_or_else(out_of_range);
    }
    match n.as_f64().map(|f| (f * SCALE as f64).round()) {
        Some(ns) if ns.is_finite() && ns >= i64::MIN as f64 && ns < i64::MAX as f64 => {
            Ok(ns as i64)
        }
        _ => Err(out_of_range()),
    }
}

/// Removes `field` and returns it as text (strings as-is, scalars as JSON).
fn take_text(object: &mut Object<'_>, field: &str) -> Result<Option<String>, String> {
    match object.take(field) {
        None | Some(Field::Null) => Ok(None),
        Some(Field::Str(s)) => Ok(Some(s.into_owned())),
        Some(Field::Number(n)) => Ok(Some(Value::Number(n).to_string())),
        Some(Field::Bool(b)) => Ok(Some(Value::Bool(b).to_string())),
        Some(Field::Nested(_)) => Err(format!("field {field:?} is not a string")),
    }
}

/// The guest's JSON error text.
fn json_error(err: serde_json::Error) -> String {
    let text = err.to_string();
    let suffix = format!(" at line {} column {}", err.line(), err.column());
    let what = text.strip_suffix(&suffix).unwrap_or(&text);
    format!("invalid JSON at column {}: {what}", err.column())
}

/// A JSON number as an attribute: `int` if it fits i64, else `float`.
fn number_attr(n: &Number) -> AttrValue {
    match n.as_i64() {
        Some(i) => AttrValue::Int(i),
        None => AttrValue::Float(n.as_f64().unwrap_or(f64::NAN)),
    }
}
