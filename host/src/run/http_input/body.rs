//! From a request body to frames: read it whole within the body timeout and
//! the size cap, decompress gzip (capped too), split into lines.

use std::io::Read;
use std::ops::Range;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::http::header::CONTENT_ENCODING;
use flate2::read::MultiGzDecoder;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper::body::Incoming;

use super::handler::Refusal;
use crate::pipeline::SharedFrames;

/// Reads the whole body: at most `max` bytes (413 beyond) and within
/// `timeout` of the call (408 otherwise). Bytes that came in before either
/// limit are dropped with the request; nothing of it is ingested. The body
/// is gathered in one buffer sized from `declared` (its `Content-Length`),
/// so it is held once, not once in chunks and again joined.
pub async fn read(
    body: Incoming,
    max: usize,
    timeout: Duration,
    declared: Option<u64>,
) -> Result<Bytes, Refusal> {
    let capacity = declared.map_or(0, |len| usize::try_from(len).unwrap_or(max).min(max));
    let collect = async move {
        let mut body = Limited::new(body, max);
        let mut out = Vec::with_capacity(capacity);
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                if e.downcast_ref::<LengthLimitError>().is_some() {
                    Refusal::TooLarge(max)
                } else {
                    Refusal::BadRequest(format!("could not read the body: {e}"))
                }
            })?;
            if let Ok(data) = frame.into_data() {
                out.extend_from_slice(&data);
            }
        }
        Ok(Bytes::from(out))
    };
    tokio::time::timeout(timeout, collect)
        .await
        .map_err(|_| Refusal::BodyTimeout(timeout))?
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

/// The body's frames, one per line, sharing its bytes (see
/// [`SharedFrames`]).
pub fn frames(body: Bytes, content_type: &str, origin: &str) -> Result<SharedFrames, Refusal> {
    let spans = line_spans(&body).into_iter().map(|(span, _)| span);
    SharedFrames::new(body, spans, content_type, origin)
        .map_err(|e| Refusal::Internal(e.to_string()))
}

/// Like [`frames`], with each frame's line number in the body (from 1,
/// blank lines counted), for per-line results.
pub fn numbered_frames(
    body: Bytes,
    content_type: &str,
    origin: &str,
) -> Result<(SharedFrames, Vec<u32>), Refusal> {
    let (spans, numbers): (Vec<_>, Vec<_>) = line_spans(&body)
        .into_iter()
        .map(|(span, n)| (span, u32::try_from(n + 1).unwrap_or(u32::MAX)))
        .unzip();
    let frames = SharedFrames::new(body, spans, content_type, origin)
        .map_err(|e| Refusal::Internal(e.to_string()))?;
    Ok((frames, numbers))
}

/// Where the lines are, with their index (from 0): split on `\n`, a
/// trailing `\r` stripped, blank lines skipped. The last line needs no
/// `\n`.
fn line_spans(body: &[u8]) -> Vec<(Range<usize>, usize)> {
    let mut spans = Vec::new();
    let mut start = 0;
    for (n, line) in body.split(|b| *b == b'\n').enumerate() {
        let end = start + line.len();
        let kept = line.strip_suffix(b"\r").unwrap_or(line);
        if !kept.iter().all(u8::is_ascii_whitespace) {
            spans.push((start..start + kept.len(), n));
        }
        start = end + 1;
    }
    spans
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use axum::http::HeaderValue;
    use flate2::Compression;
    use flate2::write::GzEncoder;

    use super::*;

    fn lines(body: &'static [u8]) -> Vec<Vec<u8>> {
        frames(Bytes::from_static(body), "t", "http:x")
            .expect("spans within the body")
            .map(|f| f.frame.data)
            .collect()
    }

    #[test]
    fn lines_split_on_newline_strip_cr_and_skip_blanks() {
        assert_eq!(
            lines(b"a\r\n\n  \r\nb\nc"),
            vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]
        );
        assert_eq!(lines(b"\r\nx\r"), vec![b"x".to_vec()]);
        assert!(lines(b"").is_empty());
        assert!(lines(b"\n\r\n").is_empty());
        let (_, numbers) =
            numbered_frames(Bytes::from_static(b"a\r\n\n  \r\nb\nc"), "t", "x").expect("spans");
        assert_eq!(numbers, [1, 4, 5], "blank lines counted, not listed");
        let f = frames(Bytes::from_static(b"x"), "text/plain", "http:web")
            .expect("spans")
            .next()
            .expect("one frame");
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
