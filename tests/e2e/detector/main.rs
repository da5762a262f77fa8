//! End-to-end tests of detectors (issue 17, item 1) against the real
//! binary, real guests, a real SQLite buffer and the file transport:
//! exact alert and cleared counts from steady input and from a timer, one
//! alert across a kill -9 and across a hot swap in the middle of a window
//! (the window resumed from the `kv` store), a `kv` namespace over its
//! bound, and a detector that traps.

mod crash;
mod limits;
mod steady;
mod support;

/// The pipeline tests' helpers, shared rather than copied.
#[allow(dead_code)]
#[path = "../pipeline/support.rs"]
mod pipeline_support;
