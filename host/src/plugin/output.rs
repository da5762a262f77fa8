//! Checks on what a guest hands back. Guest output is untrusted input: every
//! string, list and body is bounded by [`Limits`] before the host keeps it.

use super::bindings::{Action, AttrValue, Event, Verdict};
use super::limits::Limits;

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

/// Checks a list of events a source or decoder produced.
pub(crate) fn check_events(events: &[Event], limits: &Limits) -> Result<(), String> {
    if events.len() > limits.max_events_out {
        return Err(format!(
            "{} events in one result (limit {})",
            events.len(),
            limits.max_events_out
        ));
    }
    events.iter().try_for_each(|e| check_event(e, limits))
}

/// Checks that a stage returned exactly one result per input.
pub(crate) fn check_count(what: &str, got: usize, expected: usize) -> Result<(), String> {
    if got == expected {
        Ok(())
    } else {
        Err(format!("{got} {what} for {expected} inputs"))
    }
}

/// Checks a validator's verdicts.
pub(crate) fn check_verdicts(verdicts: &[Verdict], limits: &Limits) -> Result<(), String> {
    verdicts.iter().try_for_each(|v| match v {
        Verdict::Accept => Ok(()),
        Verdict::Reject(reason) => check_str(reason, "reject reason", limits),
    })
}

/// Checks a privacy policy's actions.
pub(crate) fn check_actions(actions: &[Action], limits: &Limits) -> Result<(), String> {
    actions.iter().try_for_each(|a| match a {
        Action::Rewrite(event) => check_event(event, limits),
        Action::Keep | Action::Drop => Ok(()),
    })
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
