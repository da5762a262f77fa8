//! lying-source: a source whose every poll returns the events of its
//! `pattern` config key, a [`lying_events`] spec (`good,source:102400`),
//! unchecked. The host must dead-letter the events over its caps one by
//! one, keep the good ones, and count no trap.

#![warn(missing_docs)]

use halyard_sdk::{Config, Event, InitError, Source};

/// The plugin: its pattern, checked at `init`.
#[derive(Debug)]
pub struct LyingSource {
    pattern: String,
}

impl Source for LyingSource {
    fn init(config: &Config) -> Result<Self, InitError> {
        let pattern = config.get("pattern").unwrap_or("good").to_string();
        lying_events::events(&pattern).map_err(|e| InitError::for_key("pattern", e))?;
        Ok(LyingSource { pattern })
    }

    fn poll(&mut self, _max: u32) -> Vec<Event> {
        lying_events::events(&self.pattern).unwrap_or_default()
    }
}

halyard_sdk::export_source!(LyingSource);
