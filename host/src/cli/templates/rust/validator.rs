//! {{name}}: a Halyard validator. Rejects events without a value and
//! readings above `max` (config, default 100).

use halyard_sdk::{Config, Event, InitError, Validator, Verdict};

/// The parsed config.
pub struct Plugin {
    max: f64,
}

impl Validator for Plugin {
    fn init(config: &Config) -> Result<Self, InitError> {
        // A bad value refuses the plugin with an error naming the key.
        Ok(Plugin { max: config.parse_or("max", 100.0)? })
    }

    fn validate(&mut self, event: &Event) -> Verdict {
        match event.value {
            None => Verdict::reject("missing value"),
            Some(v) if v > self.max => {
                Verdict::reject(format!("value {v} is above the maximum {}", self.max))
            }
            Some(_) => Verdict::Accept,
        }
    }
}

halyard_sdk::export_validator!(Plugin);
