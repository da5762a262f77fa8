//! One device's window for one metric, as kept in the `kv` store, and the
//! rules applied to it.
//!
//! Encoded as one line of text (`v1 active consec last n t v t v …`, floats
//! in Rust's round-trip form) so a stored window can be read by eye in
//! the buffer file and survives any change of this crate's types.

use std::collections::VecDeque;

use halyard_sdk::Event;

use super::{MAX_SAMPLES, MEAN, RANGE, RATE, Rules, signal};

/// A window and the episodes open on it.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Window {
    /// Readings for the mean rule: (time ns, value), oldest first.
    samples: VecDeque<(i64, f64)>,
    /// Readings out of range in a row.
    consec: u32,
    /// The previous reading, for the rate rule.
    last: Option<(i64, f64)>,
    /// Rules in an episode now (bits [`MEAN`], [`RANGE`], [`RATE`]).
    active: u8,
}

impl Window {
    /// Adds a reading and applies `rules`; alerts and cleared events go to
    /// `out`.
    pub fn add(
        &mut self,
        t: i64,
        v: f64,
        rules: &Rules,
        source: &str,
        metric: &str,
        out: &mut Vec<Event>,
    ) {
        if let Some(above) = rules.mean_above {
            self.samples.push_back((t, v));
            if let Some(w) = rules.mean_window_ns {
                while self.samples.front().is_some_and(|(ts, _)| *ts < t - w) {
                    self.samples.pop_front();
                }
            }
            let keep = rules.mean_window_n.unwrap_or(MAX_SAMPLES).min(MAX_SAMPLES);
            while self.samples.len() > keep {
                self.samples.pop_front();
            }
            let mean = self.samples.iter().map(|(_, v)| v).sum::<f64>() / self.samples.len() as f64;
            let clear_at = rules.mean_clear_at.unwrap_or(above);
            if self.active & MEAN == 0 && mean > above {
                self.active |= MEAN;
                out.push(signal("alert", MEAN, source, metric, t, mean, above));
            } else if self.active & MEAN != 0 && mean <= clear_at {
                self.active &= !MEAN;
                out.push(signal("cleared", MEAN, source, metric, t, mean, clear_at));
            }
        }
        if let Some((lo, hi)) = rules.range {
            if v < lo || v > hi {
                self.consec = self.consec.saturating_add(1);
                if self.active & RANGE == 0 && self.consec >= rules.consecutive {
                    self.active |= RANGE;
                    let broken = if v > hi { hi } else { lo };
                    out.push(signal("alert", RANGE, source, metric, t, v, broken));
                }
            } else {
                self.consec = 0;
                if self.active & RANGE != 0 {
                    self.active &= !RANGE;
                    out.push(signal("cleared", RANGE, source, metric, t, v, hi));
                }
            }
        }
        if let Some(limit) = rules.rate_above {
            if let Some((lt, lv)) = self.last
                && t > lt
            {
                let rate = (v - lv) / ((t - lt) as f64 / 1e9);
                if self.active & RATE == 0 && rate.abs() > limit {
                    self.active |= RATE;
                    out.push(signal("alert", RATE, source, metric, t, rate, limit));
                } else if self.active & RATE != 0 && rate.abs() <= limit {
                    self.active &= !RATE;
                    out.push(signal("cleared", RATE, source, metric, t, rate, limit));
                }
            }
            self.last = Some((t, v));
        }
    }

    /// Drops readings older than the time window at `now`; a window left
    /// empty ends its mean episode. Returns whether anything changed.
    pub fn expire(
        &mut self,
        now: i64,
        rules: &Rules,
        source: &str,
        metric: &str,
        out: &mut Vec<Event>,
    ) -> bool {
        let Some(w) = rules.mean_window_ns else {
            return false;
        };
        let before = self.samples.len();
        while self.samples.front().is_some_and(|(ts, _)| *ts < now - w) {
            self.samples.pop_front();
        }
        let mut changed = self.samples.len() != before;
        if self.samples.is_empty() && self.active & MEAN != 0 {
            self.active &= !MEAN;
            let clear_at = rules.mean_clear_at.or(rules.mean_above).unwrap_or(0.0);
            out.push(signal("cleared", MEAN, source, metric, now, 0.0, clear_at));
            changed = true;
        }
        changed
    }

