//! How long to wait before the next attempt: capped exponential backoff with
//! full jitter.

use std::sync::Mutex;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Shape of the backoff curve.
///
/// Defaults (1 s, 60 s, ×2) reach the cap after six failures, so an outage of
/// any length costs the hub at most about one request per host every 30 s on
/// average, while a blip is retried within a second.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryConfig {
    /// Upper bound of the first retry's delay.
    pub initial: Duration,
    /// No delay ever exceeds this, however many failures came before.
    pub max: Duration,
    /// Growth of the upper bound per failure; values below 1 (or NaN) are
    /// treated as 1, so a bad config cannot make delays shrink or panic.
    pub multiplier: f64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            multiplier: 2.0,
        }
    }
}

/// Draws retry delays.
///
/// Full jitter (`uniform(0, cap)`) rather than `cap ± x %`: when the hub
/// comes back, a fleet of devices that all failed together must not retry
/// together, and full jitter spreads them over the whole window. The RNG is
/// owned (and seedable) so tests can check the distribution exactly.
///
/// The curve can be replaced while batches are being retried
/// ([`Backoff::set_config`]): a config reload applies from the next drawn
/// delay, and [`Backoff::changed`] wakes any wait in progress so it does not
/// sit out a delay drawn from the old curve.
#[derive(Debug)]
pub struct Backoff {
    config: Mutex<RetryConfig>,
    rng: Mutex<StdRng>,
    changed: tokio::sync::Notify,
}

impl Backoff {
    /// A backoff seeded from the operating system, for production.
    pub fn new(config: RetryConfig) -> Self {
        Self::with_rng(config, StdRng::from_os_rng())
    }

    /// A reproducible backoff, for tests and simulations.
    pub fn seeded(config: RetryConfig, seed: u64) -> Self {
        Self::with_rng(config, StdRng::seed_from_u64(seed))
    }

    /// A backoff drawing from a caller-supplied generator.
    pub fn with_rng(config: RetryConfig, rng: StdRng) -> Self {
        Self {
            config: Mutex::new(config),
            rng: Mutex::new(rng),
            changed: tokio::sync::Notify::new(),
        }
    }

    /// The configuration in force, for logging and status.
    pub fn config(&self) -> RetryConfig {
        self.config
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces the curve (a live config reload); waits in progress are
    /// woken so they re-draw from the new one.
    pub fn set_config(&self, config: RetryConfig) {
        *self.config.lock().unwrap_or_else(|e| e.into_inner()) = config;
        self.changed.notify_waiters();
    }

    /// Notified whenever [`Backoff::set_config`] replaces the curve.
    pub fn changed(&self) -> &tokio::sync::Notify {
        &self.changed
    }

    /// The upper bound of the delay after `failures` earlier failures
    /// (0-based): `min(max, initial * multiplier^failures)`.
    pub fn ceiling(&self, failures: u32) -> Duration {
        let RetryConfig {
            initial,
            max,
            multiplier,
        } = self.config();
        let multiplier = if multiplier >= 1.0 { multiplier } else { 1.0 };
        let exponent = i32::try_from(failures).unwrap_or(i32::MAX);
        let secs = initial.as_secs_f64() * multiplier.powi(exponent);
        // Overflow to infinity (or any unrepresentable value) means "past the cap".
        Duration::try_from_secs_f64(secs).map_or(max, |d| d.min(max))
    }

    /// A random delay in `[0, ceiling(failures)]`.
    pub fn delay(&self, failures: u32) -> Duration {
        let ceiling = self.ceiling(failures);
        if ceiling.is_zero() {
            return ceiling;
        }
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        // A poisoned lock only means another thread panicked mid-draw; the
        // generator's state is still usable.
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        Duration::from_nanos(rng.random_range(0..=nanos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backoff(seed: u64) -> Backoff {
        Backoff::seeded(RetryConfig::default(), seed)
    }

    #[test]
    fn every_delay_is_within_its_ceiling() {
        let b = backoff(7);
        for failures in 0..30 {
            let ceiling =
                Duration::from_secs(1u64 << failures.min(20)).min(Duration::from_secs(60));
            assert_eq!(b.ceiling(failures), ceiling, "ceiling at {failures}");
            for _ in 0..200 {
                let d = b.delay(failures);
                assert!(d <= ceiling, "{d:?} > {ceiling:?} at {failures}");
            }
        }
    }

    #[test]
    fn cap_holds_at_attempt_20_and_beyond() {
        let b = backoff(1);
        assert_eq!(b.ceiling(20), Duration::from_secs(60));
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(60));
        for _ in 0..1000 {
            assert!(b.delay(20) <= Duration::from_secs(60));
        }
    }

    #[test]
    fn mean_is_half_the_ceiling() {
        let b = backoff(42);
        let total: f64 = (0..1000).map(|_| b.delay(3).as_secs_f64()).sum();
        let mean = total / 1000.0;
        assert!(
            (mean - 4.0).abs() <= 0.6,
            "mean {mean} not within 15 % of 4 s"
        );
    }

    #[test]
    fn jitter_actually_spreads_draws() {
        let b = backoff(3);
        let draws: Vec<_> = (0..100).map(|_| b.delay(3)).collect();
        assert!(draws.iter().any(|d| *d < Duration::from_secs(2)));
        assert!(draws.iter().any(|d| *d > Duration::from_secs(6)));
    }

    #[test]
    fn same_seed_same_delays() {
        let (a, b) = (backoff(9), backoff(9));
        for n in 0..10 {
            assert_eq!(a.delay(n), b.delay(n));
        }
    }

    #[test]
    fn degenerate_configs_do_not_panic() {
        for multiplier in [f64::NAN, -3.0, 0.0, 0.5, f64::INFINITY] {
            let b = Backoff::seeded(
                RetryConfig {
                    multiplier,
                    ..RetryConfig::default()
                },
                0,
            );
            for n in [0, 1, 5, 1000] {
                assert!(b.delay(n) <= Duration::from_secs(60));
            }
        }
        let zero = Backoff::seeded(
            RetryConfig {
                initial: Duration::ZERO,
                ..RetryConfig::default()
            },
            0,
        );
        assert_eq!(zero.delay(5), Duration::ZERO);
    }
}
