//! The `mqtt` input's settings: which broker, which topic filters, who the
//! host is to the broker (a stable client id, so its persistent session and
//! the messages queued in it survive a restart), credentials, TLS, and the
//! bounds on one message and one commit.
//!
//! The password is a [`MqttPassword`]: it holds a transport [`Secret`] and
//! prints as `***` through `Debug`, `Display` and `Serialize`, so no log
//! line, error or `config check` output can show it.

use std::fmt;
use std::path::PathBuf;

use halyard_transport::Secret;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::plugin_ref::PluginRef;

/// The smallest `max_message_bytes`: below it ordinary readings are refused.
pub const MIN_MESSAGE_BYTES: u64 = 64;
/// The largest `max_message_bytes` (16 MiB): one message is one frame, and
/// the decoder's output for it must fit the plugin output cap.
pub const MAX_MESSAGE_BYTES: u64 = 16 << 20;
/// The most messages one commit may gather.
pub const MAX_BATCH_MESSAGES: u64 = 10_000;

/// `[[input]] type = "mqtt"`: subscribe to topic filters on a broker; each
/// message is a frame for `decoder` with `origin = "mqtt:<topic>"`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MqttInput {
    /// The input's name.
    pub name: String,
    /// The broker as `host:port` (a name or an IP address).
    pub broker: String,
    /// Topic filters subscribed to with QoS 1 (`+` and `#` wildcards).
    pub topics: Vec<String>,
    /// The decoder plugin.
    pub decoder: PluginRef,
    /// The MQTT client id. The broker keeps the session (subscriptions and
    /// unacknowledged messages) under it, so it must stay the same across
    /// restarts and differ between hosts; default `halyard-<host id>-<input name>`.
    #[serde(default)]
    pub client_id: Option<String>,
    /// The user name, when the broker wants one.
    #[serde(default)]
    pub username: Option<String>,
    /// The password (use `${VAR}`); never printed.
    #[serde(default)]
    pub password: Option<MqttPassword>,
    /// TLS to the broker; absent means plain TCP.
    #[serde(default)]
    pub tls: Option<MqttTls>,
    /// Seconds between keep-alive pings; also how soon a dead connection is
    /// noticed (1.5 × this).
    #[serde(default = "default_keep_alive_s")]
    pub keep_alive_s: u64,
    /// A message larger than this is dead-lettered (its first 4 KiB kept)
    /// and acknowledged, never decoded.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: u64,
    /// The most messages committed together (messages that arrive while a
    /// commit runs are gathered into the next one).
    #[serde(default = "default_batch_max_messages")]
    pub batch_max_messages: u64,
    /// The most payload bytes committed together.
    #[serde(default = "default_batch_max_bytes")]
    pub batch_max_bytes: u64,
    /// The first wait before reconnecting; doubled per failed attempt.
    #[serde(default = "default_reconnect_initial_ms")]
    pub reconnect_initial_ms: u64,
    /// The longest wait between reconnect attempts.
    #[serde(default = "default_reconnect_max_ms")]
    pub reconnect_max_ms: u64,
}

/// `tls = { ca_file = "…" }` of an mqtt input. The broker's certificate
/// must name the host part of `broker` (the client checks it against that).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct MqttTls {
    /// PEM file of the CA(s) that sign the broker's certificate (a private
    /// CA); absent means the system's trusted roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

fn default_keep_alive_s() -> u64 {
    30
}
fn default_max_message_bytes() -> u64 {
    1 << 20
}
fn default_batch_max_messages() -> u64 {
    1000
}
fn default_batch_max_bytes() -> u64 {
    4 << 20
}
fn default_reconnect_initial_ms() -> u64 {
    200
}
fn default_reconnect_max_ms() -> u64 {
    30_000
}

impl MqttInput {
    /// The broker's host and port, when `broker` is `host:port`.
    pub fn host_port(&self) -> Option<(String, u16)> {
        let (host, port) = self.broker.rsplit_once(':')?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = port.parse().ok()?;
        (!host.is_empty()).then(|| (host.to_string(), port))
    }

    /// The client id the broker knows this input by.
    pub fn client_id_for(&self, host_id: &str) -> String {
        self.client_id
            .clone()
            .unwrap_or_else(|| format!("halyard-{host_id}-{}", self.name))
    }

    /// What is wrong with the settings, as (key under the input, message);
    /// `None` when valid. The message never contains the password.
    pub fn problem(&self) -> Option<(String, String)> {
        let problem = |key: &str, message: &str| Some((key.to_string(), message.to_string()));
        if self.host_port().is_none() {
            return problem("broker", "must be `host:port`, e.g. `127.0.0.1:1883`");
        }
        if self.topics.is_empty() {
            return problem("topics", "must list at least one topic filter");
        }
        for (i, topic) in self.topics.iter().enumerate() {
            if let Some(message) = filter_problem(topic) {
                return problem(&format!("topics[{i}]"), message);
            }
        }
        if self.client_id.as_deref().is_some_and(str::is_empty) {
            return problem("client_id", "must not be empty");
        }
        if self.password.is_some() && self.username.is_none() {
            return problem(
                "password",
                "needs `username` too (MQTT sends both or neither)",
            );
        }
        if self.reconnect_initial_ms > self.reconnect_max_ms {
            return problem("reconnect_initial_ms", "must not exceed reconnect_max_ms");
        }
        if self.keep_alive_s > u64::from(u16::MAX) {
            return problem("keep_alive_s", "must be at most 65535 (MQTT's limit)");
        }
        None
    }

