//! # halyard-sdk: write Halyard plugins in plain Rust
//!
//! Halyard runs its pipeline stages (sources, decoders, validators, privacy
//! policies, samplers) as sandboxed WebAssembly components that implement the
//! contract in `wit/plugin.wit`. This crate exists so that a plugin is one
//! small trait impl plus one macro line: it hides wit-bindgen, keeps the
//! plugin's state per instance, reads the plugin's config from the host and
//! gives typed helpers for config, logging, clocks and events.
//!
//! ```
//! use halyard_sdk::{Config, Event, InitError, Validator, Verdict};
//!
//! struct NonEmpty;
//!
//! impl Validator for NonEmpty {
//!     fn init(_config: &Config) -> Result<Self, InitError> {
//!         Ok(NonEmpty)
//!     }
//!     fn validate(&mut self, event: &Event) -> Verdict {
//!         if event.source.is_empty() {
//!             Verdict::reject("missing source")
//!         } else {
//!             Verdict::Accept
//!         }
//!     }
//! }
//!
//! halyard_sdk::export_validator!(NonEmpty);
//! ```
//!
//! Build with `cargo build --release --target wasm32-wasip2`; the `.wasm`
//! file cargo writes is the component the host loads. See the README for the
//! full picture.

#![warn(missing_docs)]

mod allocator;
#[doc(hidden)]
pub mod bindings;
pub mod clock;
pub mod config;
mod event;
mod export;
mod flat;
pub mod kv;
pub mod log;
mod plugin;
mod redaction;
mod sink;
mod view;

/// The contract's data types, re-exported so plugins never name wit-bindgen
/// paths. Every plugin kind shares these same Rust types.
pub use bindings::shared::halyard::plugin::types::{
    Action, AttrValue, Attribute, Event, EventId, Frame, InitError, PluginInfo, Verdict,
};
pub use config::Config;
pub use plugin::{Decoder, Detector, Privacy, Sampler, Source, Validator};
pub use redaction::{Edit, Redaction};
pub use sink::{EventSink, NewEvent};
pub use view::{AttrRef, EventRef, Events, FrameRef, Frames};

/// Implementation details used by the `export_*!` macros. Not a public API.
#[doc(hidden)]
pub use export::__private;
