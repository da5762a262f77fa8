//! The mqtt inputs' counters on `/metrics`, read from each input's atomics
//! ([`crate::run::MqttStats`]) on every scrape.

use std::fmt::Error;

use prometheus_client::encoding::DescriptorEncoder;

use super::{Labels, counter_family, gauge_family};
use crate::run::MqttSnapshot;
use crate::status::StatusState;

/// Per mqtt input (label `input`): messages received, acknowledged,
/// refused by the decoder, over `max_message_bytes`; reconnections,
/// failed attempts, and whether it is connected now.
pub(super) fn encode(state: &StatusState, enc: &mut DescriptorEncoder) -> Result<(), Error> {
    let inputs: Vec<_> = state
        .mqtt_inputs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|s| (s.name.clone(), s.snapshot()))
        .collect();
    if inputs.is_empty() {
        return Ok(());
    }
    let rows = |f: fn(&MqttSnapshot) -> u64| -> Vec<(Labels, u64)> {
        inputs
            .iter()
            .map(|(name, s)| (vec![("input", name.clone())], f(s)))
            .collect()
    };
    type Family = (&'static str, &'static str, fn(&MqttSnapshot) -> u64);
    let families: [Family; 6] = [
        (
            "halyard_mqtt_messages_received",
            "Messages the broker delivered to an mqtt input (redeliveries included).",
            |s| s.received,
        ),
        (
            "halyard_mqtt_messages_acked",
            "Messages acknowledged to the broker, each after its events were committed.",
            |s| s.acked,
        ),
        (
            "halyard_mqtt_decode_failures",
            "Messages the decoder refused (dead-lettered).",
            |s| s.decode_failures,
        ),
        (
            "halyard_mqtt_messages_oversized",
            "Messages over max_message_bytes (dead-lettered, never decoded).",
            |s| s.oversized,
        ),
        (
            "halyard_mqtt_reconnects",
            "Connections to the broker made after the first one.",
            |s| s.reconnects,
        ),
        (
            "halyard_mqtt_connect_failures",
            "Failed attempts to connect to the broker.",
            |s| s.connect_failures,
        ),
    ];
    for (name, help, f) in families {
        counter_family(enc, name, help, &rows(f))?;
    }
    let connected: Vec<(Labels, f64)> = inputs
        .iter()
        .map(|(name, s)| {
            (
                vec![("input", name.clone())],
                f64::from(u8::from(s.connected)),
            )
        })
        .collect();
    gauge_family(
        enc,
        "halyard_mqtt_connected",
        "1 while an mqtt input is connected to its broker.",
        &connected,
    )
}
