//! The plugin's configuration, with typed accessors.
//!
//! Why: the host hands a plugin its config as string key/value pairs. Every
//! plugin needs the same chores (parse numbers, split lists, read booleans,
//! report a bad value naming the key), so they live here once.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::ops::Bound;
use std::str::FromStr;

use crate::InitError;
use crate::bindings::shared::halyard::plugin::config as host;

/// The plugin's config: the key/value pairs the host config gives this
/// plugin, sorted by key. Built by the SDK before `init` and passed to the
/// plugin's `init`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Config {
    entries: BTreeMap<String, String>,
}

impl Config {
    /// Reads the whole config from the host (`config.entries`). The export
    /// macros call this; plugins receive the result in `init`.
    pub fn from_host() -> Self {
        Self::from_pairs(host::entries())
    }

    /// Builds a config from pairs, so plugin logic can be unit-tested
    /// natively without a host. A later duplicate key wins.
    pub fn from_pairs<I, K, V>(pairs: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        Config {
            entries: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// The raw value of `key`, or `None` if it is not set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entries.get(key).map(String::as_str)
    }

    /// Parses `key` with [`FromStr`] after trimming whitespace. An unset or
    /// blank value is `Ok(None)`; a value that does not parse is an
    /// [`InitError`] naming the key and the bad value, ready to return from
    /// `init`.
    pub fn parse<T>(&self, key: &str) -> Result<Option<T>, InitError>
    where
        T: FromStr,
        T::Err: Display,
    {
        let Some(raw) = self.get(key) else {
            return Ok(None);
        };
        let value = raw.trim();
        if value.is_empty() {
            return Ok(None);
        }
        value.parse::<T>().map(Some).map_err(|err| {
            InitError::for_key(key, format!("invalid value {raw:?} for {key}: {err}"))
        })
    }

    /// Like [`Config::parse`], with `default` when the key is unset or blank.
    pub fn parse_or<T>(&self, key: &str, default: T) -> Result<T, InitError>
    where
        T: FromStr,
        T::Err: Display,
    {
        Ok(self.parse(key)?.unwrap_or(default))
    }

    /// A comma-separated list: items are trimmed and empty items dropped, so
    /// `"a, b,,c "` is `["a", "b", "c"]`. Unset is an empty list.
    pub fn list(&self, key: &str) -> Vec<String> {
        self.get(key)
            .map(|raw| {
                raw.split(',')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A boolean: `true/false`, `yes/no`, `on/off` or `1/0` (any case).
    /// Unset or blank is `default`; anything else is an [`InitError`].
    pub fn bool(&self, key: &str, default: bool) -> Result<bool, InitError> {
        let Some(raw) = self.get(key) else {
            return Ok(default);
        };
        match raw.trim().to_ascii_lowercase().as_str() {
            "" => Ok(default),
            "true" | "yes" | "on" | "1" => Ok(true),
            "false" | "no" | "off" | "0" => Ok(false),
            _ => Err(InitError::for_key(
                key,
                format!("invalid value {raw:?} for {key}: expected true or false"),
            )),
        }
    }

    /// Every key starting with `prefix`, as `(rest of the key, value)`, in key
    /// order. Why: per-item settings such as `min.temp` and `min.humidity`
    /// are read with `keys_with_prefix("min.")`.
    pub fn keys_with_prefix<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.entries
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(move |(k, _)| k.starts_with(prefix))
            .map(move |(k, v)| (&k[prefix.len()..], v.as_str()))
    }

    /// Every `(key, value)` pair in key order, e.g. to log the config.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// True when the plugin was given no config at all.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Config {
        Config::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn parse_reads_trims_and_reports_the_key() {
        let c = config(&[("n", " 5 "), ("bad", "five"), ("blank", "  ")]);
        assert_eq!(c.parse::<u32>("n"), Ok(Some(5)));
        assert_eq!(c.parse::<u32>("missing"), Ok(None));
        assert_eq!(c.parse::<u32>("blank"), Ok(None));
        assert_eq!(c.parse_or::<u32>("missing", 7), Ok(7));
        let err = c.parse::<u32>("bad").unwrap_err();
        assert_eq!(err.key.as_deref(), Some("bad"));
        assert!(err.message.contains("\"five\""), "{}", err.message);
    }

    #[test]
    fn list_trims_and_drops_empty_items() {
        let c = config(&[("l", " a, b,,c ,")]);
        assert_eq!(c.list("l"), ["a", "b", "c"]);
        assert!(c.list("missing").is_empty());
    }

    #[test]
    fn bool_accepts_common_spellings() {
        let c = config(&[("a", "TRUE"), ("b", "off"), ("c", "maybe")]);
        assert_eq!(c.bool("a", false), Ok(true));
        assert_eq!(c.bool("b", true), Ok(false));
        assert_eq!(c.bool("missing", true), Ok(true));
        assert_eq!(c.bool("c", true).unwrap_err().key.as_deref(), Some("c"));
    }

    #[test]
    fn keys_with_prefix_yields_suffixes_in_order() {
        let c = config(&[
            ("min", "0"),
            ("min.temp", "1"),
            ("min.hum", "2"),
            ("mio", "x"),
        ]);
        let got: Vec<_> = c.keys_with_prefix("min.").collect();
        assert_eq!(got, [("hum", "2"), ("temp", "1")]);
        assert_eq!(c.iter().count(), 4);
    }
}
