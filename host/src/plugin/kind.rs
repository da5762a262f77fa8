//! The plugin kinds, one per world of the WIT package.

use std::fmt;
use std::str::FromStr;

/// Which world a component implements, and so which stage it can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginKind {
    /// Polled by the host; produces events on its own.
    Source,
    /// Turns raw frames from a host-owned input into events.
    Decoder,
    /// Accepts or rejects each event.
    Validator,
    /// Sees accepted events and returns new ones (alerts, summaries);
    /// contract 0.3.0 only, with a host key-value store.
    Detector,
    /// Keeps, rewrites or drops each event before it leaves the device.
    Privacy,
    /// Keeps or discards each event.
    Sampler,
}

impl PluginKind {
    /// Every kind, in pipeline order.
    pub const ALL: [PluginKind; 6] = [
        PluginKind::Source,
        PluginKind::Decoder,
        PluginKind::Validator,
        PluginKind::Detector,
        PluginKind::Privacy,
        PluginKind::Sampler,
    ];

    /// The name of the export that does this kind's work; its presence is how
    /// the host tells which world a component implements.
    pub fn stage_export(self) -> &'static str {
        match self {
            PluginKind::Source => "poll",
            PluginKind::Decoder => "decode",
            PluginKind::Validator => "validate",
            PluginKind::Detector => "detect",
            PluginKind::Privacy => "redact",
            PluginKind::Sampler => "sample",
        }
    }

    /// The exports every component of this kind must have.
    pub fn required_exports(self) -> &'static [&'static str] {
        match self {
            PluginKind::Source => &["info", "init", "poll"],
            PluginKind::Decoder => &["info", "init", "decode"],
            PluginKind::Validator => &["info", "init", "validate"],
            PluginKind::Detector => &["info", "init", "detect", "tick"],
            PluginKind::Privacy => &["info", "init", "redact"],
            PluginKind::Sampler => &["info", "init", "sample"],
        }
    }

    /// The lowercase name used in config files and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            PluginKind::Source => "source",
            PluginKind::Decoder => "decoder",
            PluginKind::Validator => "validator",
            PluginKind::Detector => "detector",
            PluginKind::Privacy => "privacy",
            PluginKind::Sampler => "sampler",
        }
    }
}

impl fmt::Display for PluginKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A kind name that is not one of the six.
#[derive(Debug, thiserror::Error)]
#[error(
    "unknown plugin kind `{0}` (expected source, decoder, validator, detector, privacy or sampler)"
)]
pub struct UnknownKind(pub String);

impl FromStr for PluginKind {
    type Err = UnknownKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PluginKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownKind(s.to_string()))
    }
}
