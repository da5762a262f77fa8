//! Native twin of `jsonl-decoder` (`guests/jsonl-decoder/src/mapping.rs`)
//! with its default config.
//!
//! Like the guest, it relies on serde_json's `preserve_order` feature (set in
//! the workspace `Cargo.toml`): `shift_remove` keeps the leftover fields in
//! line order, so attributes come out in the same order as the guest's.

use halyard::plugin::{AttrValue, Attribute, Event, EventId, Frame};
use serde_json::{Map, Number, Value};

use super::now_ns;

/// Sets an attribute, replacing an existing one (the SDK's `set_attr`).
fn set_attr(event: &mut Event, key: String, value: AttrValue) {
    match event.attributes.iter_mut().find(|a| a.key == key) {
        Some(existing) => existing.value = value,
        None => event.attributes.push(Attribute { key, value }),
    }
}

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

/// The default `kind_prefix`: empty, but the guest still formats the kind.
const KIND_PREFIX: &str = "";

/// One line to one event with the default field names.
fn decode_line(line: &str, origin: &str, now: &mut dyn FnMut() -> i64) -> Result<Event, String> {
    let Value::Object(mut object) = serde_json::from_str::<Value>(line).map_err(json_error)? else {
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
    let kind = kind.map_or_else(String::new, |k| format!("{KIND_PREFIX}{k}"));
    let value = match object.shift_remove("value") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => n.as_f64(),
        Some(_) => return Err("field \"value\" is not a number".to_owned()),
    };
    let unit = take_text(&mut object, "unit")?;
    let time_ns = match object.shift_remove("ts") {
        None | Some(Value::Null) => now(),
        Some(Value::Number(n)) => scale_ms(&n)?,
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
    for (key, value) in object {
        match value {
            Value::String(s) => set_attr(&mut event, key, AttrValue::Str(s)),
            Value::Bool(b) => set_attr(&mut event, key, AttrValue::Boolean(b)),
            Value::Number(n) => set_attr(&mut event, key, number_attr(&n)),
            nested @ (Value::Object(_) | Value::Array(_) | Value::Null) => {
                body.insert(key, nested);
            }
        }
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
fn take_text(object: &mut Map<String, Value>, field: &str) -> Result<Option<String>, String> {
    match object.shift_remove(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(scalar @ (Value::Number(_) | Value::Bool(_))) => Ok(Some(scalar.to_string())),
        Some(_) => Err(format!("field {field:?} is not a string")),
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