    /// Nothing to keep: the key can be deleted.
    pub fn is_idle(&self) -> bool {
        self.samples.is_empty() && self.consec == 0 && self.last.is_none() && self.active == 0
    }

    /// The newest reading's time, if any.
    pub fn last_time(&self) -> Option<i64> {
        self.samples.back().map(|s| s.0).or(self.last.map(|l| l.0))
    }

    /// The stored form.
    pub fn encode(&self) -> Vec<u8> {
        let last = match self.last {
            Some((t, v)) => format!("{t}:{v:?}"),
            None => "-".to_string(),
        };
        let mut s = format!(
            "v1 {} {} {last} {}",
            self.active,
            self.consec,
            self.samples.len()
        );
        for (t, v) in &self.samples {
            s.push_str(&format!(" {t} {v:?}"));
        }
        s.into_bytes()
    }

    /// Reads the stored form; `None` if it is not one (then the window
    /// starts afresh).
    pub fn decode(bytes: &[u8]) -> Option<Window> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut parts = text.split(' ');
        if parts.next()? != "v1" {
            return None;
        }
        let active = parts.next()?.parse().ok()?;
        let consec = parts.next()?.parse().ok()?;
        let last = match parts.next()? {
            "-" => None,
            l => {
                let (t, v) = l.split_once(':')?;
                Some((t.parse().ok()?, v.parse().ok()?))
            }
        };
        let n: usize = parts.next()?.parse().ok()?;
        let mut samples = VecDeque::with_capacity(n.min(MAX_SAMPLES));
        for _ in 0..n.min(MAX_SAMPLES) {
            samples.push_back((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?));
        }
        Some(Window {
            samples,
            consec,
            last,
            active,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range_rules() -> Rules {
        Rules {
            range: Some((0.0, 50.0)),
            consecutive: 3,
            ..Rules::default()
        }
    }

    #[test]
    fn three_out_of_range_alert_once_and_one_inside_clears() {
        let mut w = Window::default();
        let mut out = Vec::new();
        for (i, v) in [10.0, 80.0, 80.0, 80.0, 80.0, 80.0, 10.0, 80.0]
            .iter()
            .enumerate()
        {
            w.add(i as i64, *v, &range_rules(), "d", "temp", &mut out);
        }
        let kinds: Vec<&str> = out.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["alert", "cleared"]);
        assert_eq!(w.consec, 1);
    }

    #[test]
    fn a_window_round_trips_through_its_stored_form() {
        let mut w = Window::default();
        let rules = Rules {
            mean_above: Some(5.0),
            mean_window_n: Some(3),
            rate_above: Some(1.0),
            ..range_rules()
        };
        let mut out = Vec::new();
        for (i, v) in [1.5, 99.25, -3.0, 7.125].iter().enumerate() {
            w.add(i as i64 * 1_000_000_000, *v, &rules, "d", "temp", &mut out);
        }
        assert_eq!(Window::decode(&w.encode()), Some(w));
    }

    #[test]
    fn an_empty_time_window_ends_its_episode_on_tick() {
        let rules = Rules {
            mean_above: Some(5.0),
            mean_window_ns: Some(1_000_000_000),
            ..Rules::default()
        };
        let mut w = Window::default();
        let mut out = Vec::new();
        w.add(0, 10.0, &rules, "d", "p", &mut out);
        assert!(!w.expire(500_000_000, &rules, "d", "p", &mut out));
        assert!(w.expire(2_000_000_000, &rules, "d", "p", &mut out));
        let kinds: Vec<&str> = out.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["alert", "cleared"]);
        assert!(w.is_idle());
    }
}
