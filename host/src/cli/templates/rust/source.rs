//! {{name}}: a Halyard source. Each poll returns `per_poll` (config,
//! default 1) events of kind `tick` whose value counts up from 1.

use halyard_sdk::{Config, Event, InitError, Source, clock};

/// The parsed config and the counter (soft state: it restarts with the instance).
pub struct Plugin {
    per_poll: u32,
    next: u64,
}

impl Source for Plugin {
    fn init(config: &Config) -> Result<Self, InitError> {
        let per_poll: u32 = config.parse_or("per_poll", 1)?;
        if per_poll == 0 {
            return Err(InitError::for_key("per_poll", "per_poll must be at least 1"));
        }
        Ok(Plugin { per_poll, next: 1 })
    }

    fn poll(&mut self, max: u32) -> Vec<Event> {
        let now = clock::now_ns();
        (0..self.per_poll.min(max))
            .map(|_| {
                let value = self.next as f64;
                self.next += 1;
                Event::new("{{name}}", "tick", now).with_value(value)
            })
            .collect()
    }
}

halyard_sdk::export_source!(Plugin);
