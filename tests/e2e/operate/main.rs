//! End-to-end tests of what an operator sees: `/health`, `/metrics`,
//! `/plugins`, `/events/stream`, lifecycle events, `halyard tail` and the
//! logs, against the real binary with real guests, a real SQLite buffer and
//! the real receiver on 127.0.0.1.

mod access;
mod block;
mod contain;
mod health;
mod logs;
mod metrics;
mod page;
mod plugins;
mod stream;
mod support;
mod systemd;

/// The pipeline tests' helpers (config writer, `Scenario`, host process,
/// waits with deadlines), shared rather than copied.
#[allow(dead_code)]
#[path = "../pipeline/support.rs"]
mod pipeline_support;
