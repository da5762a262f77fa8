//! Shared helpers: bench-format input lines, a config writer, the host as a
//! child process, and waiting on a condition with a deadline.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use halyard_test_components as components;

/// Appends `n` lines in the peer-benchmark format (`shared/bench/sensor-lines.py`),
/// numbered from `start`; returns how many have a negative value.
pub fn write_sensor_lines(path: &Path, start: u64, n: u64) -> u64 {
    use std::io::Write;
    let operators = ["alice", "bob", "carol", "dave"];
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    let mut negative = 0;
    let mut text = String::new();
    for i in start..start + n {
        let value = (((i * 37) % 1000) as f64 - 100.0) / 10.0;
        negative += u64::from(value < 0.0);
        text.push_str(&format!(
            "{{\"device\":\"d{}\",\"metric\":\"temp\",\"value\":{value:?},\"ts\":{},\"operator\":\"{}\"}}\n",
            i % 50,
            1_700_000_000_000u64 + i,
            operators[(i % 4) as usize]
        ));
    }
    file.write_all(text.as_bytes()).unwrap();
    negative
}

/// Plugin call deadline in these tests. The deadline is wall-clock time, and
/// a busy 2-core CI machine running a debug build can stretch a 1000-event
/// call past the 100 ms default; deadline enforcement itself is tested in
/// `plugin_runtime`. Here a spurious trap would dead-letter a batch and spoil
/// the exact counts the tests are about.
const PLUGIN_DEADLINE_MS: u64 = 5000;

/// A host config: one file input through the three example stages.
pub fn config(data_dir: &Path, input: &Path, transport: &str) -> String {
    config_with_input(data_dir, &file_input(input), transport)
}

/// The `[[input]]` section of a file input `sensors` following `input`.
pub fn file_input(input: &Path) -> String {
    format!(
        "[[input]]\ntype = \"file\"\nname = \"sensors\"\npath = \"{}\"\n{}",
        input.display(),
        decoder_line()
    )
}

/// The `decoder = {…}` line for an input: the jsonl decoder with the tests'
/// deadline.
pub fn decoder_line() -> String {
    format!(
        "decoder = {{ plugin = \"{}\", limits = {{ deadline_ms = {PLUGIN_DEADLINE_MS} }} }}\n",
        components::JSONL_DECODER
    )
}

/// A host config with the given `[[input]]` section, the three example
/// stages, fast retries, and `tail` (the `[transport]`, plus any other
/// tables) at the end.
pub fn config_with_input(data_dir: &Path, input: &str, tail: &str) -> String {
    config_with_stages(data_dir, input, &example_stages(), tail)
}

/// Like [`config_with_input`] with the given `[[stages.…]]` tables (none:
/// decoded events go straight to the buffer).
pub fn config_with_stages(data_dir: &Path, input: &str, stages: &str, tail: &str) -> String {
    format!(
        r#"
[host]
id = "e2e"
data_dir = "{data}"

{input}

{stages}

[batch]
max_events = 250
max_age_ms = 100

[retry]
initial_ms = 20
max_ms = 200

[breaker]
recovery_timeout_ms = 200

[shutdown]
timeout_ms = 2000

{tail}
"#,
        data = data_dir.display(),
    )
}

/// The three example stages (range validator, redacting privacy, fraction
/// sampler) with the tests' deadline.
fn example_stages() -> String {
    format!(
        r#"[[stages.validate]]
plugin = "{validator}"
limits = {{ deadline_ms = {deadline} }}
config = {{ "min.temp" = 0 }}

[[stages.privacy]]
plugin = "{privacy}"
limits = {{ deadline_ms = {deadline} }}
config = {{ hash_keys = "operator", salt = "e2e" }}

[[stages.sample]]
plugin = "{sampler}"
limits = {{ deadline_ms = {deadline} }}
config = {{ fraction = 1 }}"#,
        validator = components::RANGE_VALIDATOR,
        privacy = components::REDACT_PRIVACY,
        sampler = components::FRACTION_SAMPLER,
        deadline = PLUGIN_DEADLINE_MS,
    )
}

/// The host running as a child process; killed if the test panics.
pub struct Host {
    child: Child,
    /// Where its log goes.
    pub log: PathBuf,
}

impl Host {
    pub fn start(config_path: &Path) -> Host {
        Host::start_with_env(config_path, &[])
    }

    /// Like [`Host::start`], with extra environment variables.
    pub fn start_with_env(config_path: &Path, env: &[(&str, &str)]) -> Host {
        let log = config_path.with_extension(format!("log{}", rand_suffix()));
        let child = Command::new(env!("CARGO_BIN_EXE_halyard"))
            .args(["run", "--config", config_path.to_str().unwrap()])
            .env("RUST_LOG", "info,halyard::run::file_input=debug")
            .env("HALYARD_DEV_MODE", "1")
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start halyard");
        Host { child, log }
    }

    /// Whether the host's file input logged that everything up to `offset`
    /// is committed.
    pub fn caught_up_to(&self, offset: u64) -> bool {
        std::fs::read_to_string(&self.log).is_ok_and(|log| {
            log.lines().any(|l| {
                l.contains("caught up")
                    && (l.contains(&format!("offset={offset} "))
                        || l.contains(&format!("\"offset\":{offset},"))
                        || l.contains(&format!("\"offset\":{offset}}}")))
            })
        })
    }

