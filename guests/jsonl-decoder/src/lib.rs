//! jsonl-decoder: decodes frames of JSON lines (one JSON object per line)
//! into events, mapping configurable fields onto the event record and the
//! rest onto attributes and the body. Frames whose events would break the
//! host's caps are failed here, with the line and the field. See README.md
//! for the config keys and the exact mapping, limits and errors.

#![warn(missing_docs)]

mod limits;
mod line;
mod mapping;
mod topic;

use halyard_sdk::{Config, Decoder, Event, Frame, InitError, clock};

pub use limits::Limits;
pub use mapping::Mapping;
pub use topic::TopicPattern;

/// The plugin: a parsed [`Mapping`].
#[derive(Debug)]
pub struct JsonlDecoder {
    mapping: Mapping,
}

impl Decoder for JsonlDecoder {
    fn init(config: &Config) -> Result<Self, InitError> {
        Ok(JsonlDecoder {
            mapping: Mapping::from_config(config)?,
        })
    }

    fn decode(&mut self, frame: Frame) -> Result<Vec<Event>, String> {
        let mut now = LazyNow(None);
        self.mapping.decode_frame(&frame, &mut || now.get())
    }

    /// Reads the clock at most once per batch instead of once per frame.
    fn decode_batch(&mut self, frames: Vec<Frame>) -> Vec<Result<Vec<Event>, String>> {
        let mut now = LazyNow(None);
        frames
            .iter()
            .map(|frame| self.mapping.decode_frame(frame, &mut || now.get()))
            .collect()
    }
}

halyard_sdk::export_decoder!(JsonlDecoder);

/// The wall clock, read on first use only (most lines carry a time).
struct LazyNow(Option<i64>);

impl LazyNow {
    fn get(&mut self) -> i64 {
        *self.0.get_or_insert_with(clock::now_ns)
    }
}

#[cfg(test)]
mod tests;
