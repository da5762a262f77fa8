//! The host config: one TOML file, parsed, then `${VAR}` / `${VAR:-default}`
//! substituted from the environment into its string values (never into the
//! text, see [`substitute`]), deserialised into typed structs that refuse
//! unknown keys, then checked for what types cannot say (at least one
//! input, numbers in range, see [`ranges`]). Every error names the key and
//! its line.
//!
//! Secrets (the transport's API key) are masked whenever the config is
//! printed; see [`HostConfig::to_masked_toml`]. No error message quotes a
//! value that came from the environment: parse errors are scrubbed of them
//! ([`Substituted::scrub`]).

mod ingest;
mod ingest_socket;
mod inputs;
mod licence;
mod locate;
mod model;
mod mqtt;
mod plugin_ref;
pub mod ranges;
mod substitute;
mod supply;
mod transports;

use std::path::{Path, PathBuf};

pub use ingest::{DEFAULT_TOKEN_HEADER, IngestAuth, IngestToken, TokenAuth};
pub use ingest_socket::{IngestSocket, MAX_SOCKET_PATH_BYTES, SocketMode, resolve_group};
use serde::Deserialize;

pub use inputs::InputPlugin;
pub use licence::LicenceSection;
pub use model::*;
pub use mqtt::{MqttInput, MqttPassword, MqttTls};
pub use plugin_ref::*;
pub use substitute::{SubstituteError, Substituted, substitute, substitute_values};
pub use supply::{OnRemove, PluginsSection, ReloadSection, RolloutSection};
pub use transports::{DEFAULT_TRANSPORT, MAX_TRANSPORTS, NamedTransport, Transports};

/// The largest config file read: a real one is a few KiB.
pub const MAX_CONFIG_BYTES: u64 = 4 << 20;

/// Why a config file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A `${VAR}` reference could not be resolved.
    #[error("config {path}: {source}")]
    Substitute {
        /// The file.
        path: PathBuf,
        /// Which reference and line.
        source: SubstituteError,
    },
    /// TOML syntax, an unknown key, or a value of the wrong type; the
    /// message carries the line, the column and the key.
    #[error("config {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The TOML parser's message (line, column, key, expected values).
        message: String,
    },
    /// A value that parses but cannot work.
    #[error("config {path}{}: `{key}` {message}", line.map(|l| format!(" line {l}")).unwrap_or_default())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The line the key is on, when it is in the file (not a default).
        line: Option<usize>,
        /// The dotted key at fault.
        key: String,
        /// What is wrong with it.
        message: String,
    },
}

