//! Native twin of `guests/jsonl-decoder/src/line.rs`: one JSON line parsed
//! into its top-level fields without a `serde_json::Value` tree. A copy of
//! the guest's code; keep the two in step.

use std::borrow::Cow;
use std::fmt;

use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Number, Value};

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
}

impl<'a> Object<'a> {
    /// Adds a field; a repeated key keeps its first position and takes the
    /// new value (serde_json's `Map::insert` with `preserve_order`).
    fn insert(&mut self, key: Cow<'a, str>, field: Field<'a>) {
        match self.fields.iter_mut().find(|(k, _)| *k == key) {
            Some((_, slot)) => *slot = Some(field),
            None => self.fields.push((key, Some(field))),
        }
    }

    /// Removes and returns the field named `key`; `None` when it is absent
    /// or was taken already.
    pub fn take(&mut self, key: &str) -> Option<Field<'a>> {
        self.fields
            .iter_mut()
            .find(|(k, _)| k == key)
            .and_then(|(_, slot)| slot.take())
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

impl<'de> Deserialize<'de> for Line<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(LineVisitor)
    }
}

/// Visits the whole line.
struct LineVisitor;

impl<'de> Visitor<'de> for LineVisitor {
    type Value = Line<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Line<'de>, A::Error> {
        let mut object = Object {
            fields: Vec::with_capacity(8),
        };
        while let Some(key) = map.next_key_seed(KeySeed)? {
            object.insert(key, map.next_value_seed(FieldSeed)?);
        }
        Ok(Line::Object(object))
    }

    /// An array is parsed to the end all the same, so a syntax error in it is
    /// reported as one, as before.
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Line<'de>, A::Error> {
        Value::deserialize(SeqAccessDeserializer::new(seq))?;
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

/// A field's value, read as `Value`'s own visitor reads it.
struct FieldSeed;

impl<'de> DeserializeSeed<'de> for FieldSeed {
    type Value = Field<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for FieldSeed {
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
        Value::deserialize(SeqAccessDeserializer::new(seq)).map(Field::Nested)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        Value::deserialize(MapAccessDeserializer::new(map)).map(Field::Nested)
    }
}
