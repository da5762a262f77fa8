//! Per-line results: what a client that asked (`?results=lines`) is told
//! about each line of its request, after the commit.
//!
//! ```json
//! {"accepted":1,"rejected":1,"decode_errors":1,"dropped":2,
//!  "lines":[{"line":1,"result":"accepted","id":"0191…"},
//!           {"line":2,"result":"rejected","reason":"range-validator: …"},
//!           {"line":4,"result":"dropped","by":"privacy"},
//!           {"line":5,"result":"sampled_out"},
//!           {"line":6,"result":"decode_error","message":"web: decode failed: …"}]}
//! ```
//!
//! `line` is the line's number in the (decompressed) body, counting from 1
//! and counting blank lines, which are skipped and get no entry. A line
//! that decodes into one event gets that event's result; into none,
//! `"empty"`; into several, `"several"` with an `events` list of per-event
//! results (each as above without `line`).
//!
//! Bounds, so a request cannot make a huge answer: at most
//! [`MAX_RESULT_LINES`] lines per request asking for results (more: 413
//! before anything runs); reasons and messages cut to [`MAX_TEXT_BYTES`];
//! at most [`MAX_EVENTS_PER_LINE`] events listed for one line, the rest
//! counted in `more`. The answer is then at most a few MiB.

use serde::Serialize;

use crate::event::id_to_string;
use crate::pipeline::{DropCause, EventOutcome, FrameOutcome};

/// The most lines a request asking for per-line results may carry.
pub const MAX_RESULT_LINES: usize = 10_000;
/// The longest reason or message in a result, in bytes (cut on a char
/// boundary, with `…` appended).
pub const MAX_TEXT_BYTES: usize = 512;
/// The most events listed for one line that decoded into several.
pub const MAX_EVENTS_PER_LINE: usize = 100;

/// The query parameter and value that ask for per-line results.
pub const QUERY: (&str, &str) = ("results", "lines");

/// Whether a request's query asks for per-line results
/// (`results=lines`, among any other parameters).
pub fn asked(query: Option<&str>) -> bool {
    query.is_some_and(|q| q.split('&').any(|pair| pair.split_once('=') == Some(QUERY)))
}

/// One line's result.
#[derive(Debug, Serialize, PartialEq)]
pub struct LineResult {
    /// The line's number in the body, from 1.
    pub line: u32,
    /// What happened to it.
    #[serde(flatten)]
    pub result: Outcome,
}

/// What happened to a line, or to one event of it.
#[derive(Debug, Serialize, PartialEq)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    /// Committed to the buffer with this id (32 hex digits).
    Accepted {
        /// The event's id, as the receiver sees it.
        id: String,
    },
    /// A validator refused it.
    Rejected {
        /// The validator's reason.
        reason: String,
    },
    /// Dropped by a privacy policy or the buffer's `drop_newest`.
    Dropped {
        /// `privacy` or `buffer`.
        by: &'static str,
    },
    /// A sampler left it out.
    SampledOut,
    /// The decoder could not decode the line.
    DecodeError {
        /// The decoder's message.
        message: String,
    },
    /// The line decoded into no event.
    Empty,
    /// The line decoded into several events.
    Several {
        /// Each event's result, in decoder order (at most
        /// [`MAX_EVENTS_PER_LINE`]).
        events: Vec<Outcome>,
        /// Events of the line not listed.
        more: usize,
    },
}

/// Each frame's outcome as a line result; `lines[i]` is frame `i`'s line.
pub fn render(outcomes: Vec<FrameOutcome>, lines: &[u32]) -> Vec<LineResult> {
    outcomes
        .into_iter()
        .zip(lines)
        .map(|(outcome, line)| LineResult {
            line: *line,
            result: match outcome {
                FrameOutcome::DecodeError(message) => Outcome::DecodeError {
                    message: cut(message),
                },
                FrameOutcome::Decoded(events) => match events.len() {
                    0 => Outcome::Empty,
                    1 => events
                        .into_iter()
                        .map(event)
                        .next()
                        .unwrap_or(Outcome::Empty),
                    n => Outcome::Several {
                        events: events
                            .into_iter()
                            .take(MAX_EVENTS_PER_LINE)
                            .map(event)
                            .collect(),
                        more: n.saturating_sub(MAX_EVENTS_PER_LINE),
                    },
                },
            },
        })
        .collect()
}

fn event(outcome: EventOutcome) -> Outcome {
    match outcome {
        EventOutcome::Accepted(id) => Outcome::Accepted {
            id: id_to_string(&id),
        },
        EventOutcome::Rejected(reason) => Outcome::Rejected {
            reason: cut(reason),
        },
        EventOutcome::Dropped(DropCause::Privacy) => Outcome::Dropped { by: "privacy" },
        EventOutcome::Dropped(DropCause::Buffer) => Outcome::Dropped { by: "buffer" },
        EventOutcome::SampledOut => Outcome::SampledOut,
    }
}

/// `text` cut to [`MAX_TEXT_BYTES`] on a char boundary.
fn cut(mut text: String) -> String {
    if text.len() > MAX_TEXT_BYTES {
        let mut end = MAX_TEXT_BYTES;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::EventId;

    #[test]
    fn only_results_equals_lines_asks() {
        assert!(asked(Some("results=lines")));
        assert!(asked(Some("a=1&results=lines")));
        assert!(!asked(Some("results=line")));
        assert!(!asked(Some("xresults=lines")));
        assert!(!asked(None));
    }

    #[test]
    fn lines_render_as_documented() {
        let id = EventId { hi: 1, lo: 2 };
        let many = vec![EventOutcome::SampledOut; MAX_EVENTS_PER_LINE + 3];
        let out = render(
            vec![
                FrameOutcome::Decoded(vec![EventOutcome::Accepted(id)]),
                FrameOutcome::DecodeError("é".repeat(400)),
                FrameOutcome::Decoded(vec![]),
                FrameOutcome::Decoded(many),
                FrameOutcome::Decoded(vec![EventOutcome::Dropped(DropCause::Privacy)]),
            ],
            &[1, 3, 4, 5, 9],
        );
        let json = serde_json::to_value(&out).unwrap();
        assert_eq!(
            json[0],
            serde_json::json!({"line":1,"result":"accepted","id":"00000000000000010000000000000002"})
        );
        let message = json[1]["message"].as_str().unwrap();
        assert!(message.len() <= MAX_TEXT_BYTES + '…'.len_utf8());
        assert!(message.ends_with('…'));
        assert_eq!(json[2], serde_json::json!({"line":4,"result":"empty"}));
        assert_eq!(json[3]["result"], "several");
        assert_eq!(
            json[3]["events"].as_array().unwrap().len(),
            MAX_EVENTS_PER_LINE
        );
        assert_eq!(json[3]["more"], 3);
        assert_eq!(
            json[3]["events"][0],
            serde_json::json!({"result":"sampled_out"})
        );
        assert_eq!(
            json[4],
            serde_json::json!({"line":9,"result":"dropped","by":"privacy"})
        );
    }
}
