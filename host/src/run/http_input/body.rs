//! From a request body to frames: read it whole within the body timeout and
//! the size cap, decompress gzip (capped too), split into lines.

use std::io::Read;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::http::header::CONTENT_ENCODING;
use flate2::read::MultiGzDecoder;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;

use super::handler::Refusal;
use crate::pipeline::KeyedFrame;
use crate::plugin::Frame;

/// Reads the whole body: at most `max` bytes (413 beyond) and within
/// `timeout` of the call (408 otherwise). Bytes that came in before either
/// limit are dropped with the request; nothing of it is ingested.
pub async fn read(body: Incoming, max: usize, timeout: Duration) -> Result<Bytes, Refusal> {
    let collect = Limited::new(body, max).collect();
    let collected = tokio::time::timeout(timeout, collect)
        .await
        .map_err(|_| Refusal::BodyTimeout(timeout))?;
    collected
        .map(http_body_util::Collected::to_bytes)
        .map_err(|e| {
            if e.downcast_ref::<LengthLimitError>().is_some() {
                Refusal::TooLarge(max)
            } else {
                Refusal::BadRequest(format!("could not read the body: {e}"))
            }
        })
}

/// Whether the body is gzip, from `Content-Encoding`.
pub fn is_gzip(headers: &HeaderMap) -> Result<bool, Refusal> {
    let Some(value) = headers.get(CONTENT_ENCODING) else {
        return Ok(false);
    };
    let text = value.to_str().unwrap_or_default().trim();
    if text.eq_ignore_ascii_case("gzip") || text.eq_ignore_ascii_case("x-gzip") {
        Ok(true)
    } else if text.is_empty() || text.eq_ignore_ascii_case("identity") {
        Ok(false)
    } else {
        Err(Refusal::UnsupportedEncoding(
            String::from_utf8_lossy(value.as_bytes()).into_owned(),
        ))
    }
}

/// Decompresses, never producing more than `max` bytes: a gzip bomb is cut
/// off at `max + 1` bytes and refused, whatever it would expand to.
pub fn gunzip(body: &[u8], max: usize) -> Result<Bytes, Refusal> {
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(max));
    MultiGzDecoder::new(body)
        .take((max as u64).saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| Refusal::BadRequest(format!("body is not valid gzip: {e}")))?;
    if out.len() > max {
        return Err(Refusal::TooLarge(max));
    }
    Ok(Bytes::from(out))
}

/// One frame per line: split on `\n`, a trailing `\r` stripped, blank
/// lines skipped. The last line needs no `\n`.
pub fn frames(body: &[u8], content_type: &str, origin: &str) -> Vec<KeyedFrame> {
    body.split(|b| *b == b'\n')
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
        .map(|line| KeyedFrame {
            frame: Frame {
                data: line.to_vec(),
                content_type: content_type.to_string(),
                origin: origin.to_string(),
            },
            key: None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use axum::http::HeaderValue;
    use flate2::Compression;
    use flate2::write::GzEncoder;

    use super::*;

    fn lines(body: &[u8]) -> Vec<Vec<u8>> {
        frames(body, "t", "http:x")
            .into_iter()
            .map(|f| f.frame.data)
            .collect()
    }

    #[test]
    fn lines_split_on_newline_strip_cr_and_skip_blanks() {
        assert_eq!(
            lines(b"a\r\n\n  \r\nb\nc"),
            vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]
        );
        assert!(lines(b"").is_empty());
        assert!(lines(b"\n\r\n").is_empty());
        let f = &frames(b"x", "text/plain", "http:web")[0];
        assert_eq!(
            (
                f.frame.content_type.as_str(),
                f.frame.origin.as_str(),
                f.key
            ),
            ("text/plain", "http:web", None)
        );
    }

    #[test]
    fn gzip_is_capped_after_decompression() {
        let gz = |data: &[u8]| {
            let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
            enc.write_all(data).expect("write to memory");
            enc.finish().expect("finish gzip")
        };
        let zeros = vec![0u8; 1 << 20];
        assert!(matches!(
            gunzip(&gz(&zeros), 1000),
            Err(Refusal::TooLarge(1000))
        ));
        assert_eq!(
            gunzip(&gz(&zeros[..1000]), 1000).map(|b| b.len()).ok(),
            Some(1000)
        );
        assert!(matches!(
            gunzip(b"not gzip", 1000),
            Err(Refusal::BadRequest(_))
        ));
    }

    #[test]
    fn only_gzip_and_identity_encodings_are_read() {
        let mut h = HeaderMap::new();
        assert!(matches!(is_gzip(&h), Ok(false)));
        h.insert(CONTENT_ENCODING, HeaderValue::from_static("GZIP"));
        assert!(matches!(is_gzip(&h), Ok(true)));
        h.insert(CONTENT_ENCODING, HeaderValue::from_static("br"));
        assert!(matches!(is_gzip(&h), Err(Refusal::UnsupportedEncoding(_))));
    }
}
