//! The expectations file of `halyard plugin test`: one JSON case per line,
//! and how an actual outcome is matched against an expected one.
//!
//! A case is an input (events, frames or polls, plus the plugin's config)
//! and the outcome expected for each item, in order:
//!
//! ```json
//! {"name": "too hot", "config": {"max": "100"},
//!  "events": [{"source": "s1", "kind": "temp", "value": 120}],
//!  "expect": [{"verdict": "reject", "reason": "value 120 is above *"}]}
//! ```
//!
//! Matching rules, so that a case states only what it cares about:
//! - a string under `reason`, `error` or `init_error` is a pattern: `*`
//!   matches any run of characters, everything else matches itself;
//! - an expected object matches an actual object that has at least its keys,
//!   each matching (so `{"attributes": {"user": "h:*"}}` checks one field
//!   of a rewritten event); arrays match item by item and must be as long;
//!   any other string or value must be equal.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value};

/// One case, as read from a line of the file.
#[derive(Debug, Clone)]
pub struct Case {
    /// The case's name, or `line N` if it has none.
    pub name: String,
    /// The line it was read from (1-based), for messages.
    pub line: usize,
    /// The plugin's config for this case.
    pub config: BTreeMap<String, String>,
    /// The input: what the stage is called with.
    pub input: Input,
    /// `init` must refuse the config with a message matching this pattern.
    pub init_error: Option<String>,
    /// The outcome expected per input item (per poll for sources).
    pub expect: Vec<Value>,
}

/// What a case hands the plugin.
#[derive(Debug, Clone)]
pub enum Input {
    /// Events, for validators, detectors, privacy policies and samplers
    /// (a detector gets them one batch each, in order).
    Events(Vec<Value>),
    /// Frames, for decoders.
    Frames(Vec<FrameCase>),
    /// Polls of a source, each for at most `max` events.
    Polls {
        /// How many polls.
        count: u32,
        /// The most events per poll.
        max: u32,
    },
    /// Nothing: the case only checks `init` (`init_error`).
    Nothing,
}

/// One frame of a case: `"text"` (its data), or `{"data": "text",
/// "origin": "mqtt:sensors/b3/temp", "content_type": "…"}`.
#[derive(Debug, Clone, Default)]
pub struct FrameCase {
    /// The frame's bytes, as text.
    pub data: String,
    /// Which input it came from (`test` when not given).
    pub origin: String,
    /// Its media type (empty when not given).
    pub content_type: String,
}

/// A case file that cannot be used; the message names the line and key.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct CaseError {
    /// The case file.
    pub file: String,
    /// The line at fault (1-based).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// Reads every case of `text` (the contents of `file`). Blank lines and
/// lines starting with `//` or `#` are skipped.
pub fn parse(file: &Path, text: &str) -> Result<Vec<Case>, CaseError> {
    let mut cases = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with("//") || trimmed.starts_with('#') {
            continue;
        }
        let err = |message: String| CaseError {
            file: file.display().to_string(),
            line,
            message,
        };
        let value: Value =
            serde_json::from_str(trimmed).map_err(|e| err(format!("not JSON: {e}")))?;
        cases.push(parse_case(value, line).map_err(err)?);
    }
    Ok(cases)
}

const KEYS: &[&str] = &[
    "name",
    "config",
    "events",
    "frames",
    "polls",
    "max",
    "expect",
    "init_error",
];

