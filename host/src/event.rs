//! The host's view of an event: id assignment and the JSON form.
//!
//! The JSON form is what `halyard plugin run` reads and prints, and what
//! leaves the host:
//!
//! ```json
//! {"id":"018f…(32 hex)","time_ns":1700000000000000000,"source":"d1","kind":"temp",
//!  "value":21.5,"unit":"celsius","attributes":{"operator":"alice","seq":3},
//!  "body":{"raw":"…"}}
//! ```
//!
//! Attribute values keep their type: a JSON integer is an `int`, any other
//! number a `float` (printed with a decimal point), strings and booleans as
//! such. `value`, `unit` and `body` are omitted when absent.

use serde_json::{Map, Number, Value};

use crate::plugin::host::wall_clock_ns;
use crate::plugin::{AttrValue, Attribute, Event, EventId};

/// A fresh id: milliseconds since the epoch in the top 48 bits of `hi` (so
/// ids sort by creation time), the rest random.
pub fn new_id() -> EventId {
    let ms = u64::try_from(wall_clock_ns() / 1_000_000).unwrap_or(0);
    EventId {
        hi: (ms << 16) | (rand::random::<u64>() & 0xffff),
        lo: rand::random(),
    }
}

/// Whether the id is unset (all zero), as sources and decoders leave it.
pub fn is_nil(id: &EventId) -> bool {
    id.hi == 0 && id.lo == 0
}

/// The id as 32 lowercase hex digits.
pub fn id_to_string(id: &EventId) -> String {
    format!("{:016x}{:016x}", id.hi, id.lo)
}

/// Parses 32 hex digits (dashes allowed, as in a UUID).
pub fn parse_id(s: &str) -> Option<EventId> {
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 {
        return None;
    }
    let hi = u64::from_str_radix(&hex[..16], 16).ok()?;
    let lo = u64::from_str_radix(&hex[16..], 16).ok()?;
    Some(EventId { hi, lo })
}

/// Why a JSON value is not an event.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EventJsonError {
    /// The value is not a JSON object.
    #[error("an event must be a JSON object")]
    NotAnObject,
    /// A field has the wrong type or value.
    #[error("field `{field}`: {message}")]
    Field {
        /// The field.
        field: String,
        /// What is wrong with it.
        message: String,
    },
}

fn field_err(field: &str, message: &str) -> EventJsonError {
    EventJsonError::Field {
        field: field.to_string(),
        message: message.to_string(),
    }
}

/// The event as JSON.
pub fn to_json(event: &Event) -> Value {
    let mut obj = Map::new();
    obj.insert("id".into(), Value::String(id_to_string(&event.id)));
    obj.insert("time_ns".into(), Value::from(event.time_ns));
    obj.insert("source".into(), Value::String(event.source.clone()));
    obj.insert("kind".into(), Value::String(event.kind.clone()));
    if let Some(v) = event.value {
        obj.insert("value".into(), float_json(v));
    }
    if let Some(unit) = &event.unit {
        obj.insert("unit".into(), Value::String(unit.clone()));
    }
    if !event.attributes.is_empty() {
        let attrs = event
            .attributes
            .iter()
            .map(|a| (a.key.clone(), attr_json(&a.value)))
            .collect();
        obj.insert("attributes".into(), Value::Object(attrs));
    }
    if let Some(body) = &event.body {
        let parsed = serde_json::from_str(body).unwrap_or_else(|_| Value::String(body.clone()));
        obj.insert("body".into(), parsed);
    }
    Value::Object(obj)
}

/// A float as JSON; NaN and infinities (which JSON cannot hold) as strings.
fn float_json(v: f64) -> Value {
    Number::from_f64(v)
        .map(Value::Number)
        .unwrap_or_else(|| Value::String(v.to_string()))
}

fn attr_json(v: &AttrValue) -> Value {
    match v {
        AttrValue::Str(s) => Value::String(s.clone()),
        AttrValue::Int(i) => Value::from(*i),
        AttrValue::Float(f) => float_json(*f),
        AttrValue::Boolean(b) => Value::Bool(*b),
    }
}

