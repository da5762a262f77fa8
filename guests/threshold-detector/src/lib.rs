//! A Halyard **detector** (contract 0.3.0): per-device, per-metric rolling
//! windows and three rules, with hysteresis (one `alert` per episode and
//! one `cleared` when it ends). Window state lives in the host's `kv`
//! store, so a window survives a restart, a crash and a hot swap.
//!
//! Config (per metric `M`, the event's `kind`; a rule is on when its keys
//! are set):
//! - `M.mean_above = X` with `M.mean_window_s = W` (time window, by event
//!   time) or `M.mean_window_n = N` (the last N readings): alert while the
//!   window's mean is above X; `M.mean_clear_at` (default X) is the mean at
//!   or below which the episode ends. A time window that empties (no
//!   readings for W seconds) ends the episode on the next `tick`.
//! - `M.range_lo`, `M.range_hi` and `M.consecutive = N`: alert after N
//!   consecutive readings outside `[lo, hi]`; the first reading inside
//!   ends the episode.
//! - `M.rate_above = R`: alert while the change between two readings is
//!   faster than R per second (either way).
//! - `tick_ms` (read by the host): how often `tick` closes time windows.
//!
//! Every alert and cleared event has the reading's device as `source`,
//! kind `alert` or `cleared`, the rule's figure as `value` (the mean, the
//! reading, the rate) and attributes `rule`, `metric` and `threshold`.
//! A `kv` write the host refuses (over the namespace's bound) yields one
//! `detector.kv_error` event with the host's message; the window is then
//! not kept.

use std::collections::BTreeMap;

use halyard_sdk::{Config, Detector, Event, InitError, kv};

mod window;

use window::Window;

/// The most readings a window keeps (older ones are dropped first).
pub const MAX_SAMPLES: usize = 1024;

/// The rules for one metric.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rules {
    /// Mean above this …
    pub mean_above: Option<f64>,
    /// … ends at or below this.
    pub mean_clear_at: Option<f64>,
    /// Time window, nanoseconds.
    pub mean_window_ns: Option<i64>,
    /// Count window, readings.
    pub mean_window_n: Option<usize>,
    /// Range `[lo, hi]` …
    pub range: Option<(f64, f64)>,
    /// … left this many times in a row.
    pub consecutive: u32,
    /// Change per second above this (absolute).
    pub rate_above: Option<f64>,
}

/// The detector: its rules by metric.
pub struct Threshold {
    rules: BTreeMap<String, Rules>,
}

/// Rule bits in a window's `active` set.
pub const MEAN: u8 = 1;
/// See [`MEAN`].
pub const RANGE: u8 = 2;
/// See [`MEAN`].
pub const RATE: u8 = 4;

fn rule_name(bit: u8) -> &'static str {
    match bit {
        MEAN => "mean_above",
        RANGE => "out_of_range",
        _ => "rate_of_change",
    }
}

