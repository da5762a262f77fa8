//! Building the request body the receiver expects.
//!
//! The transport itself treats bodies as opaque bytes; these helpers exist
//! so the host and the receiver's tests agree on one envelope:
//! `{"batch_id": …, "host": {"id": …, "version": …}, "events": [ … ]}`.

/// Encodes a batch from already-serialized events, copying each event's
/// bytes verbatim: the hot path, since the host stores events as JSON and
/// re-parsing every one per batch would dominate the cost.
///
/// Each item must be exactly one complete JSON value (as `serde_json`
/// writes it); it is not validated here. `batch_id`, `host_id` and
/// `host_version` are escaped as JSON strings.
pub fn encode_batch_raw<'a, I>(
    batch_id: &str,
    host_id: &str,
    host_version: &str,
    events: I,
) -> Vec<u8>
where
    I: IntoIterator<Item = &'a [u8]>,
    I::IntoIter: Clone,
{
    let events = events.into_iter();
    let payload: usize = events.clone().map(|e| e.len() + 1).sum();
    let mut out =
        Vec::with_capacity(payload + batch_id.len() + host_id.len() + host_version.len() + 64);
    out.extend_from_slice(b"{\"batch_id\":");
    push_json_str(&mut out, batch_id);
    out.extend_from_slice(b",\"host\":{\"id\":");
    push_json_str(&mut out, host_id);
    out.extend_from_slice(b",\"version\":");
    push_json_str(&mut out, host_version);
    out.extend_from_slice(b"},\"events\":[");
    for (i, event) in events.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(event);
    }
    out.extend_from_slice(b"]}");
    out
}

/// Encodes a batch from parsed events; convenient for tests and callers
/// that build events in memory.
pub fn encode_batch(
    batch_id: &str,
    host_id: &str,
    host_version: &str,
    events: &[serde_json::Value],
) -> Vec<u8> {
    let serialized: Vec<Vec<u8>> = events.iter().map(to_json).collect();
    encode_batch_raw(
        batch_id,
        host_id,
        host_version,
        serialized.iter().map(Vec::as_slice),
    )
}

fn to_json(value: &serde_json::Value) -> Vec<u8> {
    // A `Value` has string keys and finite numbers by construction, so
    // serializing it cannot fail.
    serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec())
}

fn push_json_str(out: &mut Vec<u8>, s: &str) {
    // Serializing a `&str` into a `Vec` cannot fail; fall back to an empty
    // string rather than corrupt the document if that ever changed.
    if serde_json::to_writer(&mut *out, s).is_err() {
        out.extend_from_slice(b"\"\"");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn envelope_round_trips() {
        let events = [
            json!({"name": "cpu", "value": 0.5}),
            json!({"name": "mem", "tags": {"a": "b"}}),
        ];
        let body = encode_batch("b-1", "dev\"7", "0.1.0", &events);
        let parsed: serde_json::Value = serde_json::from_slice(&body).expect("valid JSON");
        assert_eq!(
            parsed,
            json!({"batch_id": "b-1", "host": {"id": "dev\"7", "version": "0.1.0"}, "events": events})
        );
    }

    #[test]
    fn raw_events_are_copied_verbatim() {
        let raw: [&[u8]; 2] = [br#"{"x":1}"#, br#"{"y":"2"}"#];
        let body = encode_batch_raw("k", "h", "v", raw);
        assert_eq!(
            body,
            br#"{"batch_id":"k","host":{"id":"h","version":"v"},"events":[{"x":1},{"y":"2"}]}"#
        );
        let empty = encode_batch_raw("k", "h", "v", std::iter::empty());
        let parsed: serde_json::Value = serde_json::from_slice(&empty).expect("valid JSON");
        assert_eq!(parsed["events"], serde_json::json!([]));
    }
}
