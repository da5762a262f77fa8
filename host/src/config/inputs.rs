//! What the rest of the host needs to know about any `[[input]]`, in one
//! place: its name and its plugin (a source it polls, or a decoder for the
//! frames the host reads). The plugin loader, hot reload and the limit
//! checks ask through [`InputConfig::plugin`] instead of matching input
//! types, so a new input type adds its arm here and its runner in
//! `run/inputs.rs`, and nothing else.

use super::model::InputConfig;
use super::plugin_ref::PluginRef;

/// The plugin an input runs.
#[derive(Debug, Clone, Copy)]
pub enum InputPlugin<'a> {
    /// A source guest that makes events when polled.
    Source(&'a PluginRef),
    /// A decoder guest for the frames a host-owned input reads.
    Decoder(&'a PluginRef),
}

impl<'a> InputPlugin<'a> {
    /// The plugin reference, whatever its role.
    pub fn plugin(self) -> &'a PluginRef {
        match self {
            InputPlugin::Source(p) | InputPlugin::Decoder(p) => p,
        }
    }

    /// The role's word in stage names and config keys (`source`,
    /// `decoder`).
    pub fn role(self) -> &'static str {
        match self {
            InputPlugin::Source(_) => "source",
            InputPlugin::Decoder(_) => "decoder",
        }
    }
}

impl InputConfig {
    /// The input's name, unique within a config.
    pub fn name(&self) -> &str {
        match self {
            InputConfig::Source { name, .. }
            | InputConfig::File { name, .. }
            | InputConfig::Http { name, .. }
            | InputConfig::System { name, .. } => name,
            InputConfig::Mqtt(mqtt) => &mqtt.name,
        }
    }

    /// The plugin the input runs, and in which role; `None` for an input
    /// that makes events itself (`system`).
    pub fn plugin(&self) -> Option<InputPlugin<'_>> {
        Some(match self {
            InputConfig::Source { source, .. } => InputPlugin::Source(source),
            InputConfig::File { decoder, .. } | InputConfig::Http { decoder, .. } => {
                InputPlugin::Decoder(decoder)
            }
            InputConfig::Mqtt(mqtt) => InputPlugin::Decoder(&mqtt.decoder),
            InputConfig::System { .. } => return None,
        })
    }
}
