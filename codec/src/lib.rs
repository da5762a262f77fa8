//! # halyard-flat: the flat event-batch layout of `halyard:plugin@0.2.0`
//!
//! In contract 0.2.0 a batch of events crosses the sandbox as one `list<u8>`
//! laid out as documented on the `flat` interface in `wit/0.2.0/plugin.wit`
//! (layout version [`LAYOUT_VERSION`]). This crate is the one implementation
//! of that layout, used by both the host and the guest SDK, so the two sides
//! cannot drift:
//!
//! - [`Writer`] builds a batch from borrowed fields, storing a string that
//!   repeats from one event to the next (source, kind, unit, attribute keys)
//!   once;
//! - [`Batch::parse`] checks a whole buffer once (every length, reference,
//!   tag and UTF-8) and then hands out borrowed [`EventView`]s without
//!   copying. It never panics, whatever the bytes: guest output is hostile.
//! - [`frames`] splits a decoder's frame buffer by its end offsets;
//! - [`AnswerWriter`] and [`Answer::parse`] are the same for a privacy
//!   policy's answer in contract 0.4.0 (`wit/0.4.0/plugin.wit`).
//!
//! It has no dependencies and no knowledge of either side's Rust types:
//! each side converts its own `Event` to and from [`Fields`] and [`Value`].

#![warn(missing_docs)]

mod answer;
mod error;
mod read;
mod write;

pub use answer::{
    ACTION_LEN, ANSWER_HEADER_LEN, ANSWER_VERSION, ActionRef, Answer, AnswerWriter, EDIT_LEN,
    EditRef, Edits,
};
pub use error::LayoutError;
pub use read::{AttrIter, Batch, EventView, frames};
pub use write::{Mark, Writer, frame_buffer};

/// The layout version this crate reads and writes (byte 0 of a batch).
pub const LAYOUT_VERSION: u8 = 1;
/// Bytes in the batch header.
pub const HEADER_LEN: usize = 16;
/// Bytes in one event record.
pub const EVENT_LEN: usize = 80;
/// Bytes in one attribute record.
pub const ATTR_LEN: usize = 24;

/// Event flag: `value` is present.
pub(crate) const HAS_VALUE: u32 = 1;
/// Event flag: `unit` is present.
pub(crate) const HAS_UNIT: u32 = 2;
/// Event flag: `body` is present.
pub(crate) const HAS_BODY: u32 = 4;

/// Attribute tags.
pub(crate) const TAG_STR: u32 = 0;
pub(crate) const TAG_INT: u32 = 1;
pub(crate) const TAG_FLOAT: u32 = 2;
pub(crate) const TAG_BOOL: u32 = 3;

/// A typed attribute value, borrowed from a batch or from the writer's
/// caller (the contract's `attr-value`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value<'a> {
    /// A UTF-8 string.
    Str(&'a str),
    /// A signed 64-bit integer.
    Int(i64),
    /// A 64-bit IEEE float.
    Float(f64),
    /// A boolean.
    Bool(bool),
}

/// An event's fields other than its attributes, borrowed (the contract's
/// `event` record, minus `attributes`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fields<'a> {
    /// The event id as (`hi`, `lo`).
    pub id: (u64, u64),
    /// Nanoseconds since the Unix epoch.
    pub time_ns: i64,
    /// Where the event came from.
    pub source: &'a str,
    /// What the event is.
    pub kind: &'a str,
    /// The numeric reading, if any.
    pub value: Option<f64>,
    /// The unit of `value`, if any.
    pub unit: Option<&'a str>,
    /// The JSON body, if any (the host checks it parses).
    pub body: Option<&'a str>,
}

/// The total length of a batch with `events` events, `attrs` attributes and
/// `strings` bytes of text, or `None` if it overflows.
pub fn batch_len(events: u64, attrs: u64, strings: u64) -> Option<u64> {
    (EVENT_LEN as u64)
        .checked_mul(events)?
        .checked_add((ATTR_LEN as u64).checked_mul(attrs)?)?
        .checked_add(strings)?
        .checked_add(HEADER_LEN as u64)
}

#[cfg(test)]
mod tests;