fn parse_case(value: Value, line: usize) -> Result<Case, String> {
    let Value::Object(obj) = value else {
        return Err("a case must be a JSON object".into());
    };
    if let Some(key) = obj.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(format!(
            "unknown key `{key}` (expected one of: {})",
            KEYS.join(", ")
        ));
    }
    let name = match obj.get("name") {
        None => format!("line {line}"),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err("`name` must be a string".into()),
    };
    let config = match obj.get("config") {
        None => BTreeMap::new(),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                Value::Number(_) | Value::Bool(_) => Ok((k.clone(), v.to_string())),
                _ => Err(format!("`config.{k}` must be a string, number or boolean")),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err("`config` must be an object of strings".into()),
    };
    let input = input(&obj)?;
    let init_error = match obj.get("init_error") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err("`init_error` must be a string pattern".into()),
    };
    let expect = match obj.get("expect") {
        None => Vec::new(),
        Some(Value::Array(items)) => items.clone(),
        Some(_) => return Err("`expect` must be an array, one outcome per input item".into()),
    };
    if init_error.is_some() && !expect.is_empty() {
        return Err("a case expects either `init_error` or `expect`, not both".into());
    }
    if init_error.is_none() {
        let items = match &input {
            Input::Events(e) => e.len(),
            Input::Frames(f) => f.len(),
            Input::Polls { count, .. } => *count as usize,
            Input::Nothing => return Err("a case needs `events`, `frames` or `polls`".into()),
        };
        if items != expect.len() {
            return Err(format!(
                "`expect` has {} outcomes for {items} input items",
                expect.len()
            ));
        }
    }
    Ok(Case {
        name,
        line,
        config,
        input,
        init_error,
        expect,
    })
}

fn input(obj: &Map<String, Value>) -> Result<Input, String> {
    let given: Vec<&str> = ["events", "frames", "polls"]
        .into_iter()
        .filter(|k| obj.contains_key(*k))
        .collect();
    if given.len() > 1 {
        return Err(format!("a case has one input, not {}", given.join(" and ")));
    }
    if let Some(v) = obj.get("events") {
        let Value::Array(events) = v else {
            return Err("`events` must be an array of event objects".into());
        };
        return Ok(Input::Events(events.clone()));
    }
    if let Some(v) = obj.get("frames") {
        let frames = v
            .as_array()
            .and_then(|a| a.iter().map(frame_case).collect::<Option<Vec<_>>>())
            .ok_or(
                "`frames` must be an array of strings (each frame's data) or of \
                 {\"data\", \"origin\", \"content_type\"} objects of strings",
            )?;
        return Ok(Input::Frames(frames));
    }
    if let Some(v) = obj.get("polls") {
        let count = v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| (1..=1000).contains(n))
            .ok_or("`polls` must be a number from 1 to 1000")?;
        let max = match obj.get("max") {
            None => 100,
            Some(m) => m
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .filter(|n| (1..=10_000).contains(n))
                .ok_or("`max` must be a number from 1 to 10000")?,
        };
        return Ok(Input::Polls { count, max });
    }
    Ok(Input::Nothing)
}

fn frame_case(v: &Value) -> Option<FrameCase> {
    if let Some(data) = v.as_str() {
        return Some(FrameCase {
            data: data.to_owned(),
            origin: "test".into(),
            content_type: String::new(),
        });
    }
    let obj = v.as_object()?;
    if obj
        .keys()
        .any(|k| !["data", "origin", "content_type"].contains(&k.as_str()))
    {
        return None;
    }
    let text = |k: &str, default: &str| match obj.get(k) {
        None => Some(default.to_owned()),
        Some(v) => v.as_str().map(str::to_owned),
    };
    Some(FrameCase {
        data: obj.get("data")?.as_str()?.to_owned(),
        origin: text("origin", "test")?,
        content_type: text("content_type", "")?,
    })
}

/// Keys whose string values are patterns rather than literals.
const PATTERN_KEYS: &[&str] = &["reason", "error", "init_error"];

/// Where `actual` differs from `expected`, one line per difference, each
/// naming the path (`[2].event.attributes.user`). Empty when it matches.
pub fn diff(expected: &Value, actual: &Value) -> Vec<String> {
    let mut out = Vec::new();
    diff_at("", None, expected, actual, &mut out);
    out
}

