//! {{name}}: a Halyard sampler. Keeps events whose kind is listed in
//! `kinds` (config, comma-separated; unset keeps every kind).

use halyard_sdk::{Config, Event, InitError, Sampler};

/// The parsed config.
pub struct Plugin {
    kinds: Vec<String>,
}

impl Sampler for Plugin {
    fn init(config: &Config) -> Result<Self, InitError> {
        let kinds = config.list("kinds");
        if config.get("kinds").is_some() && kinds.is_empty() {
            return Err(InitError::for_key("kinds", "kinds is set but lists no kind"));
        }
        Ok(Plugin { kinds })
    }

    fn sample(&mut self, event: &Event) -> bool {
        self.kinds.is_empty() || self.kinds.iter().any(|k| *k == event.kind)
    }
}

halyard_sdk::export_sampler!(Plugin);
