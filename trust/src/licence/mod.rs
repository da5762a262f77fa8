//! Licence tokens: issue, verify offline, and track over time.
//!
//! ## Token format
//!
//! `hl1.<base64url(claims JSON)>.<base64url(Ed25519 signature)>` (no
//! padding). The signature covers `halyard-licence-v1\n` ([`DOMAIN`]) followed
//! by the *encoded* claims segment exactly as it appears in the token, so
//! verification never depends on how JSON is re-serialised. `hl1` is the
//! format version: a vendor that needs a claim old hosts must not ignore
//! issues `hl2` tokens, which old hosts refuse as malformed. Within `hl1`,
//! unknown claim fields are ignored, so adding informational claims does not
//! break deployed hosts.
//!
//! ## Rules
//!
//! - A token verifies if *any* trusted key signed it (vendors rotate keys by
//!   listing old and new).
//! - It is valid from `issued_at` (minus [`CLOCK_SKEW_LEEWAY_SECS`], for
//!   devices whose clocks run a little behind) until just before
//!   `expires_at`; both are Unix seconds.
//! - A scope with no fleets and no devices admits every host; otherwise the
//!   host must be one of the devices or belong to one of the fleets.
//! - Tokens are secrets (anyone holding one can run a host under it): the
//!   [`Token`] type never prints one, and errors never quote one.
//!
//! Time is always a parameter (`now`, Unix seconds); nothing here reads a
//! clock. The state machine over time is in [`LicenceTracker`].

pub mod persisted;
mod state;

pub use state::{
    DEFAULT_GRACE, DEFAULT_OVERDUE_AFTER, DEV_MODE_ENV, LicenceState, LicenceTracker,
    TrackerConfig, dev_mode_from_env, dev_mode_requested,
};

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::keys::{KeyPair, PublicKey};

/// The domain tag that starts every licence signature's message.
pub const DOMAIN: &str = "halyard-licence-v1";

/// The token prefix: format version 1.
pub const PREFIX: &str = "hl1";

/// How far ahead of the device's clock a token's `issued_at` may be and the
/// token still be accepted: five minutes of clock drift is common on devices
/// without a good time source and is no security risk.
pub const CLOCK_SKEW_LEEWAY_SECS: u64 = 300;

/// Longest token accepted; real ones are a few hundred bytes.
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Why a licence token was refused.
///
/// `Clone + Eq` so the tracker can hold one as the reason of
/// [`LicenceState::Invalid`] and tests can compare them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LicenceError {
    /// The text is not a well-formed `hl1` token, or its claims do not parse.
    #[error("malformed licence token: {0}")]
    Malformed(String),
    /// No trusted key verifies the signature: forged, altered, or issued by
    /// a key this host does not trust.
    #[error("licence signature does not verify with any trusted key (forged or wrong key)")]
    BadSignature,
    /// There were no trusted keys to verify against.
    #[error("no licence public key configured")]
    NoTrustedKeys,
    /// `issued_at` is in the future (beyond the clock-skew leeway).
    #[error("licence not valid yet: issued at {issued_at}, now is {now} (check the clock)")]
    NotYetValid {
        /// The token's `issued_at`.
        issued_at: u64,
        /// The time it was checked at.
        now: u64,
    },
    /// `expires_at` has passed.
    #[error("licence expired at {expires_at} (now {now})")]
    Expired {
        /// The token's `expires_at`.
        expires_at: u64,
        /// The time it was checked at.
        now: u64,
    },
    /// The token is for other devices or fleets.
    #[error("licence does not cover host {host_id:?}{}", fleet.as_deref().map(|f| format!(" in fleet {f:?}")).unwrap_or_default())]
    OutOfScope {
        /// This host's id.
        host_id: String,
        /// This host's fleet, if it has one.
        fleet: Option<String>,
    },
}

/// A licence token's claims: who may run, where, until when, with what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Who the licence is for, as shown to operators.
    pub licensee: String,
    /// Which hosts may run under it.
    #[serde(default)]
    pub scope: Scope,
    /// When it was issued (Unix seconds); not valid before.
    pub issued_at: u64,
    /// When it expires (Unix seconds); not valid from then on.
    pub expires_at: u64,
    /// What it allows.
    #[serde(default)]
    pub features: Features,
    /// How long the host keeps shipping while the licence server is
    /// unreachable; `None` means the host's default (72 h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_hours: Option<u32>,
}

/// The hosts a licence covers. Empty lists on both sides mean every host.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    /// Fleets whose every host is covered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fleets: Vec<String>,
    /// Individual host ids covered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<String>,
}

/// What a licence allows.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Features {
    /// Plugin kinds that may be loaded (`"validator"`, …); `None` = all.
    /// Strings rather than an enum so a host accepts tokens naming kinds it
    /// does not know yet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin_kinds: Option<Vec<String>>,
    /// Most plugins loaded at once; `None` = no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_plugins: Option<u32>,
}

impl Features {
    /// True if plugins of `kind` may be loaded.
    pub fn allows_kind(&self, kind: &str) -> bool {
        self.plugin_kinds
            .as_ref()
            .is_none_or(|kinds| kinds.iter().any(|k| k == kind))
    }

    /// True if `count` plugins may be loaded at once.
    pub fn allows_plugin_count(&self, count: usize) -> bool {
        self.max_plugins
            .is_none_or(|max| u64::try_from(count).is_ok_and(|n| n <= u64::from(max)))
    }
}

/// Who this host is, for scope checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostIdentity {
    /// The host's id (device id).
    pub host_id: String,
    /// The fleet it belongs to, if configured.
    pub fleet: Option<String>,
}

