//! lying-privacy: a privacy policy that rewrites every event carrying a
//! string attribute `lie` into the first event of that [`lying_events`]
//! spec (`source:102400`), unchecked, and keeps every other event. The host
//! must drop exactly those events (privacy fails closed: never shipped
//! unredacted), keep the rest, and count no trap.

#![warn(missing_docs)]

use halyard_sdk::{Action, AttrValue, Config, Event, InitError, Privacy};

/// The plugin: no state, no config.
#[derive(Debug)]
pub struct LyingPrivacy;

impl Privacy for LyingPrivacy {
    fn init(_config: &Config) -> Result<Self, InitError> {
        Ok(LyingPrivacy)
    }

    fn redact(&mut self, event: Event) -> Action {
        let Some(AttrValue::Str(spec)) = event.attr("lie") else {
            return Action::Keep;
        };
        match lying_events::events(spec).map(|mut e| e.drain(..).next()) {
            Ok(Some(rewrite)) => Action::Rewrite(rewrite),
            _ => Action::Drop,
        }
    }
}

halyard_sdk::export_privacy!(LyingPrivacy);
