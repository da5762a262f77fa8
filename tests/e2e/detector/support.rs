//! Readings written to the file input, a host config with one detector,
//! and what the file transport delivered, grouped.

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use crate::pipeline_support::{
    Host, Scenario, config_with_stages, decoder_line, delivered, file_transport, wait_for,
};

/// The detector's deadline in these tests (a busy debug build; deadlines
/// themselves are tested in `plugin_runtime`).
const DEADLINE_MS: u64 = 5000;

/// Milliseconds since the Unix epoch now: readings carry the wall clock
/// so a time window and the host's ticks agree.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Appends one JSON line per reading `(device, metric, value, ts_ms)`.
pub fn append(path: &Path, readings: &[(&str, &str, f64, u64)]) {
    let mut text = String::new();
    for (device, metric, value, ts) in readings {
        text.push_str(&format!(
            "{{\"device\":\"{device}\",\"metric\":\"{metric}\",\"value\":{value:?},\"ts\":{ts}}}\n"
        ));
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
}

/// Appends readings and waits until the host has committed them (so each
/// call is its own batch, or a known set of batches).
pub fn feed(s: &Scenario, host: &Host, readings: &[(&str, &str, f64, u64)]) {
    append(&s.input, readings);
    let len = std::fs::metadata(&s.input).unwrap().len();
    wait_for("the readings committed", Duration::from_secs(60), || {
        host.caught_up_to(len)
    });
}

/// Writes a config: the file input through the jsonl decoder, one
/// detector named `thresholds` running `plugin` with `config` (the inside
/// of an inline TOML table), its namespace bounded at `kv_max_bytes`, and
/// the file transport to `out.jsonl`.
pub fn write_config(s: &Scenario, plugin: &Path, config: &str, kv_max_bytes: u64) {
    let input = format!(
        "[[input]]\ntype = \"file\"\nname = \"sensors\"\npath = \"{}\"\n{}",
        s.input.display(),
        decoder_line()
    );
    let stages = format!(
        "[stages]\nkv_max_bytes = {kv_max_bytes}\n\n[[stages.detect]]\nname = \"thresholds\"\nplugin = \"{}\"\nlimits = {{ deadline_ms = {DEADLINE_MS} }}\nconfig = {{ {config} }}",
        plugin.display()
    );
    let tail = file_transport(&s.path("out.jsonl"));
    std::fs::write(
        &s.config,
        config_with_stages(&s.data, &input, &stages, &tail),
    )
    .unwrap();
}

/// Delivered events, each id once (delivery is at least once), in order.
pub fn unique(s: &Scenario) -> Vec<serde_json::Value> {
    let mut seen = std::collections::HashSet::new();
    delivered(&s.path("out.jsonl"))
        .into_iter()
        .filter(|e| seen.insert(e["id"].as_str().unwrap_or_default().to_string()))
        .collect()
}

/// How many delivered events (each id once) have each `kind/rule`
/// (`kind` alone for events without a `rule` attribute).
pub fn counts(s: &Scenario) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for e in unique(s) {
        let kind = e["kind"].as_str().unwrap_or_default();
        let key = match e["attributes"]["rule"].as_str() {
            Some(rule) => format!("{kind}/{rule}"),
            None => kind.to_string(),
        };
        *out.entry(key).or_default() += 1;
    }
    out
}

/// Waits until the delivered events (each id once) number `n`.
pub fn wait_delivered(s: &Scenario, n: usize) {
    wait_for(
        &format!("{n} events delivered"),
        Duration::from_secs(60),
        || unique(s).len() >= n,
    );
}
