//! The plugin type: the SDK's `Privacy` trait over a parsed [`Policy`].
//! A module of its own so that `tests/hostile/redact-v0-2` builds exactly
//! this plugin (it includes this file and `policy.rs` by path) against
//! contract 0.2.0.

use halyard_sdk::{Action, Config, Event, Events, InitError, Privacy, Redaction};

use crate::policy::Policy;

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
