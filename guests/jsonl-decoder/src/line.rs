//! One JSON line parsed into its top-level fields, without building a
//! `serde_json::Value` tree for the whole line.
//!
//! Why: the decoder only needs the top-level fields. Building a `Value` per
//! line costs an `IndexMap` with a hash per key and an owned `String` per key
//! and string value, which dominated the decoder's cost. Here the fields go
//! into a small vector in line order and strings borrow from the line when
//! they have no escapes. Only nested objects and arrays (which end up in the
//! body) are built as `Value`s.
//!
//! The result must be the same as parsing into `Value` (with serde_json's
//! `preserve_order`) and reading that: the same serde_json parser runs with
//! the same `deserialize_any` calls, so syntax errors, their columns, the
//! recursion limit and the number types are unchanged; a repeated key keeps
//! its first position and takes its last value, as `Map::insert` does.
//!
//! A line cannot make the parser build more than an event within the
//! host's caps needs: nested values stop at the body cap (see
//! `nested.rs`) and the top-level keys at [`Caps::max_fields`]. Past
//! 16 keys they are indexed, so a line with thousands of keys costs
//! O(n log n), not O(n²): time stays near-linear in the line's length.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Number, Value};

// A path relative to this file, so the native twin in `host/benches`,
// which compiles this file as its own module, finds it too.
#[path = "nested.rs"]
mod nested;

use nested::{Budget, NestedSeed, Over, lower_bound};

/// How much one line may make the parser build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// The most distinct top-level keys: more, and the event would surely
    /// break the attribute or the body cap.
    pub max_fields: usize,
    /// The body cap; nested values stop once their compact JSON surely
    /// passes it.
    pub max_body_bytes: usize,
}

impl Caps {
    /// The caps for events of at most `max_attributes` attributes and a
    /// `max_body_bytes` body: the keys such an event can come from are its
    /// attributes, the 7 mapped fields (source, kind, value, unit, time and
    /// the two fallbacks), and the body's fields, each at least 6 bytes of
    /// it (`"":[],`).
    pub fn for_event(max_attributes: usize, max_body_bytes: usize) -> Caps {
        Caps {
            max_fields: max_attributes
                .saturating_add(7)
                .saturating_add(max_body_bytes / 6 + 1),
            max_body_bytes,
        }
    }
}

impl Default for Caps {
    /// The caps of the default config (the host's default caps).
    fn default() -> Self {
        Caps::for_event(256, 1 << 20)
    }
}

/// Why a line did not parse.
#[derive(Debug)]
pub enum ParseError {
    /// Not JSON (serde_json's error, with its column).
    Json(serde_json::Error),
    /// The nested values would make a body over the cap.
    BodyTooLarge,
    /// More top-level keys than [`Caps::max_fields`].
    TooManyFields,
}

/// Parses one line into its top-level fields, within `caps`.
pub fn parse(line: &str, caps: Caps) -> Result<Line<'_>, ParseError> {
    let budget = Budget::new(caps.max_body_bytes);
    let mut de = serde_json::Deserializer::from_str(line);
    let parsed = LineSeed {
        budget: &budget,
        max_fields: caps.max_fields,
    }
    .deserialize(&mut de)
    .and_then(|line| de.end().map(|()| line));
    match (parsed, budget.over.get()) {
        (Ok(line), _) => Ok(line),
        (Err(_), Some(Over::Body)) => Err(ParseError::BodyTooLarge),
        (Err(_), Some(Over::Fields)) => Err(ParseError::TooManyFields),
        (Err(_), Some(Over::Array)) => Ok(Line::NotObject),
        (Err(err), None) => Err(ParseError::Json(err)),
    }
}

/// Past this many fields, keys are also looked up in an index.
const INDEX_AFTER: usize = 16;

/// One top-level value, as `Value` would hold it.
#[derive(Debug)]
pub enum Field<'a> {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number, typed as `Value::Number` types it.
    Number(Number),
    /// A string, borrowed from the line unless it had escapes.
    Str(Cow<'a, str>),
    /// An object or an array.
    Nested(Value),
}

/// The fields of a JSON object, in line order. A taken field leaves `None`.
#[derive(Debug, Default)]
pub struct Object<'a> {
    fields: Vec<(Cow<'a, str>, Option<Field<'a>>)>,
    /// Each key's position in `fields`, once there are more than
    /// [`INDEX_AFTER`] (a B-tree: no hashing an attacker could collide).
    index: BTreeMap<Cow<'a, str>, usize>,
}

impl<'a> Object<'a> {
    /// The position of `key` in `fields`.
    fn position(&self, key: &str) -> Option<usize> {
        if self.fields.len() > INDEX_AFTER {
            self.index.get(key).copied()
        } else {
            self.fields.iter().position(|(k, _)| k == key)
        }
    }