    /// The host's process id.
    #[allow(dead_code)] // Used by the http input's tests, which share this file.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn stop(mut self) -> String {
        signal(self.child.id(), "-TERM");
        let status = wait_exit(&mut self.child, Duration::from_secs(30));
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        assert!(status.success(), "halyard exited with {status}: {log}");
        log
    }

    /// SIGHUP: the host re-reads its config and re-checks every plugin.
    #[allow(dead_code)] // Used by the reload tests, which share this file.
    pub fn hup(&self) {
        signal(self.child.id(), "-HUP");
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(mut self) {
        signal(self.child.id(), "-KILL");
        wait_exit(&mut self.child, Duration::from_secs(30));
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0)
}

fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {sig} {pid}");
}

fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    wait_exit_or_kill(child, limit, String::new)
}

/// Waits for `child` to exit within `limit`; past it, kills it and panics
/// with `context()` (e.g. its log).
pub fn wait_exit_or_kill(
    child: &mut Child,
    limit: Duration,
    context: impl FnOnce() -> String,
) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("halyard did not exit within {limit:?}: {}", context());
        }
        std::thread::park_timeout(Duration::from_millis(20));
    }
}

/// Waits until `check` returns true, or panics with `what` at the deadline.
pub fn wait_for(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::park_timeout(Duration::from_millis(25));
    }
}

/// Events in the batches a file transport wrote, in order.
pub fn delivered(out: &Path) -> Vec<serde_json::Value> {
    let Ok(text) = std::fs::read_to_string(out) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .flat_map(|batch| batch["events"].as_array().cloned().unwrap_or_default())
        .collect()
}

/// Dead letters in the host's buffer file, with their reasons.
pub fn dead_letters(data_dir: &Path) -> Vec<String> {
    dead_letter_rows(data_dir)
        .into_iter()
        .map(|d| d.reason)
        .collect()
}

/// Dead letters in the host's buffer file, whole (id, payload, reason).
pub fn dead_letter_rows(data_dir: &Path) -> Vec<halyard_buffer::DeadLetter> {
    let config = halyard_buffer::BufferConfig::new(data_dir.join("buffer.db"), 1 << 30);
    let (buffer, _) = halyard_buffer::Buffer::open(config).expect("open buffer");
    buffer.dead_letters(100_000).expect("dead letters")
}

/// One test's files: an input, a data dir and a config, in a temp dir.
pub struct Scenario {
    /// Keeps the files alive for the test.
    pub dir: tempfile::TempDir,
    /// The file input.
    pub input: PathBuf,
    /// The host's `data_dir`.
    pub data: PathBuf,
    /// The config file.
    pub config: PathBuf,
}

impl Scenario {
    pub fn new() -> Scenario {
        let dir = tempfile::tempdir().unwrap();
        let path = |p: &str| dir.path().join(p);
        Scenario {
            input: path("in.jsonl"),
            data: path("data"),
            config: path("halyard.toml"),
            dir,
        }
    }

    /// A path inside the scenario's temp dir.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes the config with the given `[transport]` section.
    pub fn write_config(&self, transport: &str) {
        self.write_config_with(transport, &[]);
    }

    /// Writes the config with `[transport]`, replacing text in the base
    /// config first (e.g. a different breaker or buffer setting).
    pub fn write_config_with(&self, transport: &str, replace: &[(&str, &str)]) {
        let mut text = config(&self.data, &self.input, transport);
        for (from, to) in replace {
            assert!(text.contains(from), "base config has no `{from}`");
            text = text.replace(from, to);
        }
        std::fs::write(&self.config, text).unwrap();
    }
}

/// A `[transport]` section writing batches to `out`.
pub fn file_transport(out: &Path) -> String {
    format!("[transport]\ntype = \"file\"\npath = \"{}\"", out.display())
}

/// A `[transport]` section posting to `url`, with an optional API key.
pub fn http_transport(url: &str, key: Option<&str>) -> String {
    let key = key
        .map(|k| format!("api_key = \"{k}\"\n"))
        .unwrap_or_default();
    format!("[transport]\ntype = \"http\"\nurl = \"{url}\"\n{key}")
}

/// The counters of the host's exit `totals` log line: a JSON log object
/// (the default format) or `key=value` pairs (the human format).
pub fn totals(log: &str) -> std::collections::HashMap<String, u64> {
    let json = log.lines().rev().find_map(|l| {
        let v: serde_json::Value = serde_json::from_str(l).ok()?;
        (v["message"] == "totals").then_some(v)
    });
    if let Some(serde_json::Value::Object(fields)) = json {
        return fields
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.as_u64()?)))
            .collect();
    }
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains(" totals "))
        .unwrap_or("");
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
        .collect()
}

/// Waits until the file input of `host` has committed the whole input file
/// (its position lives in the buffer, which the running host holds locked,
/// so this watches the host's debug log instead).
pub fn wait_until_ingested(s: &Scenario, host: &Host) {
    let len = std::fs::metadata(&s.input).unwrap().len();
    wait_for("the whole file committed", Duration::from_secs(60), || {
        host.caught_up_to(len)
    });
}
