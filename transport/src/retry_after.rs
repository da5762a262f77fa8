//! Reading the receiver's `Retry-After` hint.

use std::time::{Duration, SystemTime};

/// The longest `Retry-After` the transport honours.
///
/// A misconfigured or hostile receiver must not be able to park a device's
/// batches for days with one header; after ten minutes the normal backoff
/// and breaker take over again.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// Parses a `Retry-After` value (delay-seconds or an HTTP date, RFC 9110
/// §10.2.3) into a delay from `now`, capped at [`MAX_RETRY_AFTER`].
///
/// A date in the past means "now" (zero). Anything unparseable is ignored
/// (`None`) rather than treated as an error: the hint is optional.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    let delay = if value.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits to fit a u64 is still "a very long time".
        Duration::from_secs(value.parse::<u64>().unwrap_or(u64::MAX))
    } else {
        let at = httpdate::parse_http_date(value).ok()?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(delay.min(MAX_RETRY_AFTER))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds() {
        let now = SystemTime::now();
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("601", now), Some(MAX_RETRY_AFTER));
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(MAX_RETRY_AFTER)
        );
    }

    #[test]
    fn http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let future = httpdate::fmt_http_date(now + Duration::from_secs(42));
        assert_eq!(
            parse_retry_after(&future, now),
            Some(Duration::from_secs(42))
        );
        let past = httpdate::fmt_http_date(now - Duration::from_secs(42));
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
        let far = httpdate::fmt_http_date(now + Duration::from_secs(86_400));
        assert_eq!(parse_retry_after(&far, now), Some(MAX_RETRY_AFTER));
    }

    #[test]
    fn garbage_is_ignored() {
        let now = SystemTime::now();
        for value in ["", "soon", "-5", "1.5", "Mon, 99 Foo 2024 00:00:00 GMT"] {
            assert_eq!(parse_retry_after(value, now), None, "{value:?}");
        }
    }
}
