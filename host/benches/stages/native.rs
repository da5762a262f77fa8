//! The example guests' logic, reimplemented natively on the host's own
//! `Event` type: the baseline that the sandboxed calls are compared with.
//!
//! Each type mirrors its guest in `guests/*/src` step by step, including the
//! allocations the guest logic itself makes (the decoder builds owned
//! strings for the event; the privacy policy takes an owned event, keeps
//! the guest's cache of hashes, and returns the rewrite).
//! What a native call does *not* pay is the sandbox: copying the batch into
//! guest memory, lifting it into guest-owned values, and copying the results
//! back. That difference is what the benchmark measures.

#[path = "native_decoder.rs"]
mod decoder;
// The guest's own line parser, compiled natively: the twin cannot drift.
#[path = "../../../guests/jsonl-decoder/src/line.rs"]
mod line;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};

use halyard::plugin::{Action, AttrValue, Event, EventId, Verdict};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub use decoder::JsonlDecoder;

/// Wall-clock nanoseconds, as the guests' `clock.now-ns` import returns.
fn now_ns() -> i64 {
    halyard::plugin::host::wall_clock_ns()
}

/// Splits a comma-separated config value like the SDK's `Config::list`.
fn config_list(config: &BTreeMap<String, String>, key: &str) -> Vec<String> {
    config
        .get(key)
        .map(|raw| {
            raw.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// Parses an optional number from the config; the bench's configs are
/// known-good, so a bad value is a programming error.
fn config_f64(config: &BTreeMap<String, String>, key: &str) -> Option<f64> {
    config
        .get(key)
        .map(|v| v.trim().parse().expect("bench config numbers parse"))
}

/// Inclusive bounds for one kind.
#[derive(Clone, Copy, Default)]
struct Bounds {
    min: Option<f64>,
    max: Option<f64>,
}

/// `range-validator` with its default time limits (future 300 s, past off)
/// and `require_value = true`.
pub struct RangeValidator {
    default: Bounds,
    per_kind: HashMap<String, Bounds>,
    max_future_ns: i128,
}

impl RangeValidator {
    /// Reads `min`, `max`, `min.<kind>` and `max.<kind>`.
    pub fn new(config: &BTreeMap<String, String>) -> Self {
        let default = Bounds {
            min: config_f64(config, "min"),
            max: config_f64(config, "max"),
        };
        let mut per_kind: HashMap<String, Bounds> = HashMap::new();
        for key in config.keys() {
            if let Some(kind) = key.strip_prefix("min.") {
                per_kind.entry(kind.to_owned()).or_insert(default).min = config_f64(config, key);
            }
        }
        for key in config.keys() {
            if let Some(kind) = key.strip_prefix("max.") {
                per_kind.entry(kind.to_owned()).or_insert(default).max = config_f64(config, key);
            }
        }
        RangeValidator {
            default,
            per_kind,
            max_future_ns: 300 * 1_000_000_000,
        }
    }

    /// One verdict per event, reading the clock once per batch.
    pub fn validate_batch(&self, events: &[Event]) -> Vec<Verdict> {
        let now = now_ns();
        events.iter().map(|event| self.check(event, now)).collect()
    }

    /// The guest's checks, in the guest's order.
    fn check(&self, event: &Event, now_ns: i64) -> Verdict {
        if event.source.is_empty() {
            return Verdict::Reject("missing source".to_owned());
        }
        if event.kind.is_empty() {
            return Verdict::Reject("missing kind".to_owned());
        }
        match event.value {
            None => return Verdict::Reject("missing value".to_owned()),
            Some(v) if !v.is_finite() => return Verdict::Reject("value is not finite".to_owned()),
            Some(v) => {
                let kind = &event.kind;
                let bounds = self.per_kind.get(kind).unwrap_or(&self.default);
                if let Some(min) = bounds.min.filter(|min| v < *min) {
                    return Verdict::Reject(format!(
                        "value {v} is below the minimum {min} for {kind}"
                    ));
                }
                if let Some(max) = bounds.max.filter(|max| v > *max) {
                    return Verdict::Reject(format!(
                        "value {v} is above the maximum {max} for {kind}"
                    ));
                }
            }
        }
        let ahead = i128::from(event.time_ns) - i128::from(now_ns);
        if ahead > self.max_future_ns {
            return Verdict::Reject(format!(
                "time is {}s in the future (limit 300s)",
                ahead / 1_000_000_000
            ));
        }
        Verdict::Accept
    }
}

/// `"h:"` + the first 16 hex digits of SHA-256(salt ++ value).
pub fn salted_hash(salt: &str, value: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut hasher = Sha256::new();
    hasher.update(salt.as_bytes());
    hasher.update(value.as_bytes());
    let digest = hasher.finalize();
    let mut out = String::with_capacity(18);
    out.push_str("h:");
    for byte in &digest[..8] {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    out
}

/// The guest's bound on its hash cache; cleared when full.
const HASH_CACHE_LIMIT: usize = 4096;

/// `salted_hash(salt, value)` through the guest's per-instance cache.
fn cached_hash(cache: &mut HashMap<String, String>, salt: &str, value: &str) -> String {
    if let Some(token) = cache.get(value) {
        return token.clone();
    }
    let token = salted_hash(salt, value);
    if cache.len() >= HASH_CACHE_LIMIT {
        cache.clear();
    }
    cache.insert(value.to_owned(), token.clone());
    token
}

/// `redact-privacy` without source hashing: `drop_keys`, `hash_keys`,
/// `salt` and `block_sources` (exact names or `prefix*`), with the guest's
/// cache of hashes per value.
pub struct RedactPolicy {
    drop_keys: HashSet<String>,
    hash_keys: HashSet<String>,
    salt: String,
    blocks: Vec<String>,
    /// A `RefCell` so the bench can keep calling through `&self`; the guest
    /// holds the same map in its `&mut` instance.
    cache: RefCell<HashMap<String, String>>,
}

impl RedactPolicy {
    /// Reads the policy's config keys.
    pub fn new(config: &BTreeMap<String, String>) -> Self {
        RedactPolicy {
            drop_keys: config_list(config, "drop_keys").into_iter().collect(),
            hash_keys: config_list(config, "hash_keys").into_iter().collect(),
            salt: config.get("salt").cloned().unwrap_or_default(),
            blocks: config_list(config, "block_sources"),
            cache: RefCell::new(HashMap::new()),
        }
    }

    /// One action per event. The guest receives each event by value (lifted
    /// out of its memory), so the native policy starts from an owned clone.
    pub fn redact_batch(&self, events: &[Event]) -> Vec<Action> {
        events.iter().map(|e| self.apply(e.clone())).collect()
    }

    fn blocked(&self, source: &str) -> bool {
        self.blocks.iter().any(|b| match b.strip_suffix('*') {
            Some(prefix) => source.starts_with(prefix),
            None => b == source,
        })
    }

    /// Drop, Keep, or Rewrite with the redacted event.
    fn apply(&self, mut event: Event) -> Action {
        if self.blocked(&event.source) {
            return Action::Drop;
        }
        let mut changed = false;
        if !self.drop_keys.is_empty() || !self.hash_keys.is_empty() {
            if !self.drop_keys.is_empty() {
                let before = event.attributes.len();
                event
                    .attributes
                    .retain(|a| !self.drop_keys.contains(&a.key));
                changed |= event.attributes.len() != before;
            }
            if !self.hash_keys.is_empty() {
                let mut cache = self.cache.borrow_mut();
                for attr in &mut event.attributes {
                    if self.hash_keys.contains(&attr.key) {
                        // The SDK's `Display` text; a string without a copy.
                        let token = match &attr.value {
                            AttrValue::Str(s) => cached_hash(&mut cache, &self.salt, s),
                            AttrValue::Int(i) => {
                                cached_hash(&mut cache, &self.salt, &i.to_string())
                            }
                            AttrValue::Float(x) => {
                                cached_hash(&mut cache, &self.salt, &x.to_string())
                            }
                            AttrValue::Boolean(b) => {
                                cached_hash(&mut cache, &self.salt, &b.to_string())
                            }
                        };
                        attr.value = AttrValue::Str(token);
                        changed = true;
                    }
                }
            }
            if let Some(body) = event.body.as_deref().and_then(|b| self.redact_body(b)) {
                event.body = Some(body);
                changed = true;
            }
        }
        if changed {
            Action::Rewrite(event)
        } else {
            Action::Keep
        }
    }

    /// The body with drop keys removed and hash keys masked, if it changed.
    fn redact_body(&self, body: &str) -> Option<String> {
        let Ok(Value::Object(mut map)) = serde_json::from_str::<Value>(body) else {
            return None;
        };
        let mut changed = false;
        for key in &self.drop_keys {
            changed |= map.shift_remove(key).is_some();
        }
        for (key, value) in map.iter_mut() {
            if self.hash_keys.contains(key) {
                let mut cache = self.cache.borrow_mut();
                let token = match &*value {
                    Value::String(s) => cached_hash(&mut cache, &self.salt, s),
                    other => cached_hash(&mut cache, &self.salt, &other.to_string()),
                };
                *value = Value::String(token);
                changed = true;
            }
        }
        changed.then(|| Value::Object(map).to_string())
    }
}

/// The splitmix64 finaliser.
fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// `fraction-sampler` without the per-source rate cap (the bench does not
/// set `max_per_source_per_s`): keeps an id iff
/// `splitmix64(hi ^ splitmix64(lo)) / 2^64 < fraction`.
pub struct FractionSampler {
    fraction: f64,
}

impl FractionSampler {
    /// Reads `fraction` (default 1).
    pub fn new(config: &BTreeMap<String, String>) -> Self {
        FractionSampler {
            fraction: config_f64(config, "fraction").unwrap_or(1.0),
        }
    }

    /// Whether every event is kept (`fraction >= 1`).
    pub fn keeps_all(&self) -> bool {
        self.fraction >= 1.0
    }

    /// One keep/discard decision per event.
    pub fn sample_batch(&self, events: &[Event]) -> Vec<bool> {
        events.iter().map(|e| self.keep(&e.id)).collect()
    }

    fn keep(&self, id: &EventId) -> bool {
        const TWO_POW_64: f64 = 18_446_744_073_709_551_616.0;
        let hash = splitmix64(id.hi ^ splitmix64(id.lo));
        self.fraction >= 1.0 || (hash as f64 / TWO_POW_64) < self.fraction
    }
}
