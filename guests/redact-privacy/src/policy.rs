//! The redaction policy: config parsing and the per-event decision.

use std::collections::{HashMap, HashSet};

use halyard_sdk::{
    Action, AttrRef, AttrValue, Config, Edit, Event, EventRef, InitError, Redaction,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// `"h:"` + the first 16 lowercase hex digits of SHA-256(salt ++ value).
///
/// Why salted and truncated: the same value always maps to the same token
/// (so joins and counts still work downstream) but cannot be reversed by
/// hashing a dictionary without the salt; 64 bits keep collisions rare.
pub fn salted_hash(salt: &str, value: &str) -> String {
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

const HEX: &[u8; 16] = b"0123456789abcdef";

/// At most this many values are remembered by [`HashCache`]; when it is
/// full it is cleared and starts over.
pub(crate) const CACHE_LIMIT: usize = 4096;

/// Remembers `salted_hash(salt, value)` per value for one policy (one salt).
///
/// Why: hashed fields are identifiers (operators, users, hosts) that repeat
/// heavily in telemetry, and SHA-256 runs in software inside the sandbox.
/// The output is the same with or without the cache. The map is bounded so
/// a stream of distinct values cannot grow it without limit; clearing it
/// when full is crude but needs no bookkeeping per hit.
#[derive(Debug, Default)]
struct HashCache {
    /// Value → index in `tokens` (an index, so a hit is one lookup that
    /// hands back a borrowed token).
    index: HashMap<String, usize>,
    tokens: Vec<String>,
}

impl HashCache {
    /// `salted_hash(salt, value)`, from the cache when possible; borrowed,
    /// so a hit costs one lookup and no allocation.
    fn get(&mut self, salt: &str, value: &str) -> &str {
        let at = match self.index.get(value) {
            Some(&at) => at,
            None => {
                if self.tokens.len() >= CACHE_LIMIT {
                    self.index.clear();
                    self.tokens.clear();
                }
                self.index.insert(value.to_owned(), self.tokens.len());
                self.tokens.push(salted_hash(salt, value));
                self.tokens.len() - 1
            }
        };
        self.tokens.get(at).map_or("", String::as_str)
    }
}

/// A set of attribute keys from the config.
///
/// Why not just a `HashSet`: a policy names a handful of keys, and every
/// attribute key of every event is looked up; comparing it with a few
/// keys costs less than hashing it (SipHash, in the sandbox). Many keys
/// still go in a hash set.
#[derive(Debug)]
enum KeySet {
    /// At most [`KeySet::FEW`] keys, compared one by one.
    Few(Vec<String>),
    /// More keys.
    Many(HashSet<String>),
}

impl KeySet {
    const FEW: usize = 8;

    fn new(mut keys: Vec<String>) -> Self {
        keys.sort_unstable();
        keys.dedup();
        if keys.len() <= Self::FEW {
            KeySet::Few(keys)
        } else {
            KeySet::Many(keys.into_iter().collect())
        }
    }

    fn contains(&self, key: &str) -> bool {
        match self {
            KeySet::Few(keys) => keys.iter().any(|k| k == key),
            KeySet::Many(keys) => keys.contains(key),
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            KeySet::Few(keys) => keys.is_empty(),
            KeySet::Many(keys) => keys.is_empty(),
        }
    }

    fn iter(&self) -> Box<dyn Iterator<Item = &String> + '_> {
        match self {
            KeySet::Few(keys) => Box::new(keys.iter()),
            KeySet::Many(keys) => Box::new(keys.iter()),
        }
    }
}

/// One `block_sources` item: an exact source, or a prefix (`item*`).
#[derive(Debug, PartialEq)]
enum Block {
    Exact(String),
    Prefix(String),
}

/// The parsed config of the privacy policy.
#[derive(Debug)]
pub struct Policy {
    drop_keys: KeySet,
    hash_keys: KeySet,
    hash_source: bool,
    salt: String,
    blocks: Vec<Block>,
    cache: HashCache,
}

impl Policy {
    /// Parses and checks the config (see README.md).
    pub fn from_config(config: &Config) -> Result<Self, InitError> {
        let drop_keys = KeySet::new(config.list("drop_keys"));
        let hash_keys = KeySet::new(config.list("hash_keys"));
        let hash_source = config.bool("hash_source", false)?;
        let salt = config.get("salt").unwrap_or_default().to_owned();
        if salt.is_empty() && (!hash_keys.is_empty() || hash_source) {
            return Err(InitError::for_key(
                "salt",
                "salt must be set when hash_keys or hash_source is used",
            ));
        }
        let blocks = config
            .list("block_sources")
            .into_iter()
            .map(|item| match item.strip_suffix('*') {
                Some(prefix) => Block::Prefix(prefix.to_owned()),
                None => Block::Exact(item),
            })
            .collect();
        Ok(Policy {
            drop_keys,
            hash_keys,
            hash_source,
            salt,
            blocks,
            cache: HashCache::default(),
        })
    }

    /// How many hashes are cached (for tests).
    #[cfg(test)]
    pub(crate) fn cached(&self) -> usize {
        self.cache.index.len()
    }

    /// True when events from `source` must not be shipped at all.
    fn blocked(&self, source: &str) -> bool {
        self.blocks.iter().any(|block| match block {
            Block::Exact(s) => s == source,
            Block::Prefix(p) => source.starts_with(p.as_str()),
        })
    }

    /// The decision for one event: Drop for a blocked source, Keep when the
    /// policy changes nothing, otherwise Rewrite with the redacted event.
    pub fn apply(&mut self, mut event: Event) -> Action {
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
                for attr in &mut event.attributes {
                    if self.hash_keys.contains(&attr.key) {
                        // A string is hashed as itself, without a copy.
                        let token = match &attr.value {
                            AttrValue::Str(text) => self.cache.get(&self.salt, text),
                            other => self.cache.get(&self.salt, &other.to_string()),
                        };
                        attr.value = AttrValue::Str(token.to_owned());
                        changed = true;
                    }
                }
            }
            if let Some(body) = event.body.as_deref().and_then(|b| self.redact_body(b)) {
                event.body = Some(body);
                changed = true;
            }
        }
        if self.hash_source {
            event.source = self.cache.get(&self.salt, &event.source).to_owned();
            changed = true;
        }
        if changed {
            Action::Rewrite(event)
        } else {
            Action::Keep
        }
    }

    /// [`Policy::apply`] on an event read in place: the same outcome, said
    /// as an edit of the event (removals by position, masks set by key),
    /// without copying the event or diffing a rewrite against it.
    pub fn apply_view(&mut self, event: &EventRef<'_>) -> Redaction {
        if self.blocked(event.source()) {
            return Redaction::Drop;
        }
        let mut edit = Edit::new();
        if !self.drop_keys.is_empty() || !self.hash_keys.is_empty() {
            for (i, (key, value)) in event.attributes().enumerate() {
                if self.drop_keys.contains(key) {
                    edit.remove_attr(i);
                } else if self.hash_keys.contains(key) {
                    // A set names its attribute by key, so a key that
                    // repeats (the contract forbids it; a decoder may not
                    // care) would leave its second value unmasked: such an
                    // event takes the owned path, which rewrites it whole.
                    // (A scan, not a set: no allocation per event, and the
                    // host caps an event at 256 attributes.)
                    if event.attributes().take(i).any(|(k, _)| k == key) {
                        return Redaction::from(self.apply(event.to_event()));
                    }
                    let token = match value {
                        AttrRef::Str(text) => self.cache.get(&self.salt, text),
                        other => self.cache.get(&self.salt, &other.to_string()),
                    };
                    if value != AttrRef::Str(token) {
                        edit.set_attr(key, token);
                    }
                }
            }
            if let Some(body) = event.body().and_then(|b| self.redact_body(b))
                && Some(body.as_str()) != event.body()
            {
                edit.set_body(Some(&body));
            }
        }
        if self.hash_source {
            let token = self.cache.get(&self.salt, event.source());
            if token != event.source() {
                edit.set_source(token);
            }
        }
        if edit.is_empty() {
            Redaction::Keep
        } else {
            Redaction::Edit(edit)
        }
    }

    /// The body with drop keys removed and hash keys masked at its top level,
    /// or `None` when the body is not a JSON object or nothing changed.
    /// Untouched keys keep their order (serde_json `preserve_order`).
    fn redact_body(&mut self, body: &str) -> Option<String> {
        let Ok(Value::Object(mut map)) = serde_json::from_str::<Value>(body) else {
            return None;
        };
        let mut changed = false;
        for key in self.drop_keys.iter() {
            changed |= map.shift_remove(key).is_some();
        }
        for (key, value) in map.iter_mut() {
            if self.hash_keys.contains(key) {
                // The text hashed: a string's contents, otherwise its compact
                // JSON text (`42`, `true`, `null`, `{"a":1}`).
                let token = match &*value {
                    Value::String(text) => self.cache.get(&self.salt, text),
                    other => self.cache.get(&self.salt, &other.to_string()),
                };
                *value = Value::String(token.to_owned());
                changed = true;
            }
        }
        if !changed {
            return None;
        }
        serde_json::to_string(&Value::Object(map)).ok()
    }
}