/// Parses an event from its JSON form. A missing id stays nil (the host
/// assigns one); a missing time is now.
pub fn from_json(value: &Value) -> Result<Event, EventJsonError> {
    let obj = value.as_object().ok_or(EventJsonError::NotAnObject)?;
    let id = match obj.get("id") {
        None | Some(Value::Null) => EventId { hi: 0, lo: 0 },
        Some(Value::String(s)) => {
            parse_id(s).ok_or_else(|| field_err("id", "must be 32 hex digits"))?
        }
        Some(_) => return Err(field_err("id", "must be a string")),
    };
    let time_ns = match obj.get("time_ns") {
        None | Some(Value::Null) => wall_clock_ns(),
        Some(v) => v
            .as_i64()
            .ok_or_else(|| field_err("time_ns", "must be an integer"))?,
    };
    let value = match obj.get("value") {
        None | Some(Value::Null) => None,
        Some(v) => Some(parse_float(v).ok_or_else(|| field_err("value", "must be a number"))?),
    };
    let attributes = match obj.get("attributes") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| {
                Ok(Attribute {
                    key: k.clone(),
                    value: parse_attr(v).ok_or_else(|| {
                        field_err(
                            &format!("attributes.{k}"),
                            "must be a string, number or boolean",
                        )
                    })?,
                })
            })
            .collect::<Result<_, EventJsonError>>()?,
        Some(_) => return Err(field_err("attributes", "must be an object")),
    };
    Ok(Event {
        id,
        time_ns,
        source: opt_string(obj, "source")?.unwrap_or_default(),
        kind: opt_string(obj, "kind")?.unwrap_or_default(),
        value,
        unit: opt_string(obj, "unit")?,
        attributes,
        body: match obj.get("body") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.to_string()),
        },
    })
}

fn opt_string(obj: &Map<String, Value>, field: &str) -> Result<Option<String>, EventJsonError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(field_err(field, "must be a string")),
    }
}

/// A number, or the strings `NaN`, `inf` and `-inf` that [`to_json`] writes.
fn parse_float(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match s.as_str() {
            "NaN" => Some(f64::NAN),
            "inf" => Some(f64::INFINITY),
            "-inf" => Some(f64::NEG_INFINITY),
            _ => None,
        },
        _ => None,
    }
}

fn parse_attr(v: &Value) -> Option<AttrValue> {
    match v {
        Value::String(s) => Some(AttrValue::Str(s.clone())),
        Value::Bool(b) => Some(AttrValue::Boolean(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Some(AttrValue::Int(i)),
            None => n.as_f64().map(AttrValue::Float),
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_keeps_types() {
        let text = r#"{"id":"0000000000000001000000000000000f","time_ns":5,"source":"d1","kind":"temp","value":2.0,"unit":"c","attributes":{"a":"x","n":3,"f":1.5,"b":true},"body":{"k":[1,2]}}"#;
        let event = from_json(&serde_json::from_str(text).unwrap()).unwrap();
        assert_eq!(event.id.hi, 1);
        assert_eq!(event.id.lo, 15);
        assert!(matches!(event.attributes[1].value, AttrValue::Int(3)));
        assert!(matches!(event.attributes[2].value, AttrValue::Float(f) if f == 1.5));
        let back = to_json(&event);
        assert_eq!(back, serde_json::from_str::<Value>(text).unwrap());
    }

    #[test]
    fn bad_fields_name_the_field() {
        let err = from_json(&serde_json::json!({"value": "hot"})).unwrap_err();
        assert_eq!(err.to_string(), "field `value`: must be a number");
        let err = from_json(&serde_json::json!({"attributes": {"x": [1]}})).unwrap_err();
        assert!(err.to_string().contains("attributes.x"), "{err}");
        assert_eq!(
            from_json(&serde_json::json!(3)).unwrap_err(),
            EventJsonError::NotAnObject
        );
    }

    #[test]
    fn ids_are_unique_and_round_trip() {
        let a = new_id();
        let b = new_id();
        assert_ne!((a.hi, a.lo), (b.hi, b.lo));
        let parsed = parse_id(&id_to_string(&a)).unwrap();
        assert_eq!((parsed.hi, parsed.lo), (a.hi, a.lo));
        assert!(parse_id("xyz").is_none());
    }
}
