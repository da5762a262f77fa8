//! The deterministic reading generator.

use halyard_sdk::Event;

use crate::settings::{Metric, Settings};

/// The splitmix64 increment (the golden-ratio gamma).
const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// Preallocate at most this many events per call, whatever is asked.
const MAX_PREALLOC: u64 = 65_536;

/// Generates readings series by series (device-major: every metric of
/// device 0, then of device 1, ...), wrapping around, from a splitmix64
/// stream seeded with `seed`.
#[derive(Debug)]
pub struct Simulator {
    settings: Settings,
    /// splitmix64 state.
    state: u64,
    /// Index of the next series in the cycle.
    cursor: u64,
    /// Next `seq` attribute per device (per source).
    seq: Vec<i64>,
    /// Source name per device.
    names: Vec<String>,
}

impl Simulator {
    /// A simulator at the start of its cycle.
    pub fn new(settings: Settings) -> Self {
        let names = (0..settings.devices)
            .map(|d| format!("{}{d:04}", settings.source_prefix))
            .collect();
        Simulator {
            state: settings.seed,
            cursor: 0,
            seq: vec![0; settings.devices as usize],
            names,
            settings,
        }
    }

    /// The config the simulator runs with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The next `count` readings of the cycle, all stamped `time_ns`.
    pub fn take(&mut self, count: u64, time_ns: i64) -> Vec<Event> {
        let series = self.settings.series();
        let per_device = self.settings.metrics.len() as u64;
        let mut events = Vec::with_capacity(count.min(MAX_PREALLOC) as usize);
        for _ in 0..count {
            let device = (self.cursor / per_device) as u32;
            let metric = self.settings.metrics[(self.cursor % per_device) as usize];
            self.cursor = (self.cursor + 1) % series;
            events.push(self.reading(device, metric, time_ns));
        }
        events
    }

    /// One reading: faulty with probability `fault_rate`, otherwise the
    /// metric's base value plus uniform noise in `[-noise, noise)`.
    fn reading(&mut self, device: u32, metric: Metric, time_ns: i64) -> Event {
        let value = if self.next_f64() < self.settings.fault_rate {
            match self.next_u64() % 4 {
                0 => Some(f64::NAN),
                1 => None,
                2 => Some(-999.0),
                _ => Some(1e6),
            }
        } else {
            let unit_noise = 2.0 * self.next_f64() - 1.0;
            Some(metric.base(device) + self.settings.noise * unit_noise)
        };
        let index = device as usize;
        let seq = self.seq[index];
        self.seq[index] = seq.saturating_add(1);
        let mut event = Event::new(self.names[index].clone(), metric.name(), time_ns)
            .with_unit(metric.unit())
            .with_attr("seq", seq)
            .with_attr("simulated", true);
        event.value = value;
        event
    }

    /// The next output of the splitmix64 stream.
    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GAMMA);
        let mut x = self.state;
        x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        x ^ (x >> 31)
    }

    /// A uniform float in `[0, 1)` from the top 53 bits of the stream.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}
