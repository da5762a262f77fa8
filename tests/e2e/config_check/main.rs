//! Mistakes caught where they are made (issue 11, items 5 and 8), against
//! the real `halyard` binary and real compiled guests:
//!
//! - [`plugin_files`]: a FIFO, a symlink to `/dev/zero`, a directory and a
//!   sparse 300 MB file are refused at once, with the reason, by
//!   `plugin check` and at `run` start; an import the host does not
//!   provide is named;
//! - [`check`]: `config check` reports what `run` would refuse (a plugin
//!   whose `init` fails, a wrong-kind plugin, a missing file, a bad
//!   licence, out-of-range limits), each cause once, and substitutes
//!   `${VAR}` into values without letting a value change the file.
//!
//! The hot-reload side of item 5 lives with the other reload tests
//! (`tests/e2e/reload/files.rs`).

mod check;
mod plugin_files;
mod support;

/// The pipeline tests' helpers (config writer, `Scenario`, waits with
/// deadlines), shared rather than copied.
#[allow(dead_code)]
#[path = "../pipeline/support.rs"]
mod pipeline_support;
