//! fraction-sampler: keeps a deterministic fraction of events, chosen by a
//! hash of the event id, and optionally caps how many events per source per
//! second are kept. See README.md for the config keys and the exact hash.

#![warn(missing_docs)]

use std::collections::HashMap;

use halyard_sdk::{Config, Event, EventId, Events, InitError, Sampler};

/// How many sources the rate cap tracks before it forgets them all.
const MAX_TRACKED_SOURCES: usize = 10_000;

/// 2^64 as f64, to map a hash onto [0, 1).
const TWO_POW_64: f64 = 18_446_744_073_709_551_616.0;

/// The standard splitmix64 finaliser (Steele, Lea, Flood 2014), as used by
/// `java.util.SplittableRandom` and xoshiro seeding.
pub fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The sampling hash of an event id: `splitmix64(hi ^ splitmix64(lo))`.
pub fn id_hash(id: EventId) -> u64 {
    splitmix64(id.hi ^ splitmix64(id.lo))
}

/// True when the id falls inside the kept `fraction` of the hash space.
pub fn in_fraction(id: EventId, fraction: f64) -> bool {
    fraction >= 1.0 || (id_hash(id) as f64 / TWO_POW_64) < fraction
}

/// The sampler's config and its per-source rate-cap state.
#[derive(Debug)]
pub struct FractionSampler {
    fraction: f64,
    cap: Option<u32>,
    /// Per source: the second (time_ns / 1e9) of the latest kept event and
    /// how many events of that second were kept.
    buckets: HashMap<String, (i64, u32)>,
}

impl Sampler for FractionSampler {
    fn init(config: &Config) -> Result<Self, InitError> {
        Self::from_config(config)
    }

    fn sample(&mut self, event: &Event) -> bool {
        in_fraction(event.id, self.fraction) && self.within_cap(&event.source, event.time_ns)
    }

    /// What the host calls: the batch read in place, no copies.
    fn sample_views(&mut self, events: &Events<'_>) -> Vec<bool> {
        events
            .iter()
            .map(|event| {
                in_fraction(event.id(), self.fraction)
                    && self.within_cap(event.source(), event.time_ns())
            })
            .collect()
    }
}

halyard_sdk::export_sampler!(FractionSampler);

impl FractionSampler {
    /// Parses and checks the config (see README.md).
    fn from_config(config: &Config) -> Result<Self, InitError> {
        let fraction: f64 = config.parse_or("fraction", 1.0)?;
        if !(0.0..=1.0).contains(&fraction) {
            return Err(InitError::for_key(
                "fraction",
                format!("fraction must be between 0 and 1, got {fraction}"),
            ));
        }
        let cap: Option<u32> = config.parse("max_per_source_per_s")?;
        if cap == Some(0) {
            return Err(InitError::for_key(
                "max_per_source_per_s",
                "max_per_source_per_s must be at least 1 (leave it unset for no cap)",
            ));
        }
        Ok(FractionSampler {
            fraction,
            cap,
            buckets: HashMap::new(),
        })
    }

    /// Applies the per-source-per-second cap to an event the fraction kept,
    /// counting it if it is kept.
    fn within_cap(&mut self, source: &str, time_ns: i64) -> bool {
        let Some(cap) = self.cap else {
            return true;
        };
        let bucket = time_ns.div_euclid(1_000_000_000);
        if let Some((last, count)) = self.buckets.get_mut(source) {
            if *last != bucket {
                *last = bucket;
                *count = 1;
                return true;
            }
            if *count >= cap {
                return false;
            }
            *count += 1;
            return true;
        }
        if self.buckets.len() >= MAX_TRACKED_SOURCES {
            self.buckets.clear();
        }
        self.buckets.insert(source.to_owned(), (bucket, 1));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampler(pairs: &[(&str, &str)]) -> FractionSampler {
        match FractionSampler::from_config(&Config::from_pairs(pairs.iter().copied())) {
            Ok(s) => s,
            Err(err) => panic!("init failed: {err:?}"),
        }
    }

    fn event(source: &str, time_ns: i64, lo: u64) -> Event {
        let mut e = Event::new(source, "k", time_ns);
        e.id = EventId { hi: 1, lo };
        e
    }

    #[test]
    fn splitmix64_matches_the_reference_sequence() {
        // First outputs of the reference generator seeded with 0: state
        // advances by the golden gamma, so output n is splitmix64(n * gamma).
        assert_eq!(splitmix64(0), 0xE220_A839_7B1D_CDAF);
        assert_eq!(splitmix64(0x9E37_79B9_7F4A_7C15), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(id_hash(EventId { hi: 0, lo: 0 }), splitmix64(splitmix64(0)));
    }

    #[test]
    fn fraction_keeps_about_that_share_and_is_deterministic() {
        let ids = (0..10_000u64).map(|lo| EventId { hi: 42, lo });
        let kept = ids.clone().filter(|id| in_fraction(*id, 0.25)).count();
        assert!((2_300..2_700).contains(&kept), "{kept}");
        assert!(ids.clone().all(|id| in_fraction(id, 1.0)));
        assert!(!ids.clone().any(|id| in_fraction(id, 0.0)));
    }

    #[test]
    fn cap_limits_each_source_per_second() {
        let mut s = sampler(&[("max_per_source_per_s", "2")]);
        let kept: Vec<bool> = [
            event("a", 1_000_000_000, 1),
            event("a", 1_100_000_000, 2),
            event("b", 1_200_000_000, 3),
            event("a", 1_900_000_000, 4),
            event("a", 2_000_000_000, 5),
        ]
        .iter()
        .map(|e| s.sample(e))
        .collect();
        assert_eq!(kept, [true, true, true, false, true]);
    }

    #[test]
    fn the_views_path_decides_as_the_owned_path() {
        let pairs = [("fraction", "0.5"), ("max_per_source_per_s", "3")];
        let events: Vec<Event> = (0..200)
            .map(|i| event(["a", "b"][i % 2], (i as i64 / 20) * 1_000_000_000, i as u64))
            .collect();
        let bytes = halyard_sdk::Events::encode(&events);
        let views = halyard_sdk::Events::parse(&bytes).expect("parses");
        let viewed = sampler(&pairs).sample_views(&views);
        let mut owned = sampler(&pairs);
        let owned: Vec<bool> = events.iter().map(|e| owned.sample(e)).collect();
        assert_eq!(viewed, owned);
        // Both the fraction and the cap did drop something.
        let kept = viewed.iter().filter(|k| **k).count();
        assert!(kept > 0 && kept < 100, "kept {kept}");
    }

    #[test]
    fn bad_config_names_the_key() {
        for (k, v) in [
            ("fraction", "1.5"),
            ("fraction", "x"),
            ("max_per_source_per_s", "-1"),
        ] {
            let err = FractionSampler::from_config(&Config::from_pairs([(k, v)]))
                .expect_err("config should be refused");
            assert_eq!(err.key.as_deref(), Some(k));
        }
    }
}