impl Detector for Threshold {
    fn init(config: &Config) -> Result<Self, InitError> {
        let mut rules: BTreeMap<String, Rules> = BTreeMap::new();
        for (key, raw) in config.iter() {
            let Some((metric, setting)) = key.rsplit_once('.') else {
                continue;
            };
            let number = |what: &str| {
                raw.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| {
                        InitError::for_key(key, format!("{key} must be a {what} (is {raw:?})"))
                    })
            };
            let r = rules.entry(metric.to_string()).or_default();
            match setting {
                "mean_above" => r.mean_above = Some(number("number")?),
                "mean_clear_at" => r.mean_clear_at = Some(number("number")?),
                "mean_window_s" => {
                    let s = number("number of seconds")?;
                    r.mean_window_ns = Some((s * 1e9) as i64);
                }
                "mean_window_n" => r.mean_window_n = Some(count(key, raw)? as usize),
                "range_lo" => {
                    r.range = Some((number("number")?, r.range.map_or(f64::MAX, |x| x.1)))
                }
                "range_hi" => {
                    r.range = Some((r.range.map_or(f64::MIN, |x| x.0), number("number")?))
                }
                "consecutive" => r.consecutive = count(key, raw)?,
                "rate_above" => r.rate_above = Some(number("number")?),
                _ => {
                    return Err(InitError::for_key(
                        key,
                        format!("unknown setting `{setting}` in {key}"),
                    ));
                }
            }
        }
        for (metric, r) in &mut rules {
            if r.mean_above.is_some() && r.mean_window_ns.is_none() && r.mean_window_n.is_none() {
                let key = format!("{metric}.mean_window_s");
                return Err(InitError::for_key(
                    key.clone(),
                    format!("{metric}.mean_above needs {key} or {metric}.mean_window_n"),
                ));
            }
            if r.range.is_some() && r.consecutive == 0 {
                r.consecutive = 1;
            }
        }
        Ok(Threshold { rules })
    }

    fn detect(&mut self, events: Vec<Event>) -> Vec<Event> {
        let mut out = Vec::new();
        // Windows touched by this batch, read once and written once.
        let mut open: BTreeMap<String, Window> = BTreeMap::new();
        for e in &events {
            let (Some(value), Some(rules)) = (e.value, self.rules.get(&e.kind)) else {
                continue;
            };
            let key = window_key(&e.source, &e.kind);
            let w = open.entry(key).or_insert_with_key(|k| load(k));
            w.add(e.time_ns, value, rules, &e.source, &e.kind, &mut out);
        }
        for (key, w) in open {
            store(&key, &w, &mut out);
        }
        out
    }

    fn tick(&mut self, now_ns: i64) -> Vec<Event> {
        let mut out = Vec::new();
        for key in kv::keys("w/") {
            let Some((source, metric)) = split_key(&key) else {
                continue;
            };
            let Some(rules) = self.rules.get(metric) else {
                continue;
            };
            let mut w = load(&key);
            if w.expire(now_ns, rules, source, metric, &mut out) {
                store(&key, &w, &mut out);
            }
        }
        out
    }
}

fn count(key: &str, raw: &str) -> Result<u32, InitError> {
    raw.trim()
        .parse::<u32>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| {
            InitError::for_key(
                key,
                format!("{key} must be a whole number above 0 (is {raw:?})"),
            )
        })
}

/// The kv key of a window: `w/<metric>/<device>` (the metric first: it
/// cannot hold `/`-free guarantees either, so the device is the rest).
fn window_key(source: &str, metric: &str) -> String {
    format!("w/{}/{source}", metric.replace('/', "%2F"))
}

fn split_key(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix("w/")?;
    let (metric, source) = rest.split_once('/')?;
    Some((source, metric))
}

fn load(key: &str) -> Window {
    kv::get(key)
        .and_then(|bytes| Window::decode(&bytes))
        .unwrap_or_default()
}

fn store(key: &str, w: &Window, out: &mut Vec<Event>) {
    let written = if w.is_idle() {
        kv::delete(key)
    } else {
        kv::set(key, &w.encode())
    };
    if let Err(message) = written {
        halyard_sdk::log::warn(&format!("window {key} not kept: {message}"));
        out.push(
            Event::new("threshold-detector", "detector.kv_error", now_or(w))
                .with_attr("key", key)
                .with_attr("error", message),
        );
    }
}

fn now_or(w: &Window) -> i64 {
    w.last_time().unwrap_or_else(halyard_sdk::clock::now_ns)
}

/// An `alert` or `cleared` event.
fn signal(
    kind: &str,
    bit: u8,
    source: &str,
    metric: &str,
    time_ns: i64,
    value: f64,
    threshold: f64,
) -> Event {
    Event::new(source, kind, time_ns)
        .with_value(value)
        .with_attr("rule", rule_name(bit))
        .with_attr("metric", metric)
        .with_attr("threshold", threshold)
}

halyard_sdk::export_detector!(Threshold);
