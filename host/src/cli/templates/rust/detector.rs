//! {{name}}: a Halyard detector. Counts each source's readings above
//! `above` (config, a number; default 100) in a row, and makes one `alert`
//! event when a source reaches `count` of them (config; default 3). The
//! counts live in the host's key-value store, so they survive restarts,
//! crashes and hot swaps, committed with the batch that changed them.

use halyard_sdk::{Config, Detector, Event, InitError, kv};

/// The parsed config.
pub struct Plugin {
    above: f64,
    count: u32,
}

impl Detector for Plugin {
    fn init(config: &Config) -> Result<Self, InitError> {
        let above = config.parse_or("above", 100.0)?;
        let count = config.parse_or("count", 3u32)?;
        if count == 0 {
            return Err(InitError::for_key("count", "count must be at least 1"));
        }
        Ok(Plugin { above, count })
    }

    fn detect(&mut self, events: Vec<Event>) -> Vec<Event> {
        let mut alerts = Vec::new();
        for event in &events {
            let Some(value) = event.value else { continue };
            let key = format!("run/{}", event.source);
            let run: u32 = kv::get(&key)
                .and_then(|v| String::from_utf8(v).ok())
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let run = if value > self.above { run + 1 } else { 0 };
            if run == self.count {
                alerts.push(
                    Event::new(event.source.clone(), "alert", event.time_ns)
                        .with_value(value)
                        .with_attr("above", self.above),
                );
            }
            let written = if run == 0 {
                kv::delete(&key)
            } else {
                kv::set(&key, run.to_string().as_bytes())
            };
            if let Err(message) = written {
                halyard_sdk::log::warn(&format!("count for {key} not kept: {message}"));
            }
        }
        alerts
    }
}

halyard_sdk::export_detector!(Plugin);
