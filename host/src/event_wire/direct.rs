//! The event's JSON written byte by byte for the common shape, without
//! serde's map machinery: every accepted event is rendered once, and
//! serde's per-byte escape table and per-entry calls were most of that
//! cost (BENCHMARKS.md, "Issue 14, tenth round").
//!
//! Invariant: for the shapes it takes, the bytes are exactly what the
//! serde path in the parent module writes (the tests compare them for
//! every escape class, at every position in a string). It declines, and
//! leaves the serde path to do it, an event with a `body` (which is
//! re-parsed) or with duplicate attribute keys (map semantics).

use serde_json::ser::{CompactFormatter, Formatter};

use crate::plugin::{AttrValue, Event, EventId};

/// Appends the event's JSON object to `out` and returns true, or leaves
/// `out` untouched and returns false when the shape is not one it takes.
pub(super) fn write(out: &mut Vec<u8>, e: &Event) -> bool {
    if e.body.is_some() {
        return false;
    }
    out.extend_from_slice(b"{\"id\":\"");
    hex_id(out, &e.id);
    out.extend_from_slice(b"\",\"time_ns\":");
    int(out, e.time_ns);
    out.extend_from_slice(b",\"source\":");
    string(out, &e.source);
    out.extend_from_slice(b",\"kind\":");
    string(out, &e.kind);
    if let Some(v) = e.value {
        out.extend_from_slice(b",\"value\":");
        float(out, v);
    }
    if let Some(unit) = &e.unit {
        out.extend_from_slice(b",\"unit\":");
        string(out, unit);
    }
    if !e.attributes.is_empty() {
        out.extend_from_slice(b",\"attributes\":{");
        for (i, a) in e.attributes.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            string(out, &a.key);
            out.push(b':');
            match &a.value {
                AttrValue::Str(v) => string(out, v),
                AttrValue::Int(v) => int(out, *v),
                AttrValue::Float(v) => float(out, *v),
                AttrValue::Boolean(v) => out.extend_from_slice(if *v { b"true" } else { b"false" }),
            }
        }
        out.push(b'}');
    }
    out.push(b'}');
    true
}

/// The id as 32 lowercase hex digits, big-endian `hi` then `lo`.
fn hex_id(out: &mut Vec<u8>, id: &EventId) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for word in [id.hi, id.lo] {
        for byte in word.to_be_bytes() {
            out.push(DIGITS[usize::from(byte >> 4)]);
            out.push(DIGITS[usize::from(byte & 0x0f)]);
        }
    }
}

fn int(out: &mut Vec<u8>, v: i64) {
    // Writing to a `Vec` cannot fail.
    let _ = CompactFormatter.write_i64(out, v);
}

/// A finite float as serde_json writes it; NaN and infinities (which JSON
/// cannot hold) as their Rust names in quotes, as the serde path does.
fn float(out: &mut Vec<u8>, v: f64) {
    if v.is_finite() {
        let _ = CompactFormatter.write_f64(out, v);
    } else {
        out.push(b'"');
        out.extend_from_slice(v.to_string().as_bytes());
        out.push(b'"');
    }
}

/// A JSON string: copied as it is when nothing in it needs an escape (the
/// usual case), else through serde_json's own escaping.
fn string(out: &mut Vec<u8>, s: &str) {
    if needs_escape(s.as_bytes()) {
        let _ = serde_json::to_writer(out, s);
    } else {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    }
}

/// Whether JSON needs an escape for any byte: a control character, a
/// quote or a backslash. Sixteen bytes at a time without an early exit
/// inside a block, so the compiler can test a block in a few vector
/// instructions.
fn needs_escape(bytes: &[u8]) -> bool {
    let special = |b: u8| (b < 0x20) | (b == b'"') | (b == b'\\');
    let mut blocks = bytes.chunks_exact(16);
    for block in &mut blocks {
        if block.iter().fold(false, |hit, &b| hit | special(b)) {
            return true;
        }
    }
    blocks.remainder().iter().any(|&b| special(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::Attribute;

    /// Every byte class JSON escapes (and some it does not), alone and at
    /// every position of strings shorter and longer than a block, in every
    /// string field: the bytes equal the serde path's.
    #[test]
    fn every_escape_at_every_position_matches_serde() {
        let specials = [
            "\"", "\\", "\n", "\r", "\t", "\u{8}", "\u{c}", "\u{0}", "\u{1f}", "\u{7f}", "é", "/",
        ];
        let mut strings = vec![String::new()];
        for special in specials {
            for len in [0usize, 1, 15, 16, 17, 40] {
                for at in 0..=len {
                    let mut s = "a".repeat(len);
                    s.insert_str(at, special);
                    strings.push(s);
                }
            }
        }
        for s in &strings {
            let event = Event {
                id: EventId {
                    hi: u64::MAX,
                    lo: 0x0a,
                },
                time_ns: i64::MIN,
                source: s.clone(),
                kind: s.clone(),
                value: Some(-0.0),
                unit: Some(s.clone()),
                attributes: vec![
                    Attribute {
                        key: s.clone(),
                        value: AttrValue::Str(s.clone()),
                    },
                    Attribute {
                        key: format!("{s}2"),
                        value: AttrValue::Float(f64::INFINITY),
                    },
                    Attribute {
                        key: format!("{s}3"),
                        value: AttrValue::Int(i64::MAX),
                    },
                    Attribute {
                        key: format!("{s}4"),
                        value: AttrValue::Boolean(false),
                    },
                    Attribute {
                        key: format!("{s}5"),
                        value: AttrValue::Float(0.1 + 0.2),
                    },
                ],
                body: None,
            };
            let mut direct = Vec::new();
            assert!(write(&mut direct, &event));
            let expected = serde_json::to_vec(&crate::event::to_json(&event)).unwrap();
            assert_eq!(
                String::from_utf8(direct).unwrap(),
                String::from_utf8(expected).unwrap()
            );
        }
    }

    #[test]
    fn an_event_with_a_body_is_left_to_serde() {
        let mut out = b"x".to_vec();
        let event = Event {
            id: EventId { hi: 0, lo: 0 },
            time_ns: 0,
            source: "s".into(),
            kind: "k".into(),
            value: None,
            unit: None,
            attributes: Vec::new(),
            body: Some("{}".into()),
        };
        assert!(!write(&mut out, &event));
        assert_eq!(out, b"x");
    }
}
