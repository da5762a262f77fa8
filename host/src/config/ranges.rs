//! Range checks for numbers the types cannot bound: a value that parses
//! but would wrap around (`memory_mb << 20`), overflow a clock
//! (`Instant + u64::MAX ms` panics), or make no sense (`deadline_ms = 0`
//! traps every call at once) is refused here, naming the key, instead of
//! misbehaving later.

use super::{HostConfig, InputConfig, PluginRef, TransportConfig};

/// The longest per-call deadline a plugin may be given. A call holds its
/// pipeline thread for that long; past a minute the host cannot be said to
/// answer at all.
pub const MAX_DEADLINE_MS: u64 = 60_000;
/// The largest per-event part of a call's deadline, in µs (10 ms an event;
/// a call's whole deadline stays at most [`MAX_DEADLINE_MS`] anyway).
pub const MAX_DEADLINE_PER_EVENT_US: u64 = 10_000;

/// The largest per-plugin memory cap, in MiB: 4 GiB (a 32-bit wasm memory
/// cannot grow past it), and never more than `usize` holds in bytes, so
/// `memory_mb << 20` cannot wrap on a 32-bit host.
pub const MAX_MEMORY_MB: usize = {
    let fits = usize::MAX >> 20;
    if fits < 4096 { fits } else { 4096 }
};

/// The most instances or tables a plugin's store may be allowed.
pub const MAX_STORE_COUNT: usize = 100_000;

/// The most linear memories: each reserves gigabytes of address space, so
/// a large count could exhaust the host's.
pub const MAX_MEMORIES: usize = 1_000;

/// The most host resources (wasmtime's own ceiling for a resource table).
pub const MAX_RESOURCES: usize = 1_000_000;

/// The largest `[plugins] max_file_mb`: a 1 GiB component would take
/// minutes to compile on the devices Halyard runs on.
pub const MAX_FILE_MB: u64 = 1024;

/// The largest `[buffer] max_mb` (1 TiB), far below where `<< 20` wraps.
pub const MAX_BUFFER_MB: u64 = 1 << 20;

/// The shortest `max_line_bytes` of a file input: below this ordinary log
/// lines would be refused.
pub const MIN_LINE_BYTES: u64 = 64;

/// The longest `max_line_bytes` (16 MiB): one line is one frame, and a
/// decoder's output for it must fit the plugin output cap (16 MiB) or
/// the whole decode call traps.
pub const MAX_LINE_BYTES: u64 = 16 << 20;

/// The longest duration in milliseconds any `_ms` key takes (7 days):
/// larger values overflow the clock arithmetic of timers.
pub const MAX_MS: u64 = 7 * 24 * 3600 * 1000;

/// The longest duration in seconds any `_s` key takes (365 days).
pub const MAX_S: u64 = 365 * 24 * 3600;

/// The most pipeline workers: each holds an instance of every plugin, and
/// more threads than cores only add contention.
pub const MAX_WORKERS: u64 = 256;

/// The shortest interval of a `system` input: reading every mount and
/// interface more often than this costs more than it tells.
pub const MIN_SYSTEM_MS: u64 = 100;

/// The most rows `[audit] max_rows` may keep (at most ~4 KiB each).
pub const MAX_AUDIT_ROWS: u64 = 1_000_000;

