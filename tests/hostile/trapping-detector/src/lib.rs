//! trapping-detector: for every batch it counts the readings it has seen
//! in its `kv` store (key `seen`) and returns one `seen` event carrying the
//! new total. A batch with a negative reading makes it write the count
//! first and then panic (trap): the host must still deliver the batch's
//! events, lose only this call's output, and discard the write, so the
//! next `seen` total counts only the batches that did not trap. A batch
//! with a reading of exactly 1000 gets a `seen` event whose source is
//! over the host's 64 KiB string cap: the host refuses that output, and
//! must drop the call's write with it.

#![warn(missing_docs)]

use halyard_sdk::{Config, Detector, Event, InitError, kv};

/// The plugin; it keeps nothing in memory.
#[derive(Debug)]
pub struct TrappingDetector;

impl Detector for TrappingDetector {
    fn init(_config: &Config) -> Result<Self, InitError> {
        Ok(TrappingDetector)
    }

    fn detect(&mut self, events: Vec<Event>) -> Vec<Event> {
        let before = kv::get("seen")
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.parse::<i64>().ok())
            .unwrap_or(0);
        let total = before + events.len() as i64;
        if let Err(e) = kv::set("seen", total.to_string().as_bytes()) {
            panic!("kv refused: {e}");
        }
        if events.iter().any(|e| e.value.is_some_and(|v| v < 0.0)) {
            panic!("negative reading: trapping after a kv write");
        }
        let time = events.last().map_or(0, |e| e.time_ns);
        let source = if events.iter().any(|e| e.value == Some(1000.0)) {
            "x".repeat(65 << 10)
        } else {
            "trapping-detector".to_string()
        };
        vec![Event::new(source, "seen", time).with_value(total as f64)]
    }
}

halyard_sdk::export_detector!(TrappingDetector);
