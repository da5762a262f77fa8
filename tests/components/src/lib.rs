//! Paths of the compiled guest components, built by this crate's `build.rs`
//! from `guests/` and `tests/hostile/` for `wasm32-wasip2`.
//!
//! Tests and benches depend on this crate instead of reading artefacts that
//! someone would have to build by hand.

include!(concat!(env!("OUT_DIR"), "/components.rs"));

/// The five example guests with the kind each implements.
pub const EXAMPLES: [(&str, &str); 5] = [
    (SIM_SOURCE, "source"),
    (JSONL_DECODER, "decoder"),
    (RANGE_VALIDATOR, "validator"),
    (REDACT_PRIVACY, "privacy"),
    (FRACTION_SAMPLER, "sampler"),
];
