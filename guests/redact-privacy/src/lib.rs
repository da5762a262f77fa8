//! redact-privacy: removes or masks attributes (and the same keys at the top
//! level of the JSON body), optionally masks the source, and drops events
//! from blocked sources. See README.md for the config keys and the hash.

#![warn(missing_docs)]

mod policy;

use halyard_sdk::{Action, Config, Event, Events, InitError, Privacy, Redaction};

pub use policy::{Policy, salted_hash};

/// The plugin: a parsed [`Policy`].
#[derive(Debug)]
pub struct RedactPrivacy {
    policy: Policy,
}

impl Privacy for RedactPrivacy {
    fn init(config: &Config) -> Result<Self, InitError> {
        Ok(RedactPrivacy {
            policy: Policy::from_config(config)?,
        })
    }

    fn redact(&mut self, event: Event) -> Action {
        self.policy.apply(event)
    }

    /// What the host calls: each event read in place and answered with an
    /// edit, so an event is never copied into the guest's heap.
    fn redact_views(&mut self, events: &Events<'_>) -> Vec<Redaction> {
        events
            .iter()
            .map(|event| self.policy.apply_view(&event))
            .collect()
    }
}

halyard_sdk::export_privacy!(RedactPrivacy);

#[cfg(test)]
mod tests;
