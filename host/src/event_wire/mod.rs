//! The event's JSON form written straight from the event, without building
//! a `serde_json::Value` first: the buffer stores one of these per accepted
//! event, so this is on the hot path.
//!
//! Invariant: the bytes are exactly `serde_json::to_vec(&event::to_json(e))`
//! (same keys, order and number formatting), with `provenance` appended
//! when given; the tests compare the two.

mod direct;

use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::event::to_json;
use crate::plugin::{AttrValue, Attribute, Event, EventId};

/// The event's JSON form as bytes.
pub fn to_vec(event: &Event) -> Vec<u8> {
    to_vec_with::<()>(event, None)
}

/// The event's JSON form with a `provenance` member last (what
/// [`crate::provenance::Stamper`] adds), as bytes.
pub fn to_vec_with<P: Serialize>(event: &Event, provenance: Option<&P>) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write_with(&mut out, event, provenance);
    out
}

/// Appends the event's JSON form to `out` (empty if it cannot be written).
fn write_with<P: Serialize>(out: &mut Vec<u8>, event: &Event, provenance: Option<&P>) {
    let start = out.len();
    let duplicates = has_duplicate_keys(&event.attributes);
    if provenance.is_none() && !duplicates && direct::write(out, event) {
        return;
    }
    let written = if duplicates {
        // Rare: the map semantics (first position, last value) of `to_json`.
        let mut json = to_json(event);
        if let (Some(p), Some(obj)) = (provenance, json.as_object_mut()) {
            obj.insert(
                "provenance".into(),
                serde_json::to_value(p).unwrap_or_default(),
            );
        }
        serde_json::to_writer(&mut *out, &json)
    } else {
        serde_json::to_writer(&mut *out, &Wire { event, provenance })
    };
    if written.is_err() {
        out.truncate(start);
    }
}

/// The event's JSON form with a `provenance` member last whose JSON is
/// already rendered, in `parts` written one after the other (together one
/// valid JSON value): the same bytes as [`to_vec_with`] given that value,
/// without serialising it again or joining the parts first.
pub fn to_vec_with_raw(event: &Event, parts: &[&[u8]]) -> Vec<u8> {
    // Room for the provenance up front: one allocation per event, not a
    // second one to grow it.
    let extra = parts.iter().map(|p| p.len()).sum::<usize>() + 16;
    let mut out = Vec::with_capacity(256 + extra);
    write_with::<()>(&mut out, event, None);
    // `write_with` always writes an object with at least `id` in it.
    if out.last() == Some(&b'}') {
        out.pop();
        out.reserve(extra);
        out.extend_from_slice(b",\"provenance\":");
        for part in parts {
            out.extend_from_slice(part);
        }
        out.push(b'}');
    }
    out
}

struct Wire<'a, P> {
    event: &'a Event,
    provenance: Option<&'a P>,
}

impl<P: Serialize> Serialize for Wire<'_, P> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let e = self.event;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("id", &Hex(&e.id))?;
        map.serialize_entry("time_ns", &e.time_ns)?;
        map.serialize_entry("source", &e.source)?;
        map.serialize_entry("kind", &e.kind)?;
        if let Some(v) = e.value {
            map.serialize_entry("value", &Float(v))?;
        }
        if let Some(unit) = &e.unit {
            map.serialize_entry("unit", unit)?;
        }
        if !e.attributes.is_empty() {
            map.serialize_entry("attributes", &Attrs(&e.attributes))?;
        }
        if let Some(body) = &e.body {
            // Parsed like `to_json` does, so the output is the same.
            match serde_json::from_str::<serde_json::Value>(body) {
                Ok(parsed) => map.serialize_entry("body", &parsed)?,
                Err(_) => map.serialize_entry("body", body)?,
            }
        }
        if let Some(p) = self.provenance {
            map.serialize_entry("provenance", p)?;
        }
        map.end()
    }
}

