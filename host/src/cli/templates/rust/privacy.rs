//! {{name}}: a Halyard privacy policy. Removes the attributes listed in
//! `drop_keys` (config, comma-separated, default `user`) and drops events
//! whose source is listed in `block_sources`.

use halyard_sdk::{Action, Config, Event, InitError, Privacy};

/// The parsed config.
pub struct Plugin {
    drop_keys: Vec<String>,
    block_sources: Vec<String>,
}

impl Privacy for Plugin {
    fn init(config: &Config) -> Result<Self, InitError> {
        let drop_keys = match config.get("drop_keys") {
            None => vec!["user".to_string()],
            Some(_) => config.list("drop_keys"),
        };
        Ok(Plugin { drop_keys, block_sources: config.list("block_sources") })
    }

    fn redact(&mut self, mut event: Event) -> Action {
        if self.block_sources.contains(&event.source) {
            return Action::Drop;
        }
        let mut changed = false;
        for key in &self.drop_keys {
            changed |= event.remove_attr(key).is_some();
        }
        if changed { Action::Rewrite(event) } else { Action::Keep }
    }
}

halyard_sdk::export_privacy!(Plugin);
