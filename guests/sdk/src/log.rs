//! Structured logging into the host's log.
//!
//! Why: a sandboxed plugin has no stdout worth reading; records written here
//! land in the host's log, tagged with the plugin's name, rate-limited and
//! size-capped by the host.

use crate::bindings::shared::halyard::plugin::log as host;

/// Severity of a log record (the contract's `log.level`).
pub use host::Level;

/// Writes one record with extra key/value `fields` for structured output.
/// Use the level shortcuts below when there are no fields.
pub fn write(level: Level, message: &str, fields: &[(&str, &str)]) {
    let fields: Vec<(String, String)> = fields
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    host::write(level, message, &fields);
}

/// Logs very detailed tracing, off unless the operator asks for it.
pub fn trace(message: &str) {
    write(Level::Trace, message, &[]);
}

/// Logs detail that helps debug the plugin.
pub fn debug(message: &str) {
    write(Level::Debug, message, &[]);
}

/// Logs a normal operational message.
pub fn info(message: &str) {
    write(Level::Info, message, &[]);
}

/// Logs something unexpected that the plugin handled.
pub fn warn(message: &str) {
    write(Level::Warn, message, &[]);
}

/// Logs something the plugin could not handle.
pub fn error(message: &str) {
    write(Level::Error, message, &[]);
}
