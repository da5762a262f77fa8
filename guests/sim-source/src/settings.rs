//! The simulator's config.

use halyard_sdk::{Config, InitError};

/// The most devices one instance simulates, to bound its memory.
pub const MAX_DEVICES: u32 = 100_000;

/// A simulated metric: its event kind, unit and typical value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// `temperature` in `celsius`, around 21 + 0.5 x (device % 10).
    Temperature,
    /// `humidity` in `percent`, around 45 + (device % 10).
    Humidity,
    /// `vibration` in `mm/s`, around 2 + 0.1 x (device % 10).
    Vibration,
}

impl Metric {
    /// Every metric, in the default order.
    pub const ALL: [Metric; 3] = [Metric::Temperature, Metric::Humidity, Metric::Vibration];

    /// The metric's name, used as the event kind and in the config.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Temperature => "temperature",
            Metric::Humidity => "humidity",
            Metric::Vibration => "vibration",
        }
    }

    /// The unit of the metric's readings.
    pub fn unit(self) -> &'static str {
        match self {
            Metric::Temperature => "celsius",
            Metric::Humidity => "percent",
            Metric::Vibration => "mm/s",
        }
    }

    /// The noise-free reading of this metric on `device`.
    pub fn base(self, device: u32) -> f64 {
        let offset = f64::from(device % 10);
        match self {
            Metric::Temperature => 21.0 + 0.5 * offset,
            Metric::Humidity => 45.0 + offset,
            Metric::Vibration => 2.0 + 0.1 * offset,
        }
    }

    fn from_name(name: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// The parsed config of the simulator (see README.md).
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Number of simulated devices.
    pub devices: u32,
    /// Metrics each device reports, in emission order.
    pub metrics: Vec<Metric>,
    /// Readings per second per device per metric (rate mode).
    pub rate: f64,
    /// Amplitude of the uniform noise added to the base value.
    pub noise: f64,
    /// Probability that a reading is faulty.
    pub fault_rate: f64,
    /// Seed of the pseudo-random generator.
    pub seed: u64,
    /// Prefix of the source names (`{prefix}{device:04}`).
    pub source_prefix: String,
    /// Fixed number of readings per poll (test and benchmark mode).
    pub per_poll: Option<u32>,
}

impl Settings {
    /// Parses and checks the config.
    pub fn from_config(config: &Config) -> Result<Self, InitError> {
        let devices: u32 = config.parse_or("devices", 5)?;
        if !(1..=MAX_DEVICES).contains(&devices) {
            return Err(InitError::for_key(
                "devices",
                format!("devices must be between 1 and {MAX_DEVICES}, got {devices}"),
            ));
        }
        let names = config.list("metrics");
        let metrics = if names.is_empty() {
            Metric::ALL.to_vec()
        } else {
            let mut metrics = Vec::new();
            for name in &names {
                let metric = Metric::from_name(name).ok_or_else(|| {
                    InitError::for_key(
                        "metrics",
                        format!(
                            "unknown metric {name:?} in metrics: expected temperature, humidity or vibration"
                        ),
                    )
                })?;
                if !metrics.contains(&metric) {
                    metrics.push(metric);
                }
            }
            metrics
        };
        let rate: f64 = config.parse_or("rate", 1.0)?;
        if !(rate.is_finite() && rate > 0.0) {
            return Err(InitError::for_key(
                "rate",
                format!("rate must be a positive number, got {rate}"),
            ));
        }
        let noise: f64 = config.parse_or("noise", 0.5)?;
        if !(noise.is_finite() && noise >= 0.0) {
            return Err(InitError::for_key(
                "noise",
                format!("noise must be a number >= 0, got {noise}"),
            ));
        }
        let fault_rate: f64 = config.parse_or("fault_rate", 0.01)?;
        if !(0.0..=1.0).contains(&fault_rate) {
            return Err(InitError::for_key(
                "fault_rate",
                format!("fault_rate must be between 0 and 1, got {fault_rate}"),
            ));
        }
        Ok(Settings {
            devices,
            metrics,
            rate,
            noise,
            fault_rate,
            seed: config.parse_or("seed", 42)?,
            source_prefix: config.get("source_prefix").unwrap_or("sim-").to_owned(),
            per_poll: config.parse("per_poll")?,
        })
    }

    /// Number of series (device x metric pairs): readings per round.
    pub fn series(&self) -> u64 {
        u64::from(self.devices) * self.metrics.len() as u64
    }
}
