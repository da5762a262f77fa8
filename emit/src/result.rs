//! The result the host gives for each event (one line of the request).

use serde::Deserialize;

/// What became of one event, as the host answered after its commit.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum EventResult {
    /// Stored durably in the host's buffer, under this id (32 hex digits,
    /// the id the receiving end sees).
    Accepted {
        /// The id the host assigned.
        id: String,
    },
    /// A validator refused it; it is in the host's dead-letter table.
    Rejected {
        /// The validator's reason.
        reason: String,
    },
    /// Dropped on purpose: by a privacy policy (`by = "privacy"`) or by a
    /// full buffer under `when_full = "drop_newest"` (`by = "buffer"`).
    Dropped {
        /// `privacy` or `buffer`.
        by: String,
    },
    /// A sampler left it out.
    SampledOut,
    /// The host's decoder could not read it (the decoder's message); it is
    /// in the dead-letter table.
    DecodeError {
        /// The decoder's message.
        message: String,
    },
    /// The decoder turned the line into no event (not an error).
    Empty,
    /// The decoder turned the line into several events, each with its own
    /// result (at most 100 listed; `more` counts the rest).
    Several {
        /// Each event's result, in decoder order.
        events: Vec<EventResult>,
        /// Events not listed.
        more: usize,
    },
}

impl EventResult {
    /// The id, if the event was accepted.
    pub fn accepted_id(&self) -> Option<&str> {
        match self {
            EventResult::Accepted { id } => Some(id),
            _ => None,
        }
    }
}

/// One entry of the answer's `lines`.
#[derive(Debug, Deserialize)]
pub(crate) struct LineEntry {
    /// The line's number in the request, from 1.
    pub line: usize,
    /// Its result.
    #[serde(flatten)]
    pub result: EventResult,
}

/// The 200 answer to a request with `?results=lines`.
#[derive(Debug, Deserialize)]
pub(crate) struct Answer {
    pub lines: Vec<LineEntry>,
}

/// The body of a refusal (`{"error","message"}`).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct Refusal {
    #[serde(default)]
    pub error: String,
    #[serde(default)]
    pub message: String,
}

/// The results of `n` events from an answer body, in order: each line
/// `1..=n` exactly once.
pub(crate) fn per_event(body: &[u8], n: usize) -> Result<Vec<EventResult>, String> {
    let answer: Answer = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let mut out: Vec<Option<EventResult>> = vec![None; n];
    for entry in answer.lines {
        let slot = entry
            .line
            .checked_sub(1)
            .and_then(|i| out.get_mut(i))
            .ok_or_else(|| format!("a result for line {} of {n}", entry.line))?;
        if slot.replace(entry.result).is_some() {
            return Err(format!("two results for line {}", entry.line));
        }
    }
    out.into_iter()
        .enumerate()
        .map(|(i, r)| r.ok_or_else(|| format!("no result for line {}", i + 1)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_map_to_events_in_order() {
        let body = br#"{"accepted":1,"lines":[
            {"line":2,"result":"rejected","reason":"too cold"},
            {"line":1,"result":"accepted","id":"ab"},
            {"line":3,"result":"several","events":[{"result":"sampled_out"},{"result":"dropped","by":"privacy"}],"more":0}]}"#;
        let r = per_event(body, 3).unwrap();
        assert_eq!(r[0].accepted_id(), Some("ab"));
        assert_eq!(
            r[1],
            EventResult::Rejected {
                reason: "too cold".into()
            }
        );
        assert!(matches!(&r[2], EventResult::Several { events, more: 0 } if events.len() == 2));
        assert!(per_event(body, 4).unwrap_err().contains("line 4"));
        assert!(per_event(body, 2).unwrap_err().contains("line 3"));
    }
}
