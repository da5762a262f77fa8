//! legacy-redact: the `redact-privacy` example's policy (its `policy.rs`,
//! included unchanged) exported against contract **0.1.0** with the SDK's
//! `v0_1` feature. Not hostile: it is the test set's 0.1.0 guest, proving a
//! 0.1.0 component still loads and runs beside 0.2.0 ones, and that the
//! 0.2.0 build of the same policy (with its patches) gives the same actions.

#![warn(missing_docs)]

#[path = "../../../../guests/redact-privacy/src/policy.rs"]
#[allow(dead_code)]
mod policy;

use halyard_sdk::{Action, Config, Event, InitError, Privacy};

/// The plugin: a parsed policy, as in `redact-privacy`.
#[derive(Debug)]
pub struct LegacyRedact {
    policy: policy::Policy,
}

impl Privacy for LegacyRedact {
    fn init(config: &Config) -> Result<Self, InitError> {
        Ok(LegacyRedact {
            policy: policy::Policy::from_config(config)?,
        })
    }

    fn redact(&mut self, event: Event) -> Action {
        self.policy.apply(event)
    }
}

halyard_sdk::export_privacy_v0_1!(LegacyRedact);
