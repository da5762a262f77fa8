//! Why a buffer is not a valid batch.

use std::fmt;

/// Why a buffer is not a valid layout-1 batch (or frame buffer), or why a
/// batch cannot be written. Each says where, so a plugin author can find
/// the bug in their encoder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayoutError {
    /// Shorter than the 16-byte header.
    TooShort {
        /// The buffer's length.
        len: usize,
    },
    /// Byte 0 is not a layout version this reader knows.
    Version {
        /// The version byte found.
        found: u8,
    },
    /// The header's counts do not add up to the buffer's length.
    Length {
        /// The length the header implies (saturated on overflow).
        expected: u64,
        /// The buffer's length.
        actual: usize,
    },
    /// The string area is not valid UTF-8.
    Utf8 {
        /// Where in the string area the invalid text starts.
        at: usize,
    },
    /// A record breaks a rule; `what` says which record and which rule.
    Record {
        /// E.g. `event 3: source reference 10..90 outside the 40-byte string area`.
        what: String,
    },
    /// The batch is too large for u32 offsets (writer side).
    TooLarge,
    /// A privacy answer (contract 0.4.0) breaks a rule; `what` says which
    /// record and which rule.
    Answer {
        /// E.g. `action 3: unknown action 9`.
        what: String,
    },
}

impl LayoutError {
    pub(crate) fn record(what: String) -> Self {
        LayoutError::Record { what }
    }
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayoutError::TooShort { len } => {
                write!(f, "batch of {len} bytes is shorter than its 16-byte header")
            }
            LayoutError::Version { found } => write!(
                f,
                "batch layout version {found} (this reader knows {})",
                crate::LAYOUT_VERSION
            ),
            LayoutError::Length { expected, actual } => {
                write!(f, "batch is {actual} bytes but its header says {expected}")
            }
            LayoutError::Utf8 { at } => {
                write!(f, "batch string area is not UTF-8 (at byte {at})")
            }
            LayoutError::Record { what } => write!(f, "batch {what}"),
            LayoutError::TooLarge => f.write_str("batch too large for 32-bit offsets"),
            LayoutError::Answer { what } => write!(f, "answer {what}"),
        }
    }
}

impl std::error::Error for LayoutError {}