impl Scope {
    /// True if the scope is unrestricted ("any host").
    pub fn is_any(&self) -> bool {
        self.fleets.is_empty() && self.devices.is_empty()
    }

    /// True if `host` is covered.
    pub fn admits(&self, host: &HostIdentity) -> bool {
        self.is_any()
            || self.devices.contains(&host.host_id)
            || host.fleet.as_ref().is_some_and(|f| self.fleets.contains(f))
    }
}

impl Claims {
    /// Checks time and (if `host` is given) scope; the signature must have
    /// been checked already. `None` for `host` is for tools that inspect a
    /// token away from the device it is for.
    pub fn check(&self, host: Option<&HostIdentity>, now: u64) -> Result<(), LicenceError> {
        if now.saturating_add(CLOCK_SKEW_LEEWAY_SECS) < self.issued_at {
            return Err(LicenceError::NotYetValid {
                issued_at: self.issued_at,
                now,
            });
        }
        if now >= self.expires_at {
            return Err(LicenceError::Expired {
                expires_at: self.expires_at,
                now,
            });
        }
        if let Some(host) = host.filter(|h| !self.scope.admits(h)) {
            return Err(LicenceError::OutOfScope {
                host_id: host.host_id.clone(),
                fleet: host.fleet.clone(),
            });
        }
        Ok(())
    }
}

/// A licence token. Its `Debug` and `Display` show only its length, so a
/// token in a struct that gets logged stays secret; [`Token::expose`] is the
/// one deliberate way to the text.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// Wraps token text (from a config, an env var or a heartbeat answer).
    /// Surrounding whitespace is trimmed; nothing is checked until verify.
    pub fn new(text: impl Into<String>) -> Self {
        let text: String = text.into();
        Self(text.trim().to_owned())
    }

    /// The token text, to write to a file or send to the licence server.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token(<{} bytes, hidden>)", self.0.len())
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<licence token, {} bytes>", self.0.len())
    }
}

/// The message a licence signature covers.
fn message(claims_segment: &str) -> Vec<u8> {
    format!("{DOMAIN}\n{claims_segment}").into_bytes()
}

/// Signs `claims` with the vendor's `key`.
pub fn issue(claims: &Claims, key: &KeyPair) -> Token {
    // Claims are plain strings and integers: serialising cannot fail. An
    // empty object would be refused at verify time rather than panic here.
    let json = serde_json::to_vec(claims).unwrap_or_else(|_| b"{}".to_vec());
    let segment = URL_SAFE_NO_PAD.encode(json);
    let signature = URL_SAFE_NO_PAD.encode(key.sign(&message(&segment)));
    Token(format!("{PREFIX}.{segment}.{signature}"))
}

/// Splits a token into its claims segment and raw signature.
fn split(token: &str) -> Result<(&str, Vec<u8>), LicenceError> {
    let malformed = |why: &str| LicenceError::Malformed(why.to_owned());
    let token = token.trim();
    if token.len() > MAX_TOKEN_LEN {
        return Err(malformed("token is too long"));
    }
    let mut parts = token.split('.');
    let (Some(prefix), Some(claims), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("expected hl1.<claims>.<signature>"));
    };
    if prefix != PREFIX {
        return Err(malformed("unknown token version (expected hl1)"));
    }
    let sig = URL_SAFE_NO_PAD
        .decode(sig)
        .map_err(|_| malformed("signature is not base64url"))?;
    if sig.len() != 64 {
        return Err(malformed("signature is not 64 bytes"));
    }
    Ok((claims, sig))
}

/// Decodes and sanity-checks a claims segment.
fn decode_claims(segment: &str) -> Result<Claims, LicenceError> {
    let json = URL_SAFE_NO_PAD
        .decode(segment)
        .map_err(|_| LicenceError::Malformed("claims are not base64url".to_owned()))?;
    let claims: Claims = serde_json::from_slice(&json)
        .map_err(|e| LicenceError::Malformed(format!("claims: {e}")))?;
    if claims.expires_at <= claims.issued_at {
        return Err(LicenceError::Malformed(
            "expires_at is not after issued_at".to_owned(),
        ));
    }
    Ok(claims)
}

/// Reads a token's claims **without checking its signature**: for
/// `halyard license inspect` without a public key. Never use the result to
/// decide anything.
pub fn decode_unverified(token: &str) -> Result<Claims, LicenceError> {
    let (segment, _) = split(token)?;
    decode_claims(segment)
}

/// Checks the signature only (not time, not scope) and returns the claims.
/// The building block of [`verify`]; also what a tool uses to show an
/// expired token's claims as genuine.
pub fn verify_signature(token: &str, trusted: &[PublicKey]) -> Result<Claims, LicenceError> {
    let (segment, sig) = split(token)?;
    if trusted.is_empty() {
        return Err(LicenceError::NoTrustedKeys);
    }
    let message = message(segment);
    if !trusted.iter().any(|k| k.verifies(&message, &sig)) {
        return Err(LicenceError::BadSignature);
    }
    decode_claims(segment)
}

/// Verifies a token completely, as the host does at start and on renewal:
/// signature by a trusted key, valid at `now` (Unix seconds), covering `host`.
pub fn verify(
    token: &str,
    trusted: &[PublicKey],
    host: &HostIdentity,
    now: u64,
) -> Result<Claims, LicenceError> {
    let claims = verify_signature(token, trusted)?;
    claims.check(Some(host), now)?;
    Ok(claims)
}

#[cfg(test)]
mod tests;
