//! Reading a batch body back into events, for sinks that deliver events
//! one by one (brokers, collectors) rather than the envelope as a whole.
//!
//! The [`Sink`](crate::Sink) trait hands every sink the same JSON envelope
//! (see [`encode_batch_raw`](crate::encode_batch_raw)); parsing it here, with
//! each event kept as borrowed raw JSON, keeps the trait unchanged and costs
//! one pass over the body. A body that does not parse is the content's
//! fault, so sinks answer it with [`Attempt::Rejected`](crate::Attempt).

use serde::Deserialize;
use serde_json::value::RawValue;

/// A batch as the host encoded it, events still as raw JSON.
#[derive(Debug, Deserialize)]
pub(crate) struct Envelope<'a> {
    /// Who sent it.
    #[serde(borrow)]
    pub host: HostInfo<'a>,
    /// Each event exactly as the host stored it.
    #[serde(borrow)]
    pub events: Vec<&'a RawValue>,
}

/// The sending host, for topic templates and resource attributes.
#[derive(Debug, Deserialize)]
pub(crate) struct HostInfo<'a> {
    /// The host's configured id.
    #[serde(borrow)]
    pub id: std::borrow::Cow<'a, str>,
    /// The host's version.
    #[serde(borrow)]
    pub version: std::borrow::Cow<'a, str>,
}

/// The fields of one event that sinks route and map on; the rest (body,
/// attributes, provenance) travels as the raw JSON.
#[derive(Debug, Deserialize)]
pub(crate) struct EventHead<'a> {
    /// 32 hex digits, unique per event: the dedupe key.
    #[serde(borrow)]
    pub id: std::borrow::Cow<'a, str>,
    /// Nanoseconds since the Unix epoch.
    #[serde(default)]
    pub time_ns: i64,
    /// The device or input the event came from.
    #[serde(borrow, default)]
    pub source: std::borrow::Cow<'a, str>,
    /// Dotted kind, e.g. `temp.max`; lifecycle events are `halyard.<kind>`.
    #[serde(borrow, default)]
    pub kind: std::borrow::Cow<'a, str>,
}

/// Why a body could not be read as a batch.
pub(crate) fn parse(body: &[u8]) -> Result<Envelope<'_>, String> {
    serde_json::from_slice(body).map_err(|e| format!("batch body is not a Halyard envelope: {e}"))
}

/// The routing fields of one event.
pub(crate) fn head<'a>(event: &'a RawValue) -> Result<EventHead<'a>, String> {
    serde_json::from_str(event.get()).map_err(|e| format!("event is not a Halyard event: {e}"))
}

/// Content the sink cannot read: the host bisects and dead-letters it.
pub(crate) fn rejected(reason: String) -> crate::Attempt {
    crate::Attempt::Rejected {
        reason,
        events: Vec::new(),
    }
}

/// The kind prefix of lifecycle events shipped through the pipeline
/// (`[lifecycle] into_pipeline`): the host's `halyard.<kind>`.
pub(crate) const LIFECYCLE_PREFIX: &str = "halyard.";

/// Nanoseconds since the epoch as RFC 3339 UTC with milliseconds, the `ts`
/// format of the event-bus wire shape.
pub(crate) fn rfc3339_millis(time_ns: i64) -> String {
    rfc3339_from_unix_ms(time_ns.div_euclid(1_000_000))
}

/// Unix milliseconds as RFC 3339 UTC with milliseconds
/// (`2026-11-30T18:00:00.123Z`): the one formatter the event-bus wire shape
/// and the host's lifecycle events share, so both write the same text.
pub fn rfc3339_from_unix_ms(millis: i64) -> String {
    let secs = millis.div_euclid(1000);
    let ms = millis.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Howard Hinnant's days-to-civil: proleptic Gregorian date of a day count
/// since 1970-01-01, without pulling a date crate in for one format.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_encoded_envelope() {
        let body = crate::encode_batch(
            "b1",
            "edge \"7\"",
            "0.1.0",
            &[
                serde_json::json!({"id": "00ff", "time_ns": 5, "source": "s", "kind": "k", "value": 1.5}),
            ],
        );
        let env = parse(&body).expect("parses");
        assert_eq!(env.host.id, "edge \"7\"");
        assert_eq!(env.events.len(), 1);
        let head = head(env.events[0]).expect("event");
        assert_eq!((&*head.id, head.time_ns, &*head.kind), ("00ff", 5, "k"));
        assert!(parse(b"not json").is_err());
    }

    #[test]
    fn formats_timestamps() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339_millis(1_795_428_000_123_456_789),
            "2026-11-23T10:00:00.123Z"
        );
        assert_eq!(rfc3339_millis(-1_000_000), "1969-12-31T23:59:59.999Z");
        assert_eq!(
            rfc3339_millis(951_782_400_000_000_000),
            "2000-02-29T00:00:00.000Z"
        );
    }
}
