//! lying-decoder: a decoder that believes its input. Each frame is a
//! [`lying_events`] spec (`good,attrs:300`), and the decoder returns exactly
//! those events, however far over the host's caps, without checking them;
//! `error:N` fails the frame with an `N`-byte reason. It stands for an
//! honest-but-naive decoder fed hostile lines: the host must refuse the bad
//! frames one by one, keep the good ones of the same call, and count no
//! trap.

#![warn(missing_docs)]

use halyard_sdk::{Config, Decoder, Event, Frame, InitError};

/// The plugin: no state, no config.
#[derive(Debug)]
pub struct LyingDecoder;

impl Decoder for LyingDecoder {
    fn init(_config: &Config) -> Result<Self, InitError> {
        Ok(LyingDecoder)
    }

    fn decode(&mut self, frame: Frame) -> Result<Vec<Event>, String> {
        let spec = String::from_utf8_lossy(&frame.data);
        if let Some(n) = spec.trim().strip_prefix("error:") {
            let n: usize = n.parse().map_err(|_| format!("bad error size {n:?}"))?;
            return Err("e".repeat(n));
        }
        lying_events::events(&spec)
    }
}

halyard_sdk::export_decoder!(LyingDecoder);
