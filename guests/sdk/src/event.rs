//! Small helpers on the contract's types.
//!
//! Why: the generated types are plain records; these helpers make the common
//! operations (build an event, look up or change an attribute, reject with a
//! reason, report a config error) one call each.

use std::fmt;

use crate::{AttrValue, Attribute, Event, EventId, InitError, Verdict};

impl EventId {
    /// The all-zero id. Plugins leave ids at zero: the host assigns the real
    /// id when the event enters the pipeline.
    pub const ZERO: EventId = EventId { hi: 0, lo: 0 };
}

impl Event {
    /// A new event with the given source, kind and time, a zero id (the host
    /// assigns ids) and no value, unit, attributes or body.
    pub fn new(source: impl Into<String>, kind: impl Into<String>, time_ns: i64) -> Self {
        Event {
            id: EventId::ZERO,
            time_ns,
            source: source.into(),
            kind: kind.into(),
            value: None,
            unit: None,
            attributes: Vec::new(),
            body: None,
        }
    }

    /// Builder step: sets the numeric reading.
    pub fn with_value(mut self, value: f64) -> Self {
        self.value = Some(value);
        self
    }

    /// Builder step: sets the unit of the reading.
    pub fn with_unit(mut self, unit: impl Into<String>) -> Self {
        self.unit = Some(unit.into());
        self
    }

    /// Builder step: sets an attribute (see [`Event::set_attr`]).
    pub fn with_attr(mut self, key: impl Into<String>, value: impl Into<AttrValue>) -> Self {
        self.set_attr(key, value);
        self
    }

    /// The value of the attribute named `key`, if present.
    pub fn attr(&self, key: &str) -> Option<&AttrValue> {
        self.attributes
            .iter()
            .find(|a| a.key == key)
            .map(|a| &a.value)
    }

    /// Sets attribute `key`, replacing an existing one so keys stay unique
    /// (the contract requires unique keys within one event).
    pub fn set_attr(&mut self, key: impl Into<String>, value: impl Into<AttrValue>) {
        let key = key.into();
        let value = value.into();
        match self.attributes.iter_mut().find(|a| a.key == key) {
            Some(existing) => existing.value = value,
            None => self.attributes.push(Attribute { key, value }),
        }
    }

    /// Removes attribute `key`, returning its value if it was present.
    pub fn remove_attr(&mut self, key: &str) -> Option<AttrValue> {
        let index = self.attributes.iter().position(|a| a.key == key)?;
        Some(self.attributes.remove(index).value)
    }
}

impl AttrValue {
    /// The string, if this is a `str` value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            AttrValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The integer, if this is an `int` value.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            AttrValue::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The number as f64, if this is a `float` or an `int` value.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            AttrValue::Float(f) => Some(*f),
            AttrValue::Int(i) => Some(*i as f64),
            _ => None,
        }
    }

    /// The boolean, if this is a `boolean` value.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            AttrValue::Boolean(b) => Some(*b),
            _ => None,
        }
    }
}

/// Why: one canonical text form per value (strings as-is, numbers and
/// booleans with Rust's `Display`) for logs, hashing and comparisons.
impl fmt::Display for AttrValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::AttrRef::from(self).fmt(f)
    }
}

/// Why: lets `set_attr("room", "kitchen")` and friends take plain values.
impl From<&str> for AttrValue {
    fn from(value: &str) -> Self {
        AttrValue::Str(value.to_owned())
    }
}

/// Why: see `From<&str>`.
impl From<String> for AttrValue {
    fn from(value: String) -> Self {
        AttrValue::Str(value)
    }
}

/// Why: see `From<&str>`.
impl From<i64> for AttrValue {
    fn from(value: i64) -> Self {
        AttrValue::Int(value)
    }
}

/// Why: see `From<&str>`.
impl From<f64> for AttrValue {
    fn from(value: f64) -> Self {
        AttrValue::Float(value)
    }
}

/// Why: see `From<&str>`.
impl From<bool> for AttrValue {
    fn from(value: bool) -> Self {
        AttrValue::Boolean(value)
    }
}

impl Verdict {
    /// A rejection with the given reason (a sentence a person can act on).
    pub fn reject(reason: impl Into<String>) -> Self {
        Verdict::Reject(reason.into())
    }

    /// True for [`Verdict::Accept`].
    pub fn is_accept(&self) -> bool {
        matches!(self, Verdict::Accept)
    }
}

impl InitError {
    /// An init error that is not about one particular key.
    pub fn new(message: impl Into<String>) -> Self {
        InitError {
            key: None,
            message: message.into(),
        }
    }

    /// An init error about config key `key`, so the operator knows which
    /// setting to fix.
    pub fn for_key(key: impl Into<String>, message: impl Into<String>) -> Self {
        InitError {
            key: Some(key.into()),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_stay_unique() {
        let mut e = Event::new("s", "k", 1)
            .with_attr("a", 1i64)
            .with_attr("a", "x");
        assert_eq!(e.attributes.len(), 1);
        assert_eq!(e.attr("a").and_then(AttrValue::as_str), Some("x"));
        assert_eq!(e.remove_attr("a"), Some(AttrValue::Str("x".into())));
        assert_eq!(e.attr("a"), None);
        assert_eq!(e.id, EventId::ZERO);
    }

    #[test]
    fn display_is_canonical() {
        assert_eq!(AttrValue::Float(1.5).to_string(), "1.5");
        assert_eq!(AttrValue::Int(-3).to_string(), "-3");
        assert_eq!(AttrValue::Boolean(true).to_string(), "true");
    }
}
