//! # Halyard's trust building blocks
//!
//! The cryptography and accounting behind signed plugins, licences, usage
//! telemetry and batch provenance. Everything here is a library of pure
//! functions and small types: no threads, no network, no clocks. Callers
//! pass the current time in (Unix seconds), so every rule about time is
//! tested without sleeping.
//!
//! # Layout
//!
//! - [`keys`]: Ed25519 key pairs (PKCS#8), owner-only key files, the host's
//!   provenance key created on first run, public keys' text form
//!   (`ed25519:<base64>`) and short key ids.
//! - [`plugin_sig`]: detached signatures over a component's name, kind,
//!   version, fleet and SHA-256 (`FILE.sig`, a small JSON file) and their
//!   verification against trusted keys and where the component is installed.
//! - [`manifest`]: signed rollout manifests (an envelope over the exact
//!   payload bytes) and their freshness: a serial that only grows, an expiry.
//! - [`cache_mac`]: the host secret that authenticates compile-cache
//!   artefacts (HMAC-SHA256) before they are loaded as native code.
//! - [`licence`]: licence tokens (`hl1.<claims>.<signature>`), their offline
//!   verification, and the licence state machine (valid, grace, expired,
//!   invalid, dev) driven by heartbeat outcomes and an injected `now`.
//! - [`usage`]: the heartbeat's usage window, whose snapshot/commit protocol
//!   neither loses nor double-counts usage across failed sends, and the
//!   heartbeat's jittered interval.
//! - [`provenance`]: batch signature headers and `name@hash` chain links.
//!
//! # Invariants
//!
//! 1. **Every signature is domain-separated.** Each use signs a message
//!    that starts with its own tag ([`plugin_sig::DOMAIN`],
//!    [`licence::DOMAIN`], [`provenance::DOMAIN`], [`manifest::DOMAIN`]), so a signature made for
//!    one purpose can never be replayed as another (a batch signature is
//!    never a valid plugin signature, even over the same bytes). No raw
//!    "sign these bytes" function is exported.
//! 2. **Secrets are never printed.** [`keys::KeyPair`] and
//!    [`licence::Token`] have `Debug`/`Display` impls that show only a key id
//!    or a length.
//! 3. **Outside input never panics.** Signature files, tokens, headers and
//!    key files are parsed into typed errors, one `thiserror` enum per module.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod cache_mac;
pub mod keys;
pub mod licence;
pub mod manifest;
pub mod plugin_sig;
pub mod provenance;
pub mod usage;

pub use keys::{KeyError, KeyId, KeyPair, PublicKey};

/// The SHA-256 of `bytes`, lowercase hex: the content hash used by plugin
/// signatures, provenance chain links and the compile cache alike, so one
/// component has one name everywhere.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

/// Lowercase hex of `bytes` (kept here to avoid a dependency for ten lines).
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Decodes lowercase or uppercase hex; `None` on odd length or a non-hex digit.
pub(crate) fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.as_bytes()
        .chunks(2)
        .map(|pair| {
            let digit = |c: u8| char::from(c).to_digit(16);
            u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).ok()
        })
        .collect()
}

/// True if `text` is exactly 64 lowercase hex digits: the form of every
/// SHA-256 this crate writes, and the only form it accepts back.
pub(crate) fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_known_input() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(is_sha256_hex(&sha256_hex(b"")));
        assert!(!is_sha256_hex(&sha256_hex(b"").to_uppercase()));
    }

    #[test]
    fn hex_round_trips_and_rejects_garbage() {
        assert_eq!(
            unhex(&hex(&[0, 1, 0xab, 0xff])),
            Some(vec![0, 1, 0xab, 0xff])
        );
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex("é1"), None);
    }
}
