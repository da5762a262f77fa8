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

use halyard_sdk::{Config, Decoder, Event, EventSink, Frame, Frames, InitError, clock};

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
        self.mapping
            .decode_frame(&frame.data, &frame.origin, &mut || now.get())
    }

    /// Reads the clock at most once per batch instead of once per frame.
    fn decode_batch(&mut self, frames: Vec<Frame>) -> Vec<Result<Vec<Event>, String>> {
        let mut now = LazyNow(None);
        frames
            .iter()
            .map(|frame| {
                self.mapping
                    .decode_frame(&frame.data, &frame.origin, &mut || now.get())
            })
            .collect()
    }

    /// What the host calls: each frame decoded from the host's bytes
    /// straight into the returned batch, with no owned frame or event in
    /// between; the clock read at most once per batch.
    fn decode_views(
        &mut self,
        frames: &Frames<'_>,
        out: &mut EventSink<'_>,
    ) -> Vec<Result<u32, String>> {
        let mut now = LazyNow(None);
        frames
            .iter()
            .map(|frame| {
                out.frame(|out| {
                    self.mapping
                        .decode_frame_into(frame.data, frame.origin, &mut || now.get(), out)
                })
            })
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