/// The first number out of range: the dotted key and what is wrong.
pub(super) fn check(config: &HostConfig) -> Option<(String, String)> {
    for (key, plugin) in plugin_refs(config) {
        if let Some(problem) = check_plugin_limits(&key, plugin) {
            return Some(problem);
        }
    }
    let between = |key: String, value: u64, min: u64, max: u64| {
        (!(min..=max).contains(&value))
            .then(|| (key, format!("must be between {min} and {max} (is {value})")))
    };
    let mut checks: Vec<(String, u64, u64, u64)> = vec![
        (
            "plugins.max_file_mb".into(),
            config.plugins.max_file_mb,
            1,
            MAX_FILE_MB,
        ),
        (
            "buffer.max_mb".into(),
            config.buffer.max_mb,
            1,
            MAX_BUFFER_MB,
        ),
        (
            "buffer.dead_letter_max_mb".into(),
            config.buffer.dead_letter_max_mb,
            1,
            MAX_BUFFER_MB,
        ),
        (
            "buffer.dead_letter_max".into(),
            config.buffer.dead_letter_max,
            1,
            u64::MAX,
        ),
    ];
    checks.push((
        "audit.max_rows".into(),
        config.audit.max_rows,
        1,
        MAX_AUDIT_ROWS,
    ));
    if let Some(workers) = config.pipeline.workers {
        checks.push(("pipeline.workers".into(), workers, 1, MAX_WORKERS));
    }
    let ms = [
        ("batch.max_age_ms", config.batch.max_age_ms),
        ("retry.initial_ms", config.retry.initial_ms),
        ("retry.max_ms", config.retry.max_ms),
        (
            "breaker.recovery_timeout_ms",
            config.breaker.recovery_timeout_ms,
        ),
        ("shutdown.timeout_ms", config.shutdown.timeout_ms),
        ("health.stall_ms", config.health.stall_ms),
        (
            "health.damage_degraded_ms",
            config.health.damage_degraded_ms,
        ),
        ("reload.debounce_ms", config.reload.debounce_ms),
        (
            "reload.backoff_initial_ms",
            config.reload.backoff_initial_ms,
        ),
        ("reload.backoff_max_ms", config.reload.backoff_max_ms),
        ("rollout.timeout_ms", config.rollout.timeout_ms),
    ];
    checks.extend(ms.into_iter().map(|(k, v)| (k.to_string(), v, 0, MAX_MS)));
    let s = [
        (
            "stages.quarantine_window_s",
            config.stages.quarantine_window_s,
        ),
        ("reload.rollback_window_s", config.reload.rollback_window_s),
        ("rollout.interval_s", config.rollout.interval_s),
    ];
    checks.extend(s.into_iter().map(|(k, v)| (k.to_string(), v, 0, MAX_S)));
    for (i, t) in config.transports.list.iter().enumerate() {
        let key = |field: &str| config.transports.key(i, field);
        if let TransportConfig::Http { timeout_ms, .. } = &t.sink {
            checks.push((key("timeout_ms"), *timeout_ms, 1, MAX_MS));
        }
        if let Some(batch) = &t.batch {
            checks.push((key("batch.max_age_ms"), batch.max_age_ms, 0, MAX_MS));
        }
        if let Some(retry) = &t.retry {
            checks.push((key("retry.initial_ms"), retry.initial_ms, 0, MAX_MS));
            checks.push((key("retry.max_ms"), retry.max_ms, 0, MAX_MS));
        }
        if let Some(breaker) = &t.breaker {
            checks.push((
                key("breaker.recovery_timeout_ms"),
                breaker.recovery_timeout_ms,
                0,
                MAX_MS,
            ));
        }
    }
    for (i, input) in config.inputs.iter().enumerate() {
        if let InputConfig::Source { interval_ms, .. } = input {
            checks.push((format!("input[{i}].interval_ms"), *interval_ms, 1, MAX_MS));
        }
        if let InputConfig::File { max_line_bytes, .. } = input {
            checks.push((
                format!("input[{i}].max_line_bytes"),
                *max_line_bytes,
                MIN_LINE_BYTES,
                MAX_LINE_BYTES,
            ));
        }
        if let InputConfig::System { interval_ms, .. } = input {
            checks.push((
                format!("input[{i}].interval_ms"),
                *interval_ms,
                MIN_SYSTEM_MS,
                MAX_MS,
            ));
        }
        if let InputConfig::Mqtt(mqtt) = input {
            for (key, value, min, max) in mqtt.ranges() {
                checks.push((format!("input[{i}].{key}"), value, min, max));
            }
        }
    }
    checks
        .into_iter()
        .find_map(|(key, value, min, max)| between(key, value, min, max))
}

/// `deadline_ms` in 1..=[`MAX_DEADLINE_MS`], `deadline_per_event_us` in
/// 0..=[`MAX_DEADLINE_PER_EVENT_US`], `memory_mb` in 1..=[`MAX_MEMORY_MB`].
fn check_plugin_limits(key: &str, plugin: &PluginRef) -> Option<(String, String)> {
    if let Some(us) = plugin.limits.deadline_per_event_us
        && us > MAX_DEADLINE_PER_EVENT_US
    {
        return Some((
            format!("{key}.limits.deadline_per_event_us"),
            format!("must be between 0 and {MAX_DEADLINE_PER_EVENT_US} microseconds (is {us})"),
        ));
    }
    if let Some(ms) = plugin.limits.deadline_ms
        && !(1..=MAX_DEADLINE_MS).contains(&ms)
    {
        return Some((
            format!("{key}.limits.deadline_ms"),
            format!("must be between 1 and {MAX_DEADLINE_MS} milliseconds (is {ms})"),
        ));
    }
    if let Some(mb) = plugin.limits.memory_mb
        && !(1..=MAX_MEMORY_MB).contains(&mb)
    {
        return Some((
            format!("{key}.limits.memory_mb"),
            format!("must be between 1 and {MAX_MEMORY_MB} MiB (is {mb})"),
        ));
    }
    let counts = [
        (
            "max_instances",
            plugin.limits.max_instances,
            1,
            MAX_STORE_COUNT,
        ),
        ("max_memories", plugin.limits.max_memories, 1, MAX_MEMORIES),
        ("max_tables", plugin.limits.max_tables, 0, MAX_STORE_COUNT),
        (
            "max_resources",
            plugin.limits.max_resources,
            1,
            MAX_RESOURCES,
        ),
    ];
    for (name, value, min, max) in counts {
        if let Some(n) = value
            && !(min..=max).contains(&n)
        {
            return Some((
                format!("{key}.limits.{name}"),
                format!("must be between {min} and {max} (is {n})"),
            ));
        }
    }
    None
}

/// Every plugin entry with the dotted key it sits at, in file order.
fn plugin_refs(config: &HostConfig) -> Vec<(String, &PluginRef)> {
    let mut out = Vec::new();
    for (i, input) in config.inputs.iter().enumerate() {
        if let Some(plugin) = input.plugin() {
            out.push((format!("input[{i}].{}", plugin.role()), plugin.plugin()));
        }
    }
    for (chain, refs) in [
        ("validate", &config.stages.validate),
        ("detect", &config.stages.detect),
        ("privacy", &config.stages.privacy),
        ("sample", &config.stages.sample),
    ] {
        for (i, r) in refs.iter().enumerate() {
            out.push((format!("stages.{chain}[{i}]"), r));
        }
    }
    out
}
