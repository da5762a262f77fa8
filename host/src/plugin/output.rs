//! Checks on what a guest hands back. Guest output is untrusted input: every
//! string, list and body is bounded by [`Limits`] before the host keeps it.
//!
//! Two kinds of broken output are kept apart, because only one of them says
//! the plugin is broken:
//! - **a refusal**: the output for *one* input breaks a cap (an event with a
//!   100 KiB source or 300 attributes, a frame decoded into too many events,
//!   a rewrite over the body cap). Hostile *input* can make an honest guest
//!   produce that, so the host refuses that frame or event alone (the
//!   pipeline dead-letters it with the reason, or for privacy drops and
//!   counts it), keeps the rest of the call, and counts no trap: a client
//!   must not be able to quarantine a plugin by sending bad lines;
//! - **a broken call**: a wrong number of results for the batch (and, in
//!   [`super::instance`], a trap or an output too large to lift). Nothing of
//!   the call can be trusted; it is a trap and counts toward quarantine.
//!
//! A reason string over the string cap (a reject reason, a decode error) is
//! neither: the verdict stands, and the host keeps its first
//! `max_string_bytes` bytes with a note.
//!
//! The checks allocate nothing while output is within the caps: the hot path
//! pays a few comparisons per event.

use super::bindings::{Action, AttrValue, Event, Verdict};
use super::limits::Limits;

/// Why one frame gave no events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The decoder failed the frame itself (its own reason).
    Decoder(String),
    /// The decoder's events for the frame broke a host cap; the frame is
    /// refused, the rest of the call kept, and no trap counted.
    Refused(String),
}

impl FrameError {
    /// The reason as one string, as the WIT's `result<list<event>, string>`
    /// carries it: a refusal says so.
    pub fn into_reason(self) -> String {
        match self {
            FrameError::Decoder(reason) => reason,
            FrameError::Refused(reason) => format!("output refused by the host: {reason}"),
        }
    }
}

/// What a source poll gave, split by the host's checks.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Polled {
    /// The events within every cap, in the order the source gave them.
    pub events: Vec<Event>,
    /// The events the host refused, each with the reason; the pipeline
    /// dead-letters them.
    pub refused: Vec<(Event, String)>,
}

/// What a privacy call gave, with the rewrites the host refused.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Redacted {
    /// One action per event. A refused rewrite is already a
    /// [`Action::Drop`]: privacy fails closed, so an event whose redacted
    /// form breaks a cap is dropped, never shipped unredacted.
    pub actions: Vec<Action>,
    /// The positions of the refused rewrites, with the reason.
    pub refused: Vec<(usize, String)>,
}

/// Checks one event a guest produced or rewrote.
pub(crate) fn check_event(event: &Event, limits: &Limits) -> Result<(), String> {
    check_str(&event.source, "source", limits)?;
    check_str(&event.kind, "kind", limits)?;
    if let Some(unit) = &event.unit {
        check_str(unit, "unit", limits)?;
    }
    if event.time_ns < 0 {
        return Err(format!("event time {} ns is before 1970", event.time_ns));
    }
    if event.attributes.len() > limits.max_attributes {
        return Err(format!(
            "event has {} attributes (limit {})",
            event.attributes.len(),
            limits.max_attributes
        ));
    }
    for attr in &event.attributes {
        check_str(&attr.key, "attribute key", limits)?;
        if let AttrValue::Str(v) = &attr.value {
            check_str(v, "attribute value", limits)?;
        }
    }
    if let Some(body) = &event.body {
        if body.len() > limits.max_body_bytes {
            return Err(format!(
                "body of {} bytes (limit {})",
                body.len(),
                limits.max_body_bytes
            ));
        }
        if serde_json::from_str::<serde::de::IgnoredAny>(body).is_err() {
            return Err("body is not valid JSON".to_string());
        }
    }
    Ok(())
}

/// Checks the events a decoder produced for one frame: their number and
/// each event; the reason names the first offending event.
pub(crate) fn check_events(events: &[Event], limits: &Limits) -> Result<(), String> {
    if events.len() > limits.max_events_out {
        return Err(format!(
            "{} events in one result (limit {})",
            events.len(),
            limits.max_events_out
        ));
    }
    events
        .iter()
        .enumerate()
        .try_for_each(|(i, e)| check_event(e, limits).map_err(|m| format!("event {i}: {m}")))
}

/// Splits a source's poll into the events within the caps and those
/// refused: any event over a cap, and every event past the poll's `max` (or
/// past `max_events_out`).
pub(crate) fn split_polled(events: Vec<Event>, max: u32, limits: &Limits) -> Polled {
    let cap = limits
        .max_events_out
        .min(usize::try_from(max).unwrap_or(usize::MAX));
    let fits = |i: usize, e: &Event| i < cap && check_event(e, limits).is_ok();
    if events.iter().enumerate().all(|(i, e)| fits(i, e)) {
        return Polled {
            events,
            refused: Vec::new(),
        };
    }
    let mut polled = Polled::default();
    for (i, e) in events.into_iter().enumerate() {
        let check = if i < cap {
            check_event(&e, limits)
        } else {
            Err(format!("event {i} of a poll of at most {cap}"))
        };
        match check {
            Ok(()) => polled.events.push(e),
            Err(reason) => polled.refused.push((e, reason)),
        }
    }
    polled
}

