//! How the config refers to a plugin: its file, the config values it is
//! given at `init`, the grants it may use and the limits it runs under. One
//! shape for every role (decoder, source, validator, privacy, sampler), so a
//! plugin moves between roles without relearning its table.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A plugin reference with its own config, grants and limits.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PluginRef {
    /// A name for logs and metrics; defaults to the file stem.
    pub name: Option<String>,
    /// The component file.
    pub plugin: PathBuf,
    /// Key/value config handed to the plugin (values are strings; numbers
    /// and booleans are accepted and converted).
    #[serde(default)]
    pub config: BTreeMap<String, ConfigValue>,
    /// Capabilities beyond the deny-all sandbox.
    #[serde(default)]
    pub grants: GrantsConfig,
    /// Per-plugin limits; defaults apply where unset.
    #[serde(default)]
    pub limits: LimitsConfig,
}

/// A plugin config value: TOML strings, numbers and booleans all become the
/// string the plugin reads.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum ConfigValue {
    /// A string.
    Str(String),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
}

impl std::fmt::Display for ConfigValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigValue::Str(s) => f.write_str(s),
            ConfigValue::Int(i) => write!(f, "{i}"),
            ConfigValue::Float(x) => write!(f, "{x}"),
            ConfigValue::Bool(b) => write!(f, "{b}"),
        }
    }
}

/// `grants = { … }` of a plugin.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GrantsConfig {
    /// Environment variables the plugin may read.
    pub env: Vec<String>,
    /// Directories the plugin may read.
    pub read_dirs: Vec<PathBuf>,
    /// Where it may connect: `false` (the default), `true` (anywhere), or
    /// an allow-list of `"IP:PORT"` (`*` for any IP or port).
    pub network: NetworkConfig,
}

/// `network = false | true | ["IP:PORT", …]`, checked as it is parsed so
/// a bad entry is an error naming the key and line.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfig(pub crate::plugin::NetworkGrant);

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig(crate::plugin::NetworkGrant::None)
    }
}

impl<'de> Deserialize<'de> for NetworkConfig {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use crate::plugin::{NetworkGrant, SocketRule};
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = NetworkConfig;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str(r#"true, false, or a list of "IP:PORT" destinations"#)
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<NetworkConfig, E> {
                Ok(NetworkConfig(if v {
                    NetworkGrant::Any
                } else {
                    NetworkGrant::None
                }))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<NetworkConfig, A::Error> {
                let mut rules = Vec::new();
                while let Some(entry) = seq.next_element::<String>()? {
                    let rule: SocketRule = entry.parse().map_err(serde::de::Error::custom)?;
                    rules.push(rule);
                }
                Ok(NetworkConfig(NetworkGrant::Allow(rules)))
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl Serialize for NetworkConfig {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use crate::plugin::NetworkGrant;
        match &self.0 {
            NetworkGrant::None => s.serialize_bool(false),
            NetworkGrant::Any => s.serialize_bool(true),
            NetworkGrant::Allow(rules) => s.collect_seq(rules.iter().map(ToString::to_string)),
        }
    }
}

/// `limits = { … }` of a plugin.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Wall-clock deadline per call (a batch, `init`, or instantiation):
    /// the fixed part.
    pub deadline_ms: Option<u64>,
    /// The part of a batch call's deadline per event (per frame, per polled
    /// event), in µs: a call over N events gets `deadline_ms + N ×
    /// deadline_per_event_us / 1000` ms (at most 60 s). Default 100; 0
    /// gives every call `deadline_ms` alone.
    pub deadline_per_event_us: Option<u64>,
    /// Memory budget of one instance: all its memories and tables together.
    pub memory_mb: Option<usize>,
    /// The most core/component instances one instance's store may create.
    pub max_instances: Option<usize>,
    /// The most linear memories.
    pub max_memories: Option<usize>,
    /// The most tables.
    pub max_tables: Option<usize>,
    /// The most host resources (streams, pollables, sockets) held at once.
    pub max_resources: Option<usize>,
}
