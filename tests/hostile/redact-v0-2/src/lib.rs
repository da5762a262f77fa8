//! redact-v0-2: the `redact-privacy` example's policy (its `policy.rs`,
//! included unchanged) exported against contract **0.2.0**
//! (`export_privacy_v0_2!`: a `list<action>` answer). Not hostile: it is the
//! test set's 0.2.0 privacy guest, proving a 0.2.0 policy still loads and
//! runs now that the SDK exports 0.4.0, and that the 0.4.0 build of the
//! same policy gives the same actions. The stage benchmark times both.

#![warn(missing_docs)]

#[path = "../../../../guests/redact-privacy/src/policy.rs"]
#[allow(dead_code)]
mod policy;

use halyard_sdk::{Action, Config, Event, Events, InitError, Privacy, Redaction};

/// The plugin: a parsed policy, as in `redact-privacy`.
#[derive(Debug)]
pub struct RedactV02 {
    policy: policy::Policy,
}

impl Privacy for RedactV02 {
    fn init(config: &Config) -> Result<Self, InitError> {
        Ok(RedactV02 {
            policy: policy::Policy::from_config(config)?,
        })
    }

    fn redact(&mut self, event: Event) -> Action {
        self.policy.apply(event)
    }

    fn redact_views(&mut self, events: &Events<'_>) -> Vec<Redaction> {
        events
            .iter()
            .map(|event| self.policy.apply_view(&event))
            .collect()
    }
}

halyard_sdk::export_privacy_v0_2!(RedactV02);
