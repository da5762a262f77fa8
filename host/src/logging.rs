//! The host's logs: `tracing` to stderr (stdout stays machine-readable),
//! one JSON object per line by default, or text for people.
//!
//! Levels come from `RUST_LOG` when it is set, else from `[log] level`.
//! Invariant: nothing secret is ever a log field. API keys live in
//! `halyard_transport::Secret` (printed as `***`), the config is only ever
//! printed through `HostConfig::to_masked_toml`, and transport errors never
//! include the URL's credentials.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Why logging could not be set up as asked.
#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    /// `[log] level` (or `RUST_LOG`) is not a valid filter.
    #[error("log level `{level}`: {reason}")]
    Level {
        /// The filter text.
        level: String,
        /// The parser's complaint.
        reason: String,
    },
}

/// The filter in force: `RUST_LOG` if set and non-empty, else `level`.
pub fn filter(level: &str) -> Result<EnvFilter, LoggingError> {
    let from_env = std::env::var("RUST_LOG")
        .ok()
        .filter(|v| !v.trim().is_empty());
    let text = from_env.unwrap_or_else(|| level.to_string());
    EnvFilter::try_new(&text).map_err(|e| LoggingError::Level {
        level: text,
        reason: e.to_string(),
    })
}

/// Installs the global subscriber. A second call is a no-op, so tests and
/// commands may call it freely.
pub fn init(level: &str, format: LogFormat) -> Result<(), LoggingError> {
    let filter = filter(level)?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
        LogFormat::Human => builder
            .with_ansi(
                std::io::IsTerminal::is_terminal(&std::io::stderr())
                    && std::env::var_os("NO_COLOR").is_none(),
            )
            .try_init(),
    };
    Ok(())
}
