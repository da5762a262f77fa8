//! Clocks provided by the host.
//!
//! Why: a plugin should not need WASI clocks (which the host may deny); the
//! contract's `clock` import is always available and is what the host's own
//! limits and tests are measured against.

use crate::bindings::shared::halyard::plugin::clock as host;

/// Wall-clock time in nanoseconds since the Unix epoch (UTC), for event
/// timestamps. It may jump (NTP, manual changes); use [`monotonic_ns`] for
/// intervals.
pub fn now_ns() -> i64 {
    host::now_ns()
}

/// Monotonic time in nanoseconds since an arbitrary start, for rates and
/// intervals. It never goes backwards within one host process.
pub fn monotonic_ns() -> u64 {
    host::monotonic_ns()
}
