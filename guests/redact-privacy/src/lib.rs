//! redact-privacy: removes or masks attributes (and the same keys at the top
//! level of the JSON body), optionally masks the source, and drops events
//! from blocked sources. See README.md for the config keys and the hash.

#![warn(missing_docs)]

mod plugin;
mod policy;

pub use plugin::RedactPrivacy;
pub use policy::{Policy, salted_hash};

halyard_sdk::export_privacy!(RedactPrivacy);

#[cfg(test)]
mod tests;