    /// The numbers to range-check, as (key under the input, value, min, max).
    pub fn ranges(&self) -> Vec<(&'static str, u64, u64, u64)> {
        vec![
            (
                "max_message_bytes",
                self.max_message_bytes,
                MIN_MESSAGE_BYTES,
                MAX_MESSAGE_BYTES,
            ),
            (
                "batch_max_messages",
                self.batch_max_messages,
                1,
                MAX_BATCH_MESSAGES,
            ),
            (
                "batch_max_bytes",
                self.batch_max_bytes,
                MIN_MESSAGE_BYTES,
                64 << 20,
            ),
            ("keep_alive_s", self.keep_alive_s, 1, u64::from(u16::MAX)),
            (
                "reconnect_initial_ms",
                self.reconnect_initial_ms,
                1,
                super::ranges::MAX_MS,
            ),
            (
                "reconnect_max_ms",
                self.reconnect_max_ms,
                1,
                super::ranges::MAX_MS,
            ),
        ]
    }
}

/// What is wrong with one topic filter (MQTT 3.1.1 §4.7), if anything.
fn filter_problem(filter: &str) -> Option<&'static str> {
    if filter.is_empty() {
        return Some("must not be empty");
    }
    if filter.contains('\0') {
        return Some("must not contain a NUL character");
    }
    let levels: Vec<&str> = filter.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        if level.contains('#') && (*level != "#" || i + 1 != levels.len()) {
            return Some("`#` must be a whole level and the last one (`sensors/#`)");
        }
        if level.contains('+') && *level != "+" {
            return Some("`+` must be a whole level (`sensors/+/temp`)");
        }
    }
    None
}

/// An MQTT password; never printed.
#[derive(Clone, PartialEq)]
pub struct MqttPassword(Secret);

impl MqttPassword {
    /// Wraps a password (for tests and programmatic configs).
    pub fn new(value: impl Into<String>) -> MqttPassword {
        MqttPassword(Secret::new(value))
    }

    /// The secret, to hand to the MQTT client.
    pub fn secret(&self) -> &Secret {
        &self.0
    }
}

impl fmt::Debug for MqttPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for MqttPassword {
    /// Always `***`: the config is serialized only to be shown.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("***")
    }
}

impl<'de> Deserialize<'de> for MqttPassword {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(MqttPassword::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(extra: &str) -> Result<MqttInput, toml::de::Error> {
        toml::from_str(&format!(
            "name = \"m\"\nbroker = \"127.0.0.1:1883\"\ntopics = [\"sensors/#\"]\n\
             decoder = {{ plugin = \"d.wasm\" }}\n{extra}"
        ))
    }

    #[test]
    fn defaults_and_client_id() {
        let m = input("").expect("parses");
        assert_eq!(m.problem(), None);
        assert_eq!(m.host_port(), Some(("127.0.0.1".into(), 1883)));
        assert_eq!(m.client_id_for("dev1"), "halyard-dev1-m");
        assert_eq!(m.max_message_bytes, 1 << 20);
    }

    #[test]
    fn topic_filters_are_checked() {
        for (filter, ok) in [
            ("a/+/b", true),
            ("#", true),
            ("a/#", true),
            ("a/#/b", false),
            ("a/b#", false),
            ("a/x+", false),
            ("", false),
        ] {
            let m = input("").map(|mut m| {
                m.topics = vec![filter.to_string()];
                m
            });
            let m = m.expect("parses");
            assert_eq!(m.problem().is_none(), ok, "{filter:?}: {:?}", m.problem());
        }
    }

    #[test]
    fn the_password_never_prints() {
        let m = input("username = \"u\"\npassword = \"hunter2\"").expect("parses");
        assert_eq!(
            m.password.as_ref().map(|p| p.secret().expose()),
            Some("hunter2")
        );
        assert!(!format!("{m:?}").contains("hunter2"));
        let shown = toml::to_string(&m).expect("serializes");
        assert!(
            !shown.contains("hunter2") && shown.contains("***"),
            "{shown}"
        );
        let bad = input("password = \"p\"").expect("parses");
        assert_eq!(bad.problem().map(|p| p.0), Some("password".into()));
    }

    #[test]
    fn broker_must_be_host_and_port() {
        let mut m = input("").expect("parses");
        m.broker = "localhost".into();
        assert_eq!(m.problem().map(|p| p.0), Some("broker".into()));
        m.broker = "[::1]:8883".into();
        assert_eq!(m.host_port(), Some(("::1".into(), 8883)));
    }
}
