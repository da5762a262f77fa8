//! The MQTT sink's configuration (`[[transport]] type = "mqtt"`), kept apart
//! from the connection logic in `mqtt.rs`.

use std::path::PathBuf;

use serde::Deserialize;

use crate::Secret;

/// One message per event or one per batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MqttPer {
    /// Each event as its own JSON message: subscribers can filter by topic.
    #[default]
    Event,
    /// The whole batch envelope as one message: fewer packets on slow links;
    /// the topic may use only `{host_id}`.
    Batch,
}

/// TLS towards the broker.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct MqttTls {
    /// PEM file of the CA that signed the broker's certificate, for private
    /// brokers; without it the Mozilla root certificates (webpki-roots) are
    /// trusted.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

/// `[[transport]] type = "mqtt"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// Broker host name or address.
    pub host: String,
    /// Broker port; 1883 by default (8883 is usual with TLS).
    #[serde(default = "default_port")]
    pub port: u16,
    /// Client id; `halyard-<random>` by default. Sessions are clean, so a
    /// fixed id only matters for broker ACLs.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Topic template with `{host_id}`, `{kind}`, `{source}`; substituted
    /// values have `+`, `#` and NUL replaced by `_`, so event data cannot
    /// publish to a wildcard. Default `halyard/{host_id}/{kind}`.
    #[serde(default = "default_topic")]
    pub topic: String,
    /// `event` (default) or `batch`.
    #[serde(default)]
    pub per: MqttPer,
    /// Username for brokers that require one.
    #[serde(default)]
    pub username: Option<String>,
    /// Password; never logged.
    #[serde(default)]
    pub password: Option<Secret>,
    /// Connect with TLS when present.
    #[serde(default)]
    pub tls: Option<MqttTls>,
    /// How long a batch waits for all its PUBACKs before it is retried;
    /// 10 000 ms by default.
    #[serde(default = "default_ack_timeout_ms")]
    pub ack_timeout_ms: u64,
    /// MQTT keep-alive; a dead broker is noticed within ~1.5x this. 30 s.
    #[serde(default = "default_keep_alive_secs")]
    pub keep_alive_secs: u64,
    /// Largest packet sent; a bigger message makes the batch `TooLarge`
    /// so the host splits it. 1 MiB by default (Mosquitto allows 256 MiB).
    #[serde(default = "default_max_packet_size")]
    pub max_packet_size: usize,
    /// Messages awaiting PUBACK at once; 100 by default.
    #[serde(default = "default_max_inflight")]
    pub max_inflight: u16,
    /// Publish with the retain flag (the broker keeps the last message per
    /// topic for late subscribers).
    #[serde(default)]
    pub retain: bool,
}

fn default_port() -> u16 {
    1883
}
fn default_topic() -> String {
    "halyard/{host_id}/{kind}".to_owned()
}
fn default_ack_timeout_ms() -> u64 {
    10_000
}
fn default_keep_alive_secs() -> u64 {
    30
}
fn default_max_packet_size() -> usize {
    1 << 20
}
fn default_max_inflight() -> u16 {
    100
}

impl MqttConfig {
    /// Defaults for everything but the broker address.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
            client_id: None,
            topic: default_topic(),
            per: MqttPer::Event,
            username: None,
            password: None,
            tls: None,
            ack_timeout_ms: default_ack_timeout_ms(),
            keep_alive_secs: default_keep_alive_secs(),
            max_packet_size: default_max_packet_size(),
            max_inflight: default_max_inflight(),
            retain: false,
        }
    }
}