fn diff_at(path: &str, key: Option<&str>, expected: &Value, actual: &Value, out: &mut Vec<String>) {
    let at = if path.is_empty() { "outcome" } else { path };
    match (expected, actual) {
        (Value::Object(want), Value::Object(got)) => {
            for (k, w) in want {
                let sub = format!("{path}.{k}");
                match got.get(k) {
                    Some(g) => diff_at(&sub, Some(k), w, g, out),
                    None if w.is_null() => {}
                    None => out.push(format!("{sub}: expected {w}, missing")),
                }
            }
        }
        (Value::Array(want), Value::Array(got)) => {
            if want.len() != got.len() {
                out.push(format!(
                    "{at}: expected {} items, got {}: {actual}",
                    want.len(),
                    got.len()
                ));
                return;
            }
            for (i, (w, g)) in want.iter().zip(got).enumerate() {
                diff_at(&format!("{path}[{i}]"), None, w, g, out);
            }
        }
        (Value::String(w), Value::String(g)) if key.is_some_and(|k| PATTERN_KEYS.contains(&k)) => {
            if !matches_pattern(w, g) {
                out.push(format!("{at}: expected a match for {w:?}, got {g:?}"));
            }
        }
        (Value::Number(w), Value::Number(g)) if w.as_f64() == g.as_f64() => {}
        (w, g) if w == g => {}
        (w, g) => out.push(format!("{at}: expected {w}, got {g}")),
    }
}

/// `*` matches any run of characters (also none); everything else itself.
pub fn matches_pattern(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let [first, middle @ .., last] = parts.as_slice() else {
        return pattern == text;
    };
    if parts.len() == 1 {
        return pattern == text;
    }
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn patterns_match_runs_and_literals() {
        assert!(matches_pattern(
            "value * is above *",
            "value 120 is above 100"
        ));
        assert!(matches_pattern("exact", "exact"));
        assert!(!matches_pattern("exact", "exactly"));
        assert!(matches_pattern("*", ""));
        assert!(matches_pattern("a*b*c", "abc"));
        assert!(!matches_pattern("ab*ba", "aba"));
        assert!(!matches_pattern("missing *", "value 1"));
    }

    #[test]
    fn objects_match_on_the_keys_given() {
        let actual = json!({"action": "rewrite", "event": {"source": "s", "attributes": {"user": "h:ab", "site": "x"}}});
        assert!(
            diff(
                &json!({"action": "rewrite", "event": {"attributes": {"user": "h:ab"}}}),
                &actual
            )
            .is_empty()
        );
        let d = diff(&json!({"action": "keep"}), &actual);
        assert_eq!(d, vec![".action: expected \"keep\", got \"rewrite\""]);
        let d = diff(&json!({"event": {"attributes": {"user": "h:*"}}}), &actual);
        assert_eq!(d.len(), 1, "no pattern outside reason/error: {d:?}");
        let d = diff(&json!({"reason": "below *"}), &json!({"reason": "above 3"}));
        assert_eq!(d.len(), 1);
        assert!(diff(&json!({"value": 5}), &json!({"value": 5.0})).is_empty());
    }

    #[test]
    fn a_bad_case_names_its_line_and_key() {
        let text = "\n{\"events\": [{}], \"expect\": []}\n";
        let err = parse(Path::new("c.jsonl"), text).unwrap_err();
        assert_eq!(
            err.to_string(),
            "c.jsonl:2: `expect` has 0 outcomes for 1 input items"
        );
        let err = parse(Path::new("c.jsonl"), "{\"evnts\": []}").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("c.jsonl:1: unknown key `evnts`"),
            "{err}"
        );
        let err = parse(
            Path::new("c.jsonl"),
            "{\"config\": {\"a\": [1]}, \"polls\": 1, \"expect\": [{}]}",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "c.jsonl:1: `config.a` must be a string, number or boolean"
        );
        let cases = parse(
            Path::new("c.jsonl"),
            "# comment\n{\"name\": \"n\", \"config\": {\"x\": 1}, \"init_error\": \"*\"}",
        )
        .unwrap();
        assert_eq!(cases.len(), 1);
        assert_eq!(cases[0].config["x"], "1");
    }
}