/// Checks that a stage returned exactly one result per input.
pub(crate) fn check_count(what: &str, got: usize, expected: usize) -> Result<(), String> {
    if got == expected {
        Ok(())
    } else {
        Err(format!("{got} {what} for {expected} inputs"))
    }
}

/// Cuts over-long reject reasons to the string cap; the verdicts stand.
pub(crate) fn fit_verdicts(verdicts: &mut [Verdict], limits: &Limits) {
    for verdict in verdicts {
        if let Verdict::Reject(reason) = verdict {
            fit_str(reason, "reject reason", limits);
        }
    }
}

/// Turns every rewrite that breaks a cap into a drop (privacy fails closed)
/// and returns their positions with the reason.
pub(crate) fn refuse_rewrites(actions: &mut [Action], limits: &Limits) -> Vec<(usize, String)> {
    let mut refused = Vec::new();
    for (i, action) in actions.iter_mut().enumerate() {
        if let Action::Rewrite(event) = action
            && let Err(reason) = check_event(event, limits)
        {
            *action = Action::Drop;
            refused.push((i, format!("rewrite {reason}")));
        }
    }
    refused
}

/// Checks one string against the string cap.
pub(crate) fn check_str(s: &str, field: &str, limits: &Limits) -> Result<(), String> {
    if s.len() > limits.max_string_bytes {
        Err(format!(
            "{field} of {} bytes (limit {})",
            s.len(),
            limits.max_string_bytes
        ))
    } else {
        Ok(())
    }
}

/// Cuts a reason string over the string cap to its first
/// `max_string_bytes` bytes (on a character boundary) and says so.
pub(crate) fn fit_str(s: &mut String, field: &str, limits: &Limits) {
    let len = s.len();
    if len > limits.max_string_bytes {
        s.truncate(s.floor_char_boundary(limits.max_string_bytes));
        s.push_str(&format!(
            "… ({field} of {len} bytes cut to the {}-byte limit)",
            limits.max_string_bytes
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugin::{Attribute, EventId};

    fn event(source: &str) -> Event {
        Event {
            id: EventId { hi: 0, lo: 0 },
            time_ns: 1,
            source: source.into(),
            kind: "temp".into(),
            value: Some(1.0),
            unit: None,
            attributes: Vec::new(),
            body: None,
        }
    }

    fn small() -> Limits {
        Limits {
            max_string_bytes: 8,
            max_attributes: 2,
            max_events_out: 3,
            ..Limits::default()
        }
    }

    #[test]
    fn events_name_the_first_offender() {
        let limits = small();
        let mut many = event("d");
        many.attributes = (0..3)
            .map(|i| Attribute {
                key: format!("k{i}"),
                value: AttrValue::Int(i),
            })
            .collect();
        assert_eq!(check_events(&[event("d"), event("d")], &limits), Ok(()));
        assert_eq!(
            check_events(&[event("d"), event("123456789")], &limits),
            Err("event 1: source of 9 bytes (limit 8)".into())
        );
        assert_eq!(
            check_events(&[many], &limits),
            Err("event 0: event has 3 attributes (limit 2)".into())
        );
        assert_eq!(
            check_events(&vec![event("d"); 4], &limits),
            Err("4 events in one result (limit 3)".into())
        );
    }

    #[test]
    fn a_poll_keeps_the_good_events_in_order() {
        let limits = small();
        let all_good = split_polled(vec![event("a"), event("b")], 10, &limits);
        assert_eq!(all_good.events.len(), 2);
        assert!(all_good.refused.is_empty());

        let mut early = event("c");
        early.time_ns = -1;
        let polled = split_polled(
            vec![
                event("a"),
                event("123456789"),
                early,
                event("d"),
                event("e"),
            ],
            4,
            &limits,
        );
        let sources: Vec<&str> = polled.events.iter().map(|e| e.source.as_str()).collect();
        assert_eq!(sources, ["a"]);
        let reasons: Vec<&str> = polled.refused.iter().map(|(_, r)| r.as_str()).collect();
        assert_eq!(
            reasons,
            [
                "source of 9 bytes (limit 8)",
                "event time -1 ns is before 1970",
                "event 3 of a poll of at most 3",
                "event 4 of a poll of at most 3",
            ]
        );
    }

    #[test]
    fn bad_rewrites_become_drops() {
        let limits = small();
        let mut actions = vec![
            Action::Keep,
            Action::Rewrite(event("123456789")),
            Action::Rewrite(event("ok")),
            Action::Drop,
        ];
        let refused = refuse_rewrites(&mut actions, &limits);
        assert_eq!(
            refused,
            vec![(1, "rewrite source of 9 bytes (limit 8)".to_string())]
        );
        assert_eq!(actions[1], Action::Drop);
        assert_eq!(actions[2], Action::Rewrite(event("ok")));
    }

    #[test]
    fn long_reasons_are_cut_on_a_character_boundary() {
        let limits = small();
        let mut verdicts = vec![
            Verdict::Reject("short".into()),
            Verdict::Reject("ééééé".into()),
            Verdict::Accept,
        ];
        fit_verdicts(&mut verdicts, &limits);
        assert_eq!(verdicts[0], Verdict::Reject("short".into()));
        assert_eq!(
            verdicts[1],
            Verdict::Reject("éééé… (reject reason of 10 bytes cut to the 8-byte limit)".into())
        );
    }
}