    /// Adds a field; a repeated key keeps its first position and takes the
    /// new value (serde_json's `Map::insert` with `preserve_order`). Returns
    /// the value it replaced.
    fn insert(&mut self, key: Cow<'a, str>, field: Field<'a>) -> Option<Field<'a>> {
        if let Some(i) = self.position(&key) {
            return self.fields[i].1.replace(field);
        }
        if self.fields.len() == INDEX_AFTER {
            self.index = self
                .fields
                .iter()
                .enumerate()
                .map(|(i, (k, _))| (k.clone(), i))
                .collect();
        }
        if self.fields.len() >= INDEX_AFTER {
            self.index.insert(key.clone(), self.fields.len());
        }
        self.fields.push((key, Some(field)));
        None
    }

    /// The number of distinct keys.
    fn len(&self) -> usize {
        self.fields.len()
    }

    /// Removes and returns the field named `key`; `None` when it is absent
    /// or was taken already.
    pub fn take(&mut self, key: &str) -> Option<Field<'a>> {
        let i = self.position(key)?;
        self.fields[i].1.take()
    }

    /// The fields not taken, in line order.
    pub fn into_rest(self) -> impl Iterator<Item = (Cow<'a, str>, Field<'a>)> {
        self.fields
            .into_iter()
            .filter_map(|(key, field)| field.map(|f| (key, f)))
    }
}

/// A parsed line: an object's fields, or a note that the line was valid
/// JSON of another type.
#[derive(Debug)]
pub enum Line<'a> {
    /// The line is an object.
    Object(Object<'a>),
    /// The line is JSON, but not an object.
    NotObject,
}

/// Visits the whole line, within the budget.
#[derive(Clone, Copy)]
struct LineSeed<'b> {
    budget: &'b Budget,
    max_fields: usize,
}

impl<'de> DeserializeSeed<'de> for LineSeed<'_> {
    type Value = Line<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Line<'de>, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for LineSeed<'_> {
    type Value = Line<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Line<'de>, A::Error> {
        let mut object = Object {
            fields: Vec::with_capacity(8),
            index: BTreeMap::new(),
        };
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let field = map.next_value_seed(FieldSeed(self.budget))?;
            // A nested value's key goes into the body too: `"key":` and a
            // comma (a lower bound, like the value's own).
            let key_cost = key.len() + 4;
            let nested = matches!(field, Field::Nested(_));
            if nested {
                self.budget.spend(key_cost)?;
            }
            if let Some(Field::Nested(old)) = object.insert(key, field) {
                self.budget.refund(key_cost + lower_bound(&old));
            }
            if object.len() > self.max_fields {
                self.budget.stop(Over::Fields)?;
            }
        }
        Ok(Line::Object(object))
    }

    /// An array is parsed to the end all the same (or to the body cap), so
    /// a syntax error in it is reported as one, as before.
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Line<'de>, A::Error> {
        NestedSeed(self.budget).visit_seq(seq).inspect_err(|_| {
            if self.budget.over.get() == Some(Over::Body) {
                self.budget.over.set(Some(Over::Array));
            }
        })?;
        Ok(Line::NotObject)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Line<'de>, E> {
        Ok(Line::NotObject)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Line<'de>, E> {
        Ok(Line::NotObject)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Line<'de>, E> {
        Ok(Line::NotObject)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Line<'de>, E> {
        Ok(Line::NotObject)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Line<'de>, E> {
        Ok(Line::NotObject)
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Line<'de>, E> {
        Ok(Line::NotObject)
    }
}

/// A key, borrowed from the line unless it had escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string key")
    }

    fn visit_borrowed_str<E: de::Error>(self, key: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(key))
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(key.to_owned()))
    }

    fn visit_string<E: de::Error>(self, key: String) -> Result<Self::Value, E> {
        Ok(Cow::Owned(key))
    }
}

/// A field's value, read as `Value`'s own visitor reads it; nested values
/// spend from the budget.
#[derive(Clone, Copy)]
struct FieldSeed<'b>(&'b Budget);

impl<'de> DeserializeSeed<'de> for FieldSeed<'_> {
    type Value = Field<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for FieldSeed<'_> {
    type Value = Field<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Field::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Field::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Self::Value, E> {
        Ok(Field::Bool(b))
    }

    fn visit_i64<E: de::Error>(self, i: i64) -> Result<Self::Value, E> {
        Ok(Field::Number(i.into()))
    }

    fn visit_u64<E: de::Error>(self, u: u64) -> Result<Self::Value, E> {
        Ok(Field::Number(u.into()))
    }

    /// As `Value`: a non-finite float (which serde_json never produces)
    /// would be null.
    fn visit_f64<E: de::Error>(self, f: f64) -> Result<Self::Value, E> {
        Ok(Number::from_f64(f).map_or(Field::Null, Field::Number))
    }

    fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
        Ok(Field::Str(Cow::Borrowed(s)))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
        Ok(Field::Str(Cow::Owned(s.to_owned())))
    }

    fn visit_string<E: de::Error>(self, s: String) -> Result<Self::Value, E> {
        Ok(Field::Str(Cow::Owned(s)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        NestedSeed(self.0).visit_seq(seq).map(Field::Nested)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        NestedSeed(self.0).visit_map(map).map(Field::Nested)
    }
}
