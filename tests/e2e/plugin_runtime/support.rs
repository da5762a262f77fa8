//! Shared helpers: a runtime with a private compile cache, loading with
//! config, and event constructors.

use std::sync::Arc;

use halyard::plugin::{
    AttrValue, Attribute, Event, LoadError, Plugin, PluginKind, PluginOptions, Runtime,
};

/// A runtime whose compile cache lives in a temporary directory.
pub struct TestRuntime {
    pub runtime: Runtime,
    /// Keeps the cache directory alive as long as the runtime.
    _cache_dir: tempfile::TempDir,
}

pub fn runtime() -> TestRuntime {
    let cache_dir = tempfile::tempdir().expect("tempdir");
    let runtime = Runtime::new(Some(cache_dir.path().to_path_buf())).expect("runtime");
    TestRuntime {
        runtime,
        _cache_dir: cache_dir,
    }
}

impl TestRuntime {
    pub fn try_load(
        &self,
        path: &str,
        kind: PluginKind,
        config: &[(&str, &str)],
    ) -> Result<Arc<Plugin>, LoadError> {
        self.try_load_with(path, kind, options(config))
    }

    pub fn try_load_with(
        &self,
        path: &str,
        kind: PluginKind,
        options: PluginOptions,
    ) -> Result<Arc<Plugin>, LoadError> {
        self.runtime.load(path.as_ref(), Some(kind), options)
    }

    pub fn load(&self, path: &str, kind: PluginKind, config: &[(&str, &str)]) -> Arc<Plugin> {
        self.try_load(path, kind, config)
            .unwrap_or_else(|e| panic!("loading {path}: {e}"))
    }
}

/// Options with `config` and a 5 s deadline: tests that are not about the
/// deadline must not fail because a shared 2-core machine is busy.
pub fn options(config: &[(&str, &str)]) -> PluginOptions {
    let mut options = strict_options(config);
    options.limits.call_deadline = std::time::Duration::from_secs(5);
    options
}

/// Options with `config` and the default limits (100 ms deadline).
pub fn strict_options(config: &[(&str, &str)]) -> PluginOptions {
    PluginOptions {
        config: config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..PluginOptions::default()
    }
}

/// Now, in nanoseconds since the epoch.
pub fn now_ns() -> i64 {
    halyard::plugin::host::wall_clock_ns()
}

/// A reading from `source` of `kind` with `value`, timestamped now.
pub fn reading(source: &str, kind: &str, value: Option<f64>) -> Event {
    Event {
        id: halyard::event::new_id(),
        time_ns: now_ns(),
        source: source.to_string(),
        kind: kind.to_string(),
        value,
        unit: None,
        attributes: Vec::new(),
        body: None,
    }
}

/// `event` with a string attribute added.
pub fn with_attr(mut event: Event, key: &str, value: &str) -> Event {
    event.attributes.push(Attribute {
        key: key.to_string(),
        value: AttrValue::Str(value.to_string()),
    });
    event
}

/// The string value of attribute `key`, if present and a string.
pub fn attr<'a>(event: &'a Event, key: &str) -> Option<&'a str> {
    event
        .attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| match &a.value {
            AttrValue::Str(s) => Some(s.as_str()),
            _ => None,
        })
}
