//! `[licence]`: the token the host runs under, the vendor keys that sign
//! tokens, and the heartbeat that reports usage and renews the token.
//!
//! The token and the API key are secrets: `halyard config check` masks them
//! and the host never logs them. Durations are floats so that tests (and
//! impatient evaluations) can use grace periods of seconds.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// `[licence]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LicenceSection {
    /// The licence token itself (`hl1.…`); usually `${HALYARD_LICENCE}`.
    pub token: Option<String>,
    /// A file holding the token, for when it should not sit in the config.
    pub token_file: Option<PathBuf>,
    /// Trusted vendor keys (`ed25519:<base64>`); a token verifies if any
    /// of them signed it, so vendors rotate keys by listing both.
    pub public_keys: Vec<String>,
    /// The licence server's heartbeat URL; without it no heartbeat is sent
    /// and the licence runs into grace after `overdue_after`.
    pub endpoint: Option<String>,
    /// Sent to the licence server in `api_key_header`; never logged.
    pub api_key: Option<String>,
    /// The header carrying the API key.
    pub api_key_header: String,
    /// The fleet this host belongs to, for tokens scoped to fleets.
    pub fleet: Option<String>,
    /// Seconds between heartbeats (each one ±15 % jitter).
    pub heartbeat_interval_s: f64,
    /// How long the host keeps shipping while the licence server is
    /// unreachable (a token's own `grace_hours` wins).
    pub grace_hours: f64,
    /// Largest delay between retries of a failed heartbeat (backoff starts
    /// at 1 s and doubles up to this).
    pub retry_max_s: f64,
    /// Per-request timeout of a heartbeat.
    pub timeout_s: f64,
}

impl Default for LicenceSection {
    fn default() -> Self {
        LicenceSection {
            token: None,
            token_file: None,
            public_keys: Vec::new(),
            endpoint: None,
            api_key: None,
            api_key_header: "x-api-key".into(),
            fleet: None,
            heartbeat_interval_s: 3600.0,
            grace_hours: 72.0,
            retry_max_s: 60.0,
            timeout_s: 10.0,
        }
    }
}

impl LicenceSection {
    /// The same section with the token and API key replaced by `***`, for
    /// printing.
    pub fn masked(&self) -> LicenceSection {
        let mut masked = self.clone();
        let star = |s: &mut Option<String>| {
            if s.is_some() {
                *s = Some("***".into());
            }
        };
        star(&mut masked.token);
        star(&mut masked.api_key);
        masked
    }

    /// The first key whose value cannot work, with the reason.
    pub fn problem(&self) -> Option<(&'static str, &'static str)> {
        let positive = |v: f64| v.is_finite() && v > 0.0;
        if !positive(self.heartbeat_interval_s) {
            return Some(("licence.heartbeat_interval_s", "must be a positive number"));
        }
        if !positive(self.grace_hours) {
            return Some(("licence.grace_hours", "must be a positive number"));
        }
        if !positive(self.retry_max_s) || !positive(self.timeout_s) {
            return Some(("licence", "retry_max_s and timeout_s must be positive"));
        }
        if self.token.is_some() && self.token_file.is_some() {
            return Some(("licence.token_file", "cannot be set together with token"));
        }
        if let Some(url) = self.endpoint.as_ref().filter(|u| !u.is_empty())
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Some(("licence.endpoint", "must start with http:// or https://"));
        }
        None
    }
}
