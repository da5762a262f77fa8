//! Nested objects and arrays built as `serde_json::Value`s under a budget.
//!
//! Why: a `Value` costs ~70 bytes of guest memory per element, so a 2 MiB
//! line such as `{"x":[1,1,1,…]}` builds ~70 MiB of them and runs the
//! decoder out of memory: a trap, where a line whose body breaks the host's
//! body cap must be a failed frame. The builder counts a lower bound of the
//! compact JSON the values will take in the body and stops as soon as it
//! passes `max_body_bytes`: such a body would be refused anyway, and no
//! line can make the decoder build more than a body at the cap costs.
//!
//! The values built are the ones `Value::deserialize` builds (the same
//! `deserialize_any` calls on the same parser, the same `Map::insert`), so
//! the output, syntax errors and recursion limit are unchanged.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// What a line has spent, and which cap stopped it.
#[derive(Debug)]
pub struct Budget {
    /// The body cap, in bytes.
    max_body_bytes: usize,
    /// A lower bound of the compact JSON bytes of the nested values so far.
    body: Cell<usize>,
    /// Set when a cap stopped the parse.
    pub over: Cell<Option<Over>>,
}

/// The cap that stopped a parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Over {
    /// The nested values would make a body over `max_body_bytes`.
    Body,
    /// A line that is an array went past `max_body_bytes` (it is not an
    /// object, so it fails as such).
    Array,
    /// The line has more distinct top-level keys than an event can carry.
    Fields,
}

impl Budget {
    /// A fresh budget for one line.
    pub fn new(max_body_bytes: usize) -> Self {
        Budget {
            max_body_bytes,
            body: Cell::new(0),
            over: Cell::new(None),
        }
    }

    /// Adds `bytes` to the body's lower bound; an error once it passes the
    /// cap.
    pub fn spend<E: de::Error>(&self, bytes: usize) -> Result<(), E> {
        let used = self.body.get().saturating_add(bytes);
        self.body.set(used);
        if used > self.max_body_bytes {
            self.stop(Over::Body)
        } else {
            Ok(())
        }
    }

    /// Takes `bytes` back off the lower bound: a repeated key replaced a
    /// value (and its key is not written twice).
    pub fn refund(&self, bytes: usize) {
        self.body.set(self.body.get().saturating_sub(bytes));
    }

    /// Records that `cap` stopped the parse; the error unwinds serde.
    pub fn stop<E: de::Error>(&self, cap: Over) -> Result<(), E> {
        self.over.set(Some(cap));
        Err(E::custom("over a cap"))
    }
}

/// Builds one nested value, spending from the budget.
#[derive(Clone, Copy)]
pub struct NestedSeed<'b>(pub &'b Budget);

impl<'de> DeserializeSeed<'de> for NestedSeed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NestedSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any valid JSON value")
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Value, E> {
        self.0.spend(if b { 4 } else { 5 })?;
        Ok(Value::Bool(b))
    }

    fn visit_i64<E: de::Error>(self, i: i64) -> Result<Value, E> {
        self.0.spend(1)?;
        Ok(Value::Number(i.into()))
    }

    fn visit_u64<E: de::Error>(self, u: u64) -> Result<Value, E> {
        self.0.spend(1)?;
        Ok(Value::Number(u.into()))
    }

    fn visit_f64<E: de::Error>(self, f: f64) -> Result<Value, E> {
        self.0.spend(1)?;
        Ok(Number::from_f64(f).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<Value, E> {
        self.0.spend(s.len() + 2)?;
        Ok(Value::String(s.to_owned()))
    }

    fn visit_string<E: de::Error>(self, s: String) -> Result<Value, E> {
        self.0.spend(s.len() + 2)?;
        Ok(Value::String(s))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        self.0.spend(4)?;
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.0.spend(2)?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            if !items.is_empty() {
                self.0.spend(1)?;
            }
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.0.spend(2)?;
        let mut values = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            // `"key":` and, after the first entry, a comma.
            let cost = key.len() + 3 + usize::from(!values.is_empty());
            self.0.spend(cost)?;
            let value = map.next_value_seed(self)?;
            if let Some(old) = values.insert(key, value) {
                self.0.refund(cost + lower_bound(&old));
            }
        }
        Ok(Value::Object(values))
    }
}

/// The lower bound [`NestedSeed`] spent on `value`, for a refund.
pub fn lower_bound(value: &Value) -> usize {
    match value {
        Value::Null | Value::Bool(true) => 4,
        Value::Bool(false) => 5,
        Value::Number(_) => 1,
        Value::String(s) => s.len() + 2,
        Value::Array(items) => {
            2 + items.len().saturating_sub(1) + items.iter().map(lower_bound).sum::<usize>()
        }
        Value::Object(map) => {
            2 + map.len().saturating_sub(1)
                + map
                    .iter()
                    .map(|(k, v)| k.len() + 3 + lower_bound(v))
                    .sum::<usize>()
        }
    }
}
