//! sim-source: simulated sensors (temperature, humidity, vibration) for
//! demos, tests and benchmarks, with a configurable rate, noise and fault
//! rate. Deterministic for a given seed. See README.md for the config keys.

#![warn(missing_docs)]

mod settings;
mod sim;

use halyard_sdk::{Config, Event, InitError, Source, clock, log};

pub use settings::{Metric, Settings};
pub use sim::Simulator;

/// At most this many seconds of readings are owed to the host; older
/// backlog is dropped so a stalled pipeline does not get a burst later.
const MAX_BACKLOG_S: f64 = 10.0;

/// The plugin: the simulator plus the pacing state of rate mode.
#[derive(Debug)]
pub struct SimSource {
    sim: Simulator,
    /// Readings owed to the host (rate mode).
    owed: u64,
    /// Fraction of a round (one reading per series) carried between polls.
    carry: f64,
    /// Monotonic time of the previous poll; `None` before the first.
    last_poll_ns: Option<u64>,
}

impl Source for SimSource {
    fn init(config: &Config) -> Result<Self, InitError> {
        let settings = Settings::from_config(config)?;
        log::write(
            log::Level::Info,
            "simulating sensors",
            &[
                ("devices", &settings.devices.to_string()),
                ("series", &settings.series().to_string()),
                ("rate", &settings.rate.to_string()),
            ],
        );
        Ok(SimSource {
            sim: Simulator::new(settings),
            owed: 0,
            carry: 0.0,
            last_poll_ns: None,
        })
    }

    fn poll(&mut self, max: u32) -> Vec<Event> {
        let count = match self.sim.settings().per_poll {
            Some(n) => u64::from(n.min(max)),
            None => self.due(clock::monotonic_ns(), max),
        };
        if count == 0 {
            return Vec::new();
        }
        self.sim.take(count, clock::now_ns())
    }
}

halyard_sdk::export_source!(SimSource);

impl SimSource {
    /// Rate mode: how many readings to emit now (at most `max`), given the
    /// monotonic time. The first poll owes one reading per series; later
    /// polls add `rate x elapsed seconds` rounds; the debt is capped at
    /// [`MAX_BACKLOG_S`] seconds of readings.
    fn due(&mut self, now_ns: u64, max: u32) -> u64 {
        let series = self.sim.settings().series();
        let rate = self.sim.settings().rate;
        match self.last_poll_ns.replace(now_ns) {
            None => self.owed = series,
            Some(last) => {
                let elapsed_s = now_ns.saturating_sub(last) as f64 / 1e9;
                let rounds = self.carry + rate * elapsed_s;
                let whole = rounds.floor();
                self.carry = rounds - whole;
                // Float-to-int casts saturate, so huge values cannot wrap.
                let new = (whole as u64).saturating_mul(series);
                self.owed = self.owed.saturating_add(new);
            }
        }
        let cap = ((rate * MAX_BACKLOG_S).floor() as u64)
            .saturating_mul(series)
            .max(series);
        if self.owed > cap {
            self.owed = cap;
            self.carry = 0.0;
        }
        let count = self.owed.min(u64::from(max));
        self.owed -= count;
        count
    }
}

#[cfg(test)]
mod tests;
