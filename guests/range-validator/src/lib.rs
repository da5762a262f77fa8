//! range-validator: rejects events with missing fields, readings outside
//! configured bounds, or timestamps too far from now. See README.md for the
//! config keys and the exact reject reasons.

#![warn(missing_docs)]

use std::collections::HashMap;

use halyard_sdk::{Config, Event, Events, InitError, Validator, Verdict, clock};

const NS_PER_S: i128 = 1_000_000_000;

/// Inclusive bounds for one kind; `None` is unbounded.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Bounds {
    min: Option<f64>,
    max: Option<f64>,
}

/// A time limit: the configured seconds (for messages) and the same in ns.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Limit {
    seconds: f64,
    ns: i128,
}

/// The fields a verdict depends on, borrowed from an owned event or from
/// the host's batch.
struct Checked<'a> {
    source: &'a str,
    kind: &'a str,
    value: Option<f64>,
    time_ns: i64,
}

impl<'a> Checked<'a> {
    fn of(event: &'a Event) -> Self {
        Checked {
            source: &event.source,
            kind: &event.kind,
            value: event.value,
            time_ns: event.time_ns,
        }
    }
}

/// The validator's parsed config.
#[derive(Debug)]
pub struct RangeValidator {
    default: Bounds,
    per_kind: HashMap<String, Bounds>,
    require_value: bool,
    max_future: Option<Limit>,
    max_past: Option<Limit>,
}

impl Validator for RangeValidator {
    fn init(config: &Config) -> Result<Self, InitError> {
        Self::from_config(config)
    }

    fn validate(&mut self, event: &Event) -> Verdict {
        self.check(&Checked::of(event), clock::now_ns())
    }

    /// Reads the clock once per batch instead of once per event.
    fn validate_batch(&mut self, events: Vec<Event>) -> Vec<Verdict> {
        let now = clock::now_ns();
        events
            .iter()
            .map(|event| self.check(&Checked::of(event), now))
            .collect()
    }

    /// What the host calls: the batch read in place, no copies.
    fn validate_views(&mut self, events: &Events<'_>) -> Vec<Verdict> {
        let now = clock::now_ns();
        events
            .iter()
            .map(|event| {
                let fields = Checked {
                    source: event.source(),
                    kind: event.kind(),
                    value: event.value(),
                    time_ns: event.time_ns(),
                };
                self.check(&fields, now)
            })
            .collect()
    }
}

halyard_sdk::export_validator!(RangeValidator);

impl RangeValidator {
    /// Parses and checks the config (see README.md).
    fn from_config(config: &Config) -> Result<Self, InitError> {
        let default = Bounds {
            min: finite(config, "min")?,
            max: finite(config, "max")?,
        };
        let mut per_kind: HashMap<String, Bounds> = HashMap::new();
        for (kind, _) in config.keys_with_prefix("min.") {
            per_kind.entry(kind.to_owned()).or_insert(default).min =
                finite(config, &format!("min.{kind}"))?;
        }
        for (kind, _) in config.keys_with_prefix("max.") {
            per_kind.entry(kind.to_owned()).or_insert(default).max =
                finite(config, &format!("max.{kind}"))?;
        }
        check_order(&default, "min", "")?;
        for (kind, bounds) in &per_kind {
            check_order(bounds, &format!("min.{kind}"), kind)?;
        }
        Ok(RangeValidator {
            default,
            per_kind,
            require_value: config.bool("require_value", true)?,
            max_future: limit(config, "max_future_s", 300.0)?,
            max_past: limit(config, "max_past_s", 0.0)?,
        })
    }

    /// The verdict on one event at wall-clock time `now_ns`, in the
    /// documented check order.
    fn check(&self, event: &Checked<'_>, now_ns: i64) -> Verdict {
        if event.source.is_empty() {
            return Verdict::reject("missing source");
        }
        if event.kind.is_empty() {
            return Verdict::reject("missing kind");
        }
        match event.value {
            None if self.require_value => return Verdict::reject("missing value"),
            None => {}
            Some(v) if !v.is_finite() => return Verdict::reject("value is not finite"),
            Some(v) => {
                let kind = event.kind;
                let bounds = self.per_kind.get(kind).unwrap_or(&self.default);
                if let Some(min) = bounds.min.filter(|min| v < *min) {
                    return Verdict::reject(format!(
                        "value {v} is below the minimum {min} for {kind}"
                    ));
                }
                if let Some(max) = bounds.max.filter(|max| v > *max) {
                    return Verdict::reject(format!(
                        "value {v} is above the maximum {max} for {kind}"
                    ));
                }
            }
        }
        let ahead = i128::from(event.time_ns) - i128::from(now_ns);
        if let Some(limit) = self.max_future.filter(|l| ahead > l.ns) {
            return Verdict::reject(format!(
                "time is {}s in the future (limit {}s)",
                ahead / NS_PER_S,
                limit.seconds
            ));
        }
        let behind = -ahead;
        if let Some(limit) = self.max_past.filter(|l| behind > l.ns) {
            return Verdict::reject(format!(
                "time is {}s in the past (limit {}s)",
                behind / NS_PER_S,
                limit.seconds
            ));
        }
        Verdict::Accept
    }
}

/// An optional finite f64 from `key`.
fn finite(config: &Config, key: &str) -> Result<Option<f64>, InitError> {
    match config.parse::<f64>(key)? {
        Some(v) if !v.is_finite() => Err(InitError::for_key(
            key,
            format!("{key} must be a finite number, got {v}"),
        )),
        other => Ok(other),
    }
}

/// Refuses bounds where the minimum is above the maximum.
fn check_order(bounds: &Bounds, min_key: &str, kind: &str) -> Result<(), InitError> {
    match (bounds.min, bounds.max) {
        (Some(min), Some(max)) if min > max => {
            let what = if kind.is_empty() {
                String::new()
            } else {
                format!(" for {kind}")
            };
            Err(InitError::for_key(
                min_key,
                format!("minimum {min} is above the maximum {max}{what}"),
            ))
        }
        _ => Ok(()),
    }
}

/// A time limit in seconds from `key`; 0 disables it.
fn limit(config: &Config, key: &str, default: f64) -> Result<Option<Limit>, InitError> {
    let seconds = config.parse_or(key, default)?;
    if !seconds.is_finite() || seconds < 0.0 {
        return Err(InitError::for_key(
            key,
            format!("{key} must be a finite number of seconds >= 0, got {seconds}"),
        ));
    }
    if seconds == 0.0 {
        return Ok(None);
    }
    // Saturating float-to-int cast: huge limits simply never trigger.
    let ns = (seconds * 1e9) as i128;
    Ok(Some(Limit { seconds, ns }))
}

#[cfg(test)]
mod tests;
