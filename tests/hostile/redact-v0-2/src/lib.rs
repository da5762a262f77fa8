//! redact-v0-2: the `redact-privacy` example plugin (its `plugin.rs` and
//! `policy.rs`, included unchanged) exported against contract **0.2.0**
//! (`export_privacy_v0_2!`: a `list<action>` answer). Not hostile: it is the
//! test set's 0.2.0 privacy guest, proving a 0.2.0 policy still loads and
//! runs now that the SDK exports 0.4.0, and that the 0.4.0 build of the
//! same policy gives the same actions. The stage benchmark times both.

#![warn(missing_docs)]

#[path = "../../../../guests/redact-privacy/src/plugin.rs"]
mod plugin;
#[path = "../../../../guests/redact-privacy/src/policy.rs"]
#[allow(dead_code)]
mod policy;

halyard_sdk::export_privacy_v0_2!(plugin::RedactPrivacy);
