//! API-key check, in constant time and without keeping the key around.

use std::fmt;

use axum::http::{HeaderMap, HeaderName};
use sha2::{Digest, Sha256};

/// The configured key, held only as its SHA-256 digest.
///
/// Comparing digests of equal length in constant time hides both the key's
/// bytes and its length from a timing attacker, and there is no plaintext key
/// in memory for a debug print or a log line to leak.
#[derive(Clone)]
pub(crate) struct ApiKey {
    header: HeaderName,
    digest: [u8; 32],
}

impl ApiKey {
    pub(crate) fn new(header: HeaderName, key: &str) -> Self {
        Self {
            header,
            digest: Sha256::digest(key.as_bytes()).into(),
        }
    }

    /// True when the request carries exactly one value of the key header and
    /// it equals the configured key.
    pub(crate) fn allows(&self, headers: &HeaderMap) -> bool {
        let mut values = headers.get_all(&self.header).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return false;
        };
        let presented: [u8; 32] = Sha256::digest(value.as_bytes()).into();
        constant_time_eq(&presented, &self.digest)
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

/// Looks at every byte whatever the first difference; `black_box` keeps the
/// optimiser from turning the fold into an early-exit comparison.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let diff = a
        .iter()
        .zip(b)
        .fold(0u8, |acc, (x, y)| acc | std::hint::black_box(x ^ y));
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(values: &[&'static str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append("x-api-key", HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn only_the_exact_key_once_is_allowed() {
        let key = ApiKey::new(HeaderName::from_static("x-api-key"), "s3cret");
        assert!(key.allows(&headers(&["s3cret"])));
        assert!(!key.allows(&headers(&[])));
        assert!(!key.allows(&headers(&["s3cre"])));
        assert!(!key.allows(&headers(&["s3cret "])));
        assert!(!key.allows(&headers(&["S3CRET"])));
        assert!(!key.allows(&headers(&["s3cret", "s3cret"])));
    }

    #[test]
    fn debug_never_shows_the_key() {
        let key = ApiKey::new(HeaderName::from_static("x-api-key"), "s3cret");
        let shown = format!("{key:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