impl HostConfig {
    /// Reads, substitutes, parses and checks the config at `path`, taking
    /// variables from the process environment.
    ///
    /// The file is read like a plugin file (a regular file, never blocking,
    /// at most [`MAX_CONFIG_BYTES`]): hot reload re-reads it whenever it
    /// changes, and a FIFO or a device renamed over it must not stall the
    /// reloader.
    pub fn load(path: &Path) -> Result<HostConfig, ConfigError> {
        let io = |source| ConfigError::Io {
            path: path.to_path_buf(),
            source,
        };
        let bytes = crate::plugin::file::read_capped(path, MAX_CONFIG_BYTES, "config files")
            .map_err(|e| io(e.into_io()))?;
        let text = String::from_utf8(bytes).map_err(|_| {
            io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "not UTF-8 text",
            ))
        })?;
        Self::parse(path, &text, |name| std::env::var(name).ok())
    }

    /// Parses config text; `lookup` resolves `${VAR}` references inside
    /// string values.
    pub fn parse(
        path: &Path,
        text: &str,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<HostConfig, ConfigError> {
        let parse_error = |mut e: toml::de::Error, done: Option<&Substituted>| {
            e.set_input(Some(text));
            let message = with_key_line(text, e.span(), e.to_string().trim_end());
            ConfigError::Parse {
                path: path.to_path_buf(),
                message: done.map_or_else(|| message.clone(), |d| d.scrub(&message)),
            }
        };
        let mut root = toml::de::DeTable::parse(text).map_err(|e| parse_error(e, None))?;
        let done = substitute_values(&mut root, text, &lookup).map_err(|source| {
            ConfigError::Substitute {
                path: path.to_path_buf(),
                source,
            }
        })?;
        let mut config = HostConfig::deserialize(toml::de::Deserializer::from(root))
            .map_err(|e| parse_error(e, Some(&done)))?;
        config.check(path).map_err(|e| match e {
            ConfigError::Invalid {
                path, key, message, ..
            } => ConfigError::Invalid {
                line: locate::line_of(text, &key),
                path,
                key,
                message: done.scrub(&message),
            },
            other => other,
        })?;
        config.source = Some(path.to_path_buf());
        Ok(config)
    }

    fn check(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: &str| ConfigError::Invalid {
            path: path.to_path_buf(),
            line: None,
            key: key.to_string(),
            message: message.to_string(),
        };
        if self.inputs.is_empty() {
            return Err(invalid("input", "must list at least one [[input]]"));
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, input) in self.inputs.iter().enumerate() {
            let name = input.name();
            if !names.insert(name) {
                return Err(invalid(
                    &format!("input[{i}].name"),
                    &format!("`{name}` is used twice"),
                ));
            }
            if let Some((key, message)) = input.http_problem() {
                return Err(invalid(&format!("input[{i}].{key}"), &message));
            }
            if let InputConfig::Mqtt(mqtt) = input
                && let Some((key, message)) = mqtt.problem()
            {
                return Err(invalid(&format!("input[{i}].{key}"), &message));
            }
            if let InputConfig::Source { interval_ms: 0, .. } = input {
                return Err(invalid(
                    &format!("input[{i}].interval_ms"),
                    "must be at least 1",
                ));
            }
        }
        if self.batch.max_events == 0 {
            return Err(invalid("batch.max_events", "must be at least 1"));
        }
        if let Some((key, message)) = self.transports.problem() {
            return Err(invalid(&key, &message));
        }
        for (i, t) in self.transports.list.iter().enumerate() {
            let key = |field: &str| self.transports.key(i, field);
            if t.batch.as_ref().is_some_and(|b| b.max_events == 0) {
                return Err(invalid(&key("batch.max_events"), "must be at least 1"));
            }
            if let Some(retry) = &t.retry
                && (retry.initial_ms == 0 || retry.max_ms < retry.initial_ms)
            {
                return Err(invalid(&key("retry"), "needs 0 < initial_ms <= max_ms"));
            }
            if t.breaker.as_ref().is_some_and(|b| b.failure_threshold == 0) {
                return Err(invalid(
                    &key("breaker.failure_threshold"),
                    "must be at least 1",
                ));
            }
            if let TransportConfig::Http { url, .. } = &t.sink
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                return Err(invalid(&key("url"), "must start with http:// or https://"));
            }
        }
        if self.buffer.max_mb == 0 {
            return Err(invalid("buffer.max_mb", "must be at least 1"));
        }
        if self.retry.initial_ms == 0 || self.retry.max_ms < self.retry.initial_ms {
            return Err(invalid("retry", "needs 0 < initial_ms <= max_ms"));
        }
        if self.breaker.failure_threshold == 0 {
            return Err(invalid("breaker.failure_threshold", "must be at least 1"));
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return Err(invalid(
                "log.level",
                "is not a log filter (e.g. `info` or `warn,halyard=debug`)",
            ));
        }
        if self.health.stream_buffer == 0 {
            return Err(invalid("health.stream_buffer", "must be at least 1"));
        }
        if let Some(token) = &self.health.token
            && (token.expose().is_empty() || !token.expose().bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(invalid(
                "health.token",
                "must be non-empty printable ASCII without spaces",
            ));
        }
        if let Some((key, message)) = self.licence.problem() {
            return Err(invalid(key, message));
        }
        if let Some((key, message)) = self.rollout.problem(&self.plugins) {
            return Err(invalid(key, &message));
        }
        if let Some((key, message)) = ranges::check(self) {
            return Err(invalid(&key, &message));
        }
        Ok(())
    }

    /// The resolved config as TOML with every secret replaced by `***`, for
    /// `halyard config check` and logs.
    pub fn to_masked_toml(&self) -> String {
        let mut masked = self.clone();
        for t in &mut masked.transports.list {
            if let TransportConfig::Http { api_key, .. } = &mut t.sink
                && api_key.is_some()
            {
                *api_key = Some("***".into());
            }
        }
        masked.licence = masked.licence.masked();
        toml::to_string_pretty(&masked).unwrap_or_else(|e| format!("# cannot print config: {e}\n"))
    }
}

/// Adds the line of an unknown key to the parser's message. Inside tagged
/// tables (`[[input]]`, `[transport]`) the parser can only point at the
/// table's header, which leaves the reader hunting for the key.
fn with_key_line(text: &str, span: Option<std::ops::Range<usize>>, message: &str) -> String {
    let Some(field) = message
        .split("unknown field `")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
    else {
        return message.to_string();
    };
    let start = span.map(|s| s.start).unwrap_or(0).min(text.len());
    let first_line = text[..start].matches('\n').count() + 1;
    let found = text[start..]
        .lines()
        .enumerate()
        .skip(1)
        .take_while(|(_, l)| !l.trim_start().starts_with('['))
        .find(|(_, l)| {
            l.trim_start()
                .strip_prefix(field)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        });
    match found {
        Some((offset, _)) => format!("{message}\n`{field}` is on line {}", first_line + offset),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod transport_tests;
