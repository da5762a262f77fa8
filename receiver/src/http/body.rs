//! Turning a request body into a checked batch: size limits, gzip, JSON.
//!
//! Everything here runs before the store is touched, so a body refused at any
//! step stores nothing: a batch is all or nothing.

use std::borrow::Cow;
use std::io::Read;

use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::http::header::{CONTENT_ENCODING, CONTENT_LENGTH};
use flate2::read::MultiGzDecoder;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::error::ApiError;
use crate::store::{BatchMeta, NewEvent};

/// The header the host's transport repeats the batch id in.
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// How the body is encoded, from `Content-Encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    Identity,
    Gzip,
}

impl Encoding {
    pub(crate) fn from_headers(headers: &HeaderMap) -> Result<Self, ApiError> {
        let Some(value) = headers.get(CONTENT_ENCODING) else {
            return Ok(Self::Identity);
        };
        let text = value.to_str().unwrap_or_default().trim();
        if text.eq_ignore_ascii_case("gzip") || text.eq_ignore_ascii_case("x-gzip") {
            Ok(Self::Gzip)
        } else if text.is_empty() || text.eq_ignore_ascii_case("identity") {
            Ok(Self::Identity)
        } else {
            Err(ApiError::UnsupportedEncoding(
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            ))
        }
    }
}

/// Refuses early, before reading anything, when the sender announces a body
/// larger than the limit.
pub(crate) fn check_declared_length(headers: &HeaderMap, max: usize) -> Result<(), ApiError> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match declared {
        Some(len) if len > max as u64 => Err(ApiError::TooLarge(max)),
        _ => Ok(()),
    }
}

/// Decompresses if needed, never producing more than `max` bytes: a gzip bomb
/// is cut off at `max + 1` bytes and refused, whatever it would expand to.
pub(crate) fn decode(body: Bytes, encoding: Encoding, max: usize) -> Result<Bytes, ApiError> {
    match encoding {
        Encoding::Identity => Ok(body),
        Encoding::Gzip => {
            let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(max));
            let limit = (max as u64).saturating_add(1);
            MultiGzDecoder::new(&body[..])
                .take(limit)
                .read_to_end(&mut out)
                .map_err(|e| ApiError::BadRequest(format!("body is not valid gzip: {e}")))?;
            if out.len() > max {
                return Err(ApiError::TooLarge(max));
            }
            Ok(Bytes::from(out))
        }
    }
}

/// The batch as sent. Events and ids borrow from the body: a batch of
/// thousands of events costs no allocation per event (an id needs one only
/// when it holds a JSON escape).
#[derive(Deserialize)]
struct WireBatch<'a> {
    #[serde(default)]
    batch_id: Option<String>,
    #[serde(default)]
    host: Option<WireHost>,
    #[serde(borrow)]
    events: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
struct WireHost {
    #[serde(default)]
    id: Option<String>,
}

#[derive(Deserialize)]
struct EventId<'a> {
    #[serde(borrow)]
    id: Cow<'a, str>,
}

/// A batch whose every event has been checked to be an object with a string
/// `id`; the events keep their JSON text exactly as sent, borrowed from the
/// decoded body.
pub(crate) struct ParsedBatch<'a> {
    pub(crate) meta: BatchMeta,
    events: Vec<(Cow<'a, str>, &'a RawValue)>,
}

impl<'a> ParsedBatch<'a> {
    /// Parses and checks the whole batch; one bad event refuses all of it,
    /// and the answer names every bad event (when `policy` says to) so the
    /// sender can drop just those.
    ///
    /// The batch id comes from the body's `batch_id`, or from the
    /// `Idempotency-Key` header when the body has none.
    pub(crate) fn parse(
        body: &'a [u8],
        headers: &HeaderMap,
        policy: &EventPolicy<'_>,
    ) -> Result<Self, ApiError> {
        let wire: WireBatch = serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("body is not a valid batch: {e}")))?;
        if let Some(limit) = policy.max_events
            && wire.events.len() > limit
        {
            return Err(ApiError::TooManyEvents {
                events: wire.events.len(),
                limit,
            });
        }
        let mut events = Vec::with_capacity(wire.events.len());
        let mut rejected = Vec::new();
        for (index, raw) in wire.events.into_iter().enumerate() {
            match event_id(raw).and_then(|id| policy.check(raw).map(|()| id)) {
                Ok(id) => events.push((id, raw)),
                Err(reason) => rejected.push((index, reason)),
            }
        }
        if let Some((index, reason)) = rejected.first() {
            return Err(if policy.name_rejected {
                ApiError::EventsRejected(rejected)
            } else {
                ApiError::BadRequest(format!("events[{index}]: {reason}"))
            });
        }
        let batch_id = wire.batch_id.or_else(|| {
            headers
                .get(IDEMPOTENCY_KEY)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        });
        Ok(Self {
            meta: BatchMeta {
                batch_id,
                host_id: wire.host.and_then(|h| h.id),
            },
            events,
        })
    }

    /// The events as the store takes them.
    pub(crate) fn events(&self) -> Vec<NewEvent<'_>> {
        self.events
            .iter()
            .map(|(id, raw)| NewEvent {
                id,
                json: raw.get(),
            })
            .collect()
    }
}

/// What the receiver refuses beyond the wire format (see the
/// [`ReceiverConfig`](crate::ReceiverConfig) fields of the same names).
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct EventPolicy<'a> {
    pub(crate) max_events: Option<usize>,
    pub(crate) refuse_sources: &'a [String],
    pub(crate) name_rejected: bool,
}

