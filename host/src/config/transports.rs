//! `[transport]` or `[[transport]]`: where batches go.
//!
//! One `[transport]` table is one transport named `default` that uses the
//! top-level `[batch]`, `[retry]` and `[breaker]`. `[[transport]]` lists
//! several, each with a unique `name`, an optional `kinds` filter (event
//! kind prefixes) and its own `batch`, `retry` and `breaker` tables, which
//! default to the top-level ones. Each transport is one buffer consumer:
//! it delivers at its own pace, and an event leaves the buffer only when
//! every transport it is for has settled it.

use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::model::{BatchSection, BreakerSection, RetrySection, TransportConfig};

/// The name the single `[transport]` table gets.
pub const DEFAULT_TRANSPORT: &str = halyard_buffer::DEFAULT_CONSUMER;

/// Most transports one host may have: one bit each in the buffer.
pub const MAX_TRANSPORTS: usize = halyard_buffer::MAX_CONSUMERS;

/// Every transport of a config, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct Transports {
    /// The transports.
    pub list: Vec<NamedTransport>,
    /// Written as one `[transport]` table (printed back the same way).
    pub single: bool,
}

/// One `[[transport]]` (or the single `[transport]`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct NamedTransport {
    /// Unique among the transports: its buffer progress, metrics label
    /// (`transport="name"`) and `/health` entry are kept under it.
    pub name: String,
    /// Event kind prefixes this transport wants (`["sensor.", "halyard."]`);
    /// empty means every event. An event no transport wants is not stored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<String>,
    /// This transport's batch limits; the top-level `[batch]` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<BatchSection>,
    /// This transport's backoff; the top-level `[retry]` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetrySection>,
    /// This transport's breaker; the top-level `[breaker]` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breaker: Option<BreakerSection>,
    /// The sink: `type = "http" | "file" | "stdout" | …` and its settings.
    #[serde(flatten)]
    pub sink: TransportConfig,
}

impl NamedTransport {
    /// The single `[transport]` table as the transport named `default`.
    pub fn default_for(sink: TransportConfig) -> NamedTransport {
        NamedTransport {
            name: DEFAULT_TRANSPORT.to_string(),
            kinds: Vec::new(),
            batch: None,
            retry: None,
            breaker: None,
            sink,
        }
    }

    /// The batch limits in force: its own, else the top-level ones.
    pub fn batch_or<'a>(&'a self, top: &'a BatchSection) -> &'a BatchSection {
        self.batch.as_ref().unwrap_or(top)
    }

    /// The backoff in force: its own, else the top-level one.
    pub fn retry_or<'a>(&'a self, top: &'a RetrySection) -> &'a RetrySection {
        self.retry.as_ref().unwrap_or(top)
    }

    /// The breaker in force: its own, else the top-level one.
    pub fn breaker_or<'a>(&'a self, top: &'a BreakerSection) -> &'a BreakerSection {
        self.breaker.as_ref().unwrap_or(top)
    }

    /// The buffer consumer this transport reads as.
    pub fn consumer(&self) -> halyard_buffer::Consumer {
        halyard_buffer::Consumer {
            name: self.name.clone(),
            kinds: self.kinds.clone(),
        }
    }
}

impl Transports {
    /// The first problem with the list, as (key, message): names must be
    /// unique, non-empty and usable as a metrics label; at most
    /// [`MAX_TRANSPORTS`]; a kind prefix must not be empty.
    pub(super) fn problem(&self) -> Option<(String, String)> {
        if self.list.is_empty() {
            return Some((
                "transport".into(),
                "must list at least one transport".into(),
            ));
        }
        if self.list.len() > MAX_TRANSPORTS {
            return Some((
                "transport".into(),
                format!(
                    "lists {} transports; at most {MAX_TRANSPORTS}",
                    self.list.len()
                ),
            ));
        }
        for (i, t) in self.list.iter().enumerate() {
            let key = |field: &str| {
                if self.single {
                    format!("transport.{field}")
                } else {
                    format!("transport[{i}].{field}")
                }
            };
            let valid = !t.name.is_empty()
                && t.name.len() <= 64
                && t.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
            if !valid {
                return Some((
                    key("name"),
                    "must be 1 to 64 characters of A-Z, a-z, 0-9, `_`, `-`, `.`".into(),
                ));
            }
            if self.list[..i].iter().any(|o| o.name == t.name) {
                return Some((key("name"), format!("`{}` is used twice", t.name)));
            }
            if t.kinds.iter().any(String::is_empty) {
                return Some((
                    key("kinds"),
                    "must not hold an empty prefix (leave `kinds` out to take every event)".into(),
                ));
            }
        }
        None
    }

    /// The config key of transport `i`'s `field`, as errors name it.
    pub fn key(&self, i: usize, field: &str) -> String {
        if self.single {
            format!("transport.{field}")
        } else {
            format!("transport[{i}].{field}")
        }
    }
}

impl<'de> Deserialize<'de> for Transports {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TableOrArray;
        impl<'de> Visitor<'de> for TableOrArray {
            type Value = Transports;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a [transport] table or [[transport]] tables")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Transports, A::Error> {
                let sink =
                    TransportConfig::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(Transports {
                    list: vec![NamedTransport::default_for(sink)],
                    single: true,
                })
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Transports, A::Error> {
                let list =
                    Vec::<NamedTransport>::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
                Ok(Transports {
                    list,
                    single: false,
                })
            }
        }
        deserializer.deserialize_any(TableOrArray)
    }
}

impl Serialize for Transports {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match (self.single, self.list.first()) {
            (true, Some(only)) => only.sink.serialize(serializer),
            _ => self.list.serialize(serializer),
        }
    }
}
