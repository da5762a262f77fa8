//! The limits every plugin call runs under, and the caps on what a guest may
//! hand back. Guest output is untrusted input: these numbers bound what one
//! call can cost the host.

use std::time::Duration;

/// Resource limits for one plugin instance and the calls made into it.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Linear memory cap per instance; growing past it traps the call.
    pub memory_bytes: usize,
    /// CPU deadline for one call (a whole batch), enforced by epoch
    /// interruption; `init` gets the same deadline.
    pub call_deadline: Duration,
    /// The most events a source poll or one decoded frame may return.
    pub max_events_out: usize,
    /// The longest string (source, kind, unit, attribute key or string value,
    /// reject reason, decode error) a guest may return.
    pub max_string_bytes: usize,
    /// The largest JSON body a guest may return.
    pub max_body_bytes: usize,
    /// The most attributes one event may carry.
    pub max_attributes: usize,
    /// Roughly the most bytes one call may copy out of the guest (wasmtime's
    /// hostcall fuel). It is checked while results are lifted, before the
    /// host allocates them, so a guest cannot make the host allocate more
    /// than this (e.g. by returning many strings that alias one buffer).
    pub max_output_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 64 << 20,
            call_deadline: Duration::from_millis(100),
            max_events_out: 10_000,
            max_string_bytes: 64 << 10,
            max_body_bytes: 1 << 20,
            max_attributes: 256,
            max_output_bytes: 16 << 20,
        }
    }
}

/// What a plugin may reach beyond its own memory. Everything is denied unless
/// the host config grants it to that plugin.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Grants {
    /// Environment variables the plugin may read, by name; their values are
    /// taken from the host's environment when the instance is created.
    pub env: Vec<String>,
    /// Host directories the plugin may read, each mounted read-only at the
    /// same path inside the sandbox.
    pub read_dirs: Vec<std::path::PathBuf>,
    /// Whether the plugin may open network sockets (`wasi:sockets`).
    pub network: bool,
}