impl EventPolicy<'_> {
    /// Refuses an event whose `source` is in `refuse_sources`.
    fn check(&self, raw: &RawValue) -> Result<(), String> {
        if self.refuse_sources.is_empty() {
            return Ok(());
        }
        #[derive(Deserialize)]
        struct Source {
            #[serde(default)]
            source: Option<String>,
        }
        let source = serde_json::from_str::<Source>(raw.get())
            .ok()
            .and_then(|s| s.source);
        match source {
            Some(s) if self.refuse_sources.contains(&s) => {
                Err(format!("source {s:?} is refused by this receiver"))
            }
            _ => Ok(()),
        }
    }
}

fn event_id(raw: &RawValue) -> Result<Cow<'_, str>, String> {
    // serde would also read a struct from a JSON array; only objects are events.
    if !raw.get().trim_start().starts_with('{') {
        return Err("event is not a JSON object".to_owned());
    }
    serde_json::from_str::<EventId<'_>>(raw.get())
        .map(|e| e.id)
        .map_err(|e| format!("event needs a string `id`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Bytes {
        let mut enc = GzEncoder::new(Vec::new(), Compression::fast());
        enc.write_all(data).expect("write to memory");
        Bytes::from(enc.finish().expect("finish gzip"))
    }

    #[test]
    fn gzip_is_limited_after_decompression() {
        let zeros = vec![0u8; 1 << 20];
        assert!(matches!(
            decode(gzip(&zeros), Encoding::Gzip, 1000),
            Err(ApiError::TooLarge(1000))
        ));
        let exact = decode(gzip(&zeros[..1000]), Encoding::Gzip, 1000).expect("fits");
        assert_eq!(exact.len(), 1000);
    }

    #[test]
    fn not_gzip_is_a_bad_request() {
        let result = decode(Bytes::from_static(b"{}"), Encoding::Gzip, 1000);
        assert!(matches!(result, Err(ApiError::BadRequest(_))));
    }

    #[test]
    fn every_event_needs_a_string_id_and_must_be_an_object() {
        let h = HeaderMap::new();
        for bad in [
            r#"{"events":[{"id":"a"},{"kind":"x"}]}"#,
            r#"{"events":[{"id":7}]}"#,
            r#"{"events":[["a"]]}"#,
            r#"{"events":["a"]}"#,
            r#"{"events":[{"id":"a","id":"b"}]}"#,
            r#"{"batch_id":"b"}"#,
            r#"{"events":{}}"#,
            "not json",
        ] {
            let plain = EventPolicy::default();
            let result = ParsedBatch::parse(bad.as_bytes(), &h, &plain);
            assert!(matches!(result, Err(ApiError::BadRequest(_))), "{bad}");
        }
    }

    #[test]
    fn refused_events_are_each_named_and_too_many_events_is_413() {
        let h = HeaderMap::new();
        let refuse = ["gone".to_owned()];
        let policy = EventPolicy {
            max_events: Some(3),
            refuse_sources: &refuse,
            name_rejected: true,
        };
        let body =
            r#"{"events":[{"id":"a","source":"ok"},{"id":"b","source":"gone"},{"kind":"x"}]}"#;
        match ParsedBatch::parse(body.as_bytes(), &h, &policy) {
            Err(ApiError::EventsRejected(named)) => {
                let indices: Vec<usize> = named.iter().map(|(i, _)| *i).collect();
                assert_eq!(indices, [1, 2]);
                assert!(named[0].1.contains("\"gone\" is refused"), "{named:?}");
            }
            _ => panic!("expected the two bad events named"),
        }
        let four = r#"{"events":[{"id":"a"},{"id":"b"},{"id":"c"},{"id":"d"}]}"#;
        assert!(matches!(
            ParsedBatch::parse(four.as_bytes(), &h, &policy),
            Err(ApiError::TooManyEvents {
                events: 4,
                limit: 3
            })
        ));
    }

    #[test]
    fn events_keep_their_text_and_batch_id_falls_back_to_the_header() {
        let mut h = HeaderMap::new();
        h.insert(IDEMPOTENCY_KEY, "hdr-1".parse().expect("header value"));
        let body = r#"{"host":{"id":"h1","version":"1"},"events":[{"id":"a","v":1.50}]}"#;
        let batch =
            ParsedBatch::parse(body.as_bytes(), &h, &EventPolicy::default()).expect("valid");
        assert_eq!(batch.meta.batch_id.as_deref(), Some("hdr-1"));
        assert_eq!(batch.meta.host_id.as_deref(), Some("h1"));
        let events = batch.events();
        assert_eq!(events[0].id, "a");
        assert_eq!(events[0].json, r#"{"id":"a","v":1.50}"#);
    }

    #[test]
    fn ids_with_escapes_are_unescaped_and_plain_ids_borrow() {
        let h = HeaderMap::new();
        let body = r#"{"events":[{"id":"a\"b\u0041"},{"id":"plain"}]}"#;
        let batch =
            ParsedBatch::parse(body.as_bytes(), &h, &EventPolicy::default()).expect("valid");
        let events = batch.events();
        assert_eq!(events[0].id, "a\"bA");
        assert_eq!(events[0].json, r#"{"id":"a\"b\u0041"}"#);
        assert_eq!(events[1].id, "plain");
        assert!(matches!(batch.events[1].0, Cow::Borrowed(_)));
    }
}
