//! lying-answer: a privacy policy (contract 0.4.0) that implements the
//! `privacy` world directly, bypassing the SDK's answer writer, so its
//! answer can break the layout the way a guest in another language could.
//!
//! Each event's string attribute `lie` says what to answer for it:
//! - absent: keep;
//! - `remove:N`: a patch removing attribute `N` (past the event's
//!   attributes: the host refuses that event alone);
//! - `body:N`: a patch setting an `N`-byte body (over the host's body cap:
//!   refused for that event alone);
//! - `mask`: a patch setting `operator` to `masked` (sound).
//!
//! A `lie` of `answer:MODE` on any event breaks the whole answer instead,
//! which the host must refuse as a broken call, applying nothing:
//! `short` (one action fewer than events), `garbage` (not an answer),
//! `version` (layout version 9), `string` (an edit's string reference past
//! the string area), `huge` (edits whose strings add up past the output cap
//! while the buffer stays small).

#![warn(missing_docs)]

use halyard_flat::{ACTION_LEN, ANSWER_HEADER_LEN, AnswerWriter, Batch, EDIT_LEN, EditRef, Value};
use halyard_sdk::bindings::privacy::Guest;
use halyard_sdk::{InitError, PluginInfo};

/// The world's implementation (no state).
pub struct LyingAnswer;

impl Guest for LyingAnswer {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "lying-answer".into(),
            version: "0.1.0".into(),
        }
    }

    fn init() -> Result<(), InitError> {
        Ok(())
    }

    fn redact(events: Vec<u8>) -> Vec<u8> {
        answer(&events)
    }
}

/// The answer for one batch (see the crate docs).
pub fn answer(events: &[u8]) -> Vec<u8> {
    let Ok(batch) = Batch::parse(events) else {
        return b"not a batch".to_vec();
    };
    let lies: Vec<Option<&str>> = batch
        .iter()
        .map(|e| {
            e.attrs().find_map(|(k, v)| match (k, v) {
                ("lie", Value::Str(s)) => Some(s),
                _ => None,
            })
        })
        .collect();
    let whole = lies
        .iter()
        .flatten()
        .find_map(|lie| lie.strip_prefix("answer:"));
    let mut w = AnswerWriter::new();
    let big = "x".repeat(1 << 20);
    for lie in &lies {
        let written = match lie.and_then(|l| l.split_once(':')) {
            Some(("remove", n)) => w.patch([EditRef::Remove(n.parse().unwrap_or(u32::MAX))]),
            Some(("body", n)) => {
                let body = format!("\"{}\"", "b".repeat(n.parse().unwrap_or(0)));
                w.patch([EditRef::Body(Some(&body))])
            }
            Some(("answer", "huge")) => {
                // One 1 MiB string, then 19 more sets whose references
                // are pointed at it below: 20 MiB referenced.
                let first = EditRef::Set("operator", Value::Str(&big));
                let rest = (0..19).map(|_| EditRef::Set("operator", Value::Str("y")));
                w.patch(std::iter::once(first).chain(rest))
            }
            _ if matches!(lie, Some("mask" | "answer:string")) => {
                w.patch([EditRef::Set("operator", Value::Str("masked"))])
            }
            _ => {
                w.keep();
                Ok(())
            }
        };
        written.expect("a small answer");
    }
    if whole == Some("short") {
        let mut fewer = AnswerWriter::new();
        for _ in 1..lies.len() {
            fewer.keep();
        }
        return fewer.finish();
    }
    let mut out = w.finish();
    match whole {
        Some("garbage") => out = vec![0xab; 37],
        Some("huge") => {
            let edits_at = ANSWER_HEADER_LEN + ACTION_LEN * lies.len();
            let mut value = [0u8; 8];
            value.copy_from_slice(&out[edits_at + 16..edits_at + 24]);
            for j in 1..20 {
                let at = edits_at + j * EDIT_LEN + 16;
                out[at..at + 8].copy_from_slice(&value);
            }
        }
        Some("version") => out[0] = 9,
        Some("string") => {
            // The first edit record's key reference (bytes 8..16): offset
            // past the string area.
            let at = ANSWER_HEADER_LEN + ACTION_LEN * lies.len() + 8;
            if out.len() >= at + 4
                && out.len() >= ANSWER_HEADER_LEN + ACTION_LEN * lies.len() + EDIT_LEN
            {
                out[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
            }
        }
        _ => {}
    }
    out
}

#[cfg(target_arch = "wasm32")]
halyard_sdk::bindings::privacy::export_privacy_world!(
    LyingAnswer with_types_in halyard_sdk::bindings::privacy
);
