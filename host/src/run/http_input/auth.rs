//! Who may post: a request carries one of the configured tokens, as
//! `Authorization: Bearer <token>` or in the API-key header (`X-Api-Key` by
//! default), or the input was configured `auth = "none"` (loopback only).
//!
//! Tokens are compared in constant time: each candidate and each token are
//! hashed (SHA-256, so lengths cannot leak either) and the digests compared
//! with `subtle`, against every configured token without stopping at a
//! match. Only the digests are kept; the tokens themselves are not held by
//! the running input, so no log or panic here can print one.

use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, HeaderName};
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

use crate::config::{DEFAULT_TOKEN_HEADER, IngestAuth};

/// How an http input checks its clients.
#[derive(Clone)]
pub enum Auth {
    /// `auth = "none"`: every request is let in.
    Open,
    /// Requests must carry one of these tokens.
    Tokens {
        /// SHA-256 of each accepted token.
        digests: Vec<[u8; 32]>,
        /// The API-key header (besides `Authorization: Bearer`).
        header: HeaderName,
    },
}

/// The outcome of checking a request's credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Let in.
    Allowed,
    /// No `Authorization: Bearer` and no API-key header.
    Missing,
    /// A credential was sent but matches no token.
    Wrong,
}

impl Auth {
    /// From the config. A missing `auth` (a config that skipped the check)
    /// admits nobody: the endpoint is never open by accident.
    pub fn from_config(auth: Option<&IngestAuth>) -> Auth {
        match auth {
            Some(IngestAuth::None) => Auth::Open,
            Some(IngestAuth::Tokens(t)) => Auth::Tokens {
                digests: t.tokens.iter().map(|t| digest(t.expose())).collect(),
                header: HeaderName::from_bytes(t.header.as_bytes())
                    .unwrap_or(HeaderName::from_static(DEFAULT_TOKEN_HEADER)),
            },
            None => Auth::Tokens {
                digests: Vec::new(),
                header: HeaderName::from_static(DEFAULT_TOKEN_HEADER),
            },
        }
    }

    /// Checks a request's headers; reads nothing else (the body is not read
    /// before this says [`Verdict::Allowed`]).
    pub fn check(&self, headers: &HeaderMap) -> Verdict {
        let Auth::Tokens { digests, header } = self else {
            return Verdict::Allowed;
        };
        let bearer = headers
            .get_all(AUTHORIZATION)
            .iter()
            .filter_map(|v| bearer_token(v.as_bytes()));
        let api_key = headers.get_all(header).iter().map(|v| trim(v.as_bytes()));
        let mut presented = false;
        for candidate in bearer.chain(api_key) {
            presented = true;
            if matches_any(digests, candidate) {
                return Verdict::Allowed;
            }
        }
        if presented {
            Verdict::Wrong
        } else {
            Verdict::Missing
        }
    }
}

/// Whether `candidate` is one of the tokens, looking at every digest
/// whatever the outcome, so timing says nothing about which or how close.
fn matches_any(digests: &[[u8; 32]], candidate: &[u8]) -> bool {
    let d = digest_bytes(candidate);
    let found = digests
        .iter()
        .fold(Choice::from(0), |found, t| found | t.ct_eq(&d));
    bool::from(found)
}

/// The token of an `Authorization: Bearer <token>` value (the scheme is
/// case-insensitive, RFC 7235); `None` for other schemes.
fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let value = trim(value);
    let (scheme, rest) = value.split_at_checked(6)?;
    let separated = rest.first() == Some(&b' ');
    (scheme.eq_ignore_ascii_case(b"bearer") && separated).then(|| trim(rest))
}

fn trim(value: &[u8]) -> &[u8] {
    value.trim_ascii()
}

fn digest(token: &str) -> [u8; 32] {
    digest_bytes(token.as_bytes())
}

fn digest_bytes(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;
    use crate::config::{IngestToken, TokenAuth};

    fn auth() -> Auth {
        Auth::from_config(Some(&IngestAuth::Tokens(TokenAuth {
            tokens: vec![IngestToken::new("alpha-1"), IngestToken::new("beta-2")],
            header: "X-Ingest-Key".into(),
        })))
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn bearer_or_api_key_header_with_any_token() {
        let a = auth();
        for ok in [
            headers(&[("authorization", "Bearer alpha-1")]),
            headers(&[("authorization", "bearer   beta-2 ")]),
            headers(&[("x-ingest-key", "beta-2")]),
            headers(&[("authorization", "Basic eA=="), ("x-ingest-key", "alpha-1")]),
        ] {
            assert_eq!(a.check(&ok), Verdict::Allowed, "{ok:?}");
        }
    }

    #[test]
    fn missing_and_wrong_are_told_apart() {
        let a = auth();
        assert_eq!(a.check(&headers(&[])), Verdict::Missing);
        assert_eq!(
            a.check(&headers(&[("authorization", "Basic eA==")])),
            Verdict::Missing
        );
        assert_eq!(
            a.check(&headers(&[("authorization", "Bearer alpha-")])),
            Verdict::Wrong
        );
        assert_eq!(
            a.check(&headers(&[("authorization", "Beareralpha-1")])),
            Verdict::Missing
        );
        assert_eq!(
            a.check(&headers(&[("x-api-key", "alpha-1")])),
            Verdict::Missing,
            "only the configured header"
        );
        assert_eq!(
            a.check(&headers(&[("x-ingest-key", "alpha-1x")])),
            Verdict::Wrong
        );
    }

    #[test]
    fn open_admits_all_and_unset_admits_none() {
        assert_eq!(
            Auth::from_config(Some(&IngestAuth::None)).check(&headers(&[])),
            Verdict::Allowed
        );
        let closed = Auth::from_config(None);
        assert_eq!(closed.check(&headers(&[("x-api-key", "")])), Verdict::Wrong);
        assert_eq!(closed.check(&headers(&[])), Verdict::Missing);
    }
}
