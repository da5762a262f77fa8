//! Back-pressure before the stages under `when_full = "block"`.
//!
//! A full buffer used to refuse an ingest at its commit, after every plugin
//! had run on it; the input retried later and the plugins ran again on the
//! same frames (and licence usage counted them again). Now the pipeline asks
//! the buffer for room *before* decoding ([`halyard_buffer::Buffer::admit`]),
//! and an admitted ingest is stored whole even if its events turn out larger
//! than the room it was admitted with.
//!
//! The room asked for is the input's size times how much inputs have been
//! growing into stored events lately, so the buffer overshoots `max_bytes` by
//! no more than the error of that estimate for one ingest. Why learn it:
//! JSON lines grow ~3–5× once decoded, stamped and encoded, but a decoder
//! that drops most of its input shrinks them; a fixed factor would either
//! overshoot or push back needlessly.

/// What the first ingests assume before anything was measured: the growth of
/// typical JSON lines with provenance stamps, rounded up.
const INITIAL_EXPANSION: f64 = 4.0;

/// Weight of the newest ingest in the running estimate.
const WEIGHT: f64 = 0.3;

/// The running estimate of stored bytes per input byte.
#[derive(Debug, Clone)]
pub(super) struct Admission {
    expansion: f64,
}

impl Default for Admission {
    fn default() -> Self {
        Admission {
            expansion: INITIAL_EXPANSION,
        }
    }
}

impl Admission {
    /// The room `input_bytes` of input will likely need once stored.
    pub(super) fn estimate(&self, input_bytes: u64) -> u64 {
        (input_bytes as f64 * self.expansion).ceil() as u64
    }

    /// Learns from one ingest of `input_bytes` that stored `output_bytes`
    /// (accounted). Never below 1, so a run of ingests that stored nothing
    /// does not let the next one in for free.
    pub(super) fn learn(&mut self, input_bytes: u64, output_bytes: u64) {
        if input_bytes == 0 {
            return;
        }
        let sample = output_bytes as f64 / input_bytes as f64;
        self.expansion = ((1.0 - WEIGHT) * self.expansion + WEIGHT * sample).max(1.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_estimate_follows_what_ingests_store() {
        let mut a = Admission::default();
        assert_eq!(a.estimate(100), 400);
        for _ in 0..30 {
            a.learn(100, 250);
        }
        assert!((a.estimate(100) as i64 - 250).abs() <= 2, "{a:?}");
        for _ in 0..30 {
            a.learn(100, 0);
        }
        assert_eq!(a.estimate(100), 100, "never below the input's own size");
        a.learn(0, 1000);
        assert_eq!(a.estimate(100), 100, "an empty ingest teaches nothing");
    }
}