/// The id as 32 lowercase hex digits.
struct Hex<'a>(&'a EventId);

impl Serialize for Hex<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&self.0.hi.to_be_bytes());
        bytes[8..].copy_from_slice(&self.0.lo.to_be_bytes());
        let mut text = [0u8; 32];
        // 16 bytes always fit 32 hex digits, which are always UTF-8.
        let _ = hex::encode_to_slice(bytes, &mut text);
        s.serialize_str(std::str::from_utf8(&text).unwrap_or_default())
    }
}

/// A float; NaN and infinities (which JSON cannot hold) as strings.
struct Float(f64);

impl Serialize for Float {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if self.0.is_finite() {
            s.serialize_f64(self.0)
        } else {
            s.collect_str(&self.0)
        }
    }
}

struct Attrs<'a>(&'a [Attribute]);

impl Serialize for Attrs<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for a in self.0 {
            match &a.value {
                AttrValue::Str(v) => map.serialize_entry(&a.key, v)?,
                AttrValue::Int(v) => map.serialize_entry(&a.key, v)?,
                AttrValue::Float(v) => map.serialize_entry(&a.key, &Float(*v))?,
                AttrValue::Boolean(v) => map.serialize_entry(&a.key, v)?,
            }
        }
        map.end()
    }
}

fn has_duplicate_keys(attributes: &[Attribute]) -> bool {
    attributes
        .iter()
        .enumerate()
        .any(|(i, a)| attributes[..i].iter().any(|b| b.key == a.key))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(key: &str, value: AttrValue) -> Attribute {
        Attribute {
            key: key.into(),
            value,
        }
    }

    fn event() -> Event {
        Event {
            id: EventId {
                hi: 0x0123_4567_89ab_cdef,
                lo: 15,
            },
            time_ns: -5,
            source: "d\"1".into(),
            kind: "temp\n".into(),
            value: None,
            unit: None,
            attributes: Vec::new(),
            body: None,
        }
    }

    #[test]
    fn bytes_equal_the_value_path_for_every_shape() {
        let mut shapes = vec![event()];
        let mut full = event();
        full.value = Some(2.0);
        full.unit = Some("celsius".into());
        full.attributes = vec![
            attr("s", AttrValue::Str("x\u{1}".into())),
            attr("n", AttrValue::Int(-3)),
            attr("f", AttrValue::Float(1.5e300)),
            attr("nan", AttrValue::Float(f64::NAN)),
            attr("b", AttrValue::Boolean(true)),
        ];
        full.body = Some(r#"{"z": [1, 2.50, {"a": null}], "a": "é"}"#.into());
        shapes.push(full.clone());
        let mut inf = full.clone();
        inf.value = Some(f64::NEG_INFINITY);
        inf.body = Some("not json {".into());
        shapes.push(inf);
        let mut dup = full;
        dup.attributes
            .push(attr("n", AttrValue::Str("again".into())));
        shapes.push(dup);
        let provenance = serde_json::json!({"host_id": "h", "seq": 3, "chain": ["a@1", "b@2"]});
        for e in &shapes {
            let expected = serde_json::to_vec(&to_json(e)).unwrap();
            assert_eq!(
                String::from_utf8(to_vec(e)).unwrap(),
                String::from_utf8(expected).unwrap()
            );
            let mut stamped = to_json(e);
            stamped
                .as_object_mut()
                .unwrap()
                .insert("provenance".into(), provenance.clone());
            assert_eq!(
                String::from_utf8(to_vec_with(e, Some(&provenance))).unwrap(),
                serde_json::to_string(&stamped).unwrap()
            );
            let raw = serde_json::to_vec(&provenance).unwrap();
            assert_eq!(
                String::from_utf8(to_vec_with_raw(e, &[&raw[..1], &raw[1..]])).unwrap(),
                serde_json::to_string(&stamped).unwrap()
            );
        }
    }
}
