//! Events per second end to end, and peak memory, for the whole host:
//! file input → jsonl-decoder → range-validator → redact-privacy →
//! fraction-sampler → SQLite buffer → batches → HTTP (gzip) → the real
//! receiver on loopback — once with the sandboxed example guests and once
//! with native-Rust twins of the same four stages, alternately, in the same
//! run.
//!
//! Run with `cargo bench -p halyard --bench pipeline` (1 000 000 lines, 3
//! runs of each) or add `-- --lines N --runs R`. `--modes wasm,native,none`
//! picks the modes (`none`: the native decoder and no event stages, so the
//! host's own share is visible); `--cpus 0` pins the host to those CPUs
//! with `taskset` (the receiver keeps every CPU). A mode may carry
//! suffixes: `-wN` runs it with `[pipeline] workers = N` (`--workers N` sets
//! it for every mode; unset: one worker per CPU) and `-1cpu` pins the host
//! to CPU 0, and `-p02` runs redact-privacy's policy as built against
//! contract 0.2.0 (`tests/hostile/redact-v0-2`) instead of the example's
//! 0.4.0 build, to compare the two answer shapes end to end in one run.
//! `--batch N` sets `[batch] max_events = N` and `max_bytes = N KiB`
//! (1000 when unset), `--in-flight N` its `max_in_flight`.
//! `--scaling 1` is short for
//! `--modes wasm-w1,wasm-w2,wasm-w1-1cpu,wasm-w2-1cpu`. The environment
//! variable `PIPELINE_BENCH_WRAP` puts a command before the host's (a
//! profiler: `heaptrack`, `perf record -g -o FILE`). The input is the peer
//! benchmark's `sensor-lines.py` format (generated in-process, identical
//! bytes); 10 % of the lines fail the range check, the rest are delivered.
//!
//! Each run starts the host as a child process (this same executable, in
//! child mode, calling `halyard::run::run_with` exactly as `halyard run`
//! calls `run`), so its peak RSS (`VmHWM`) is the host's alone; the
//! receiver runs in this process, on the same 2 cores, as it would on a
//! device's loopback. A run is timed from the child's start until the
//! receiver has stored every valid event (and, as the sustained rate,
//! from 10 % to 90 % of them stored); it then checks exact counts: all
//! delivered, no duplicates, nothing dropped. The compile cache is warmed
//! first, as it is on a device after the first start.

#[path = "common/host_run.rs"]
#[allow(dead_code)] // shared with the transports bench, which uses the rest
mod host_run;
#[path = "stages/input.rs"]
#[allow(dead_code)]
mod input;
#[path = "stages/native.rs"]
#[allow(dead_code)]
mod native;

use host_run::{arg, arg_text, config_text_with, cpu_time, write_input};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use halyard::pipeline::{NativeFactory, NativeStages, StagePlugin};
use halyard::plugin::{Action, CallError, Event, Frame, PluginKind, Verdict};
use halyard_receiver::{ReceiverConfig, open_stats};
use halyard_test_components::{
    FRACTION_SAMPLER, JSONL_DECODER, RANGE_VALIDATOR, REDACT_PRIVACY, REDACT_V0_2,
};

/// Set in the child's environment to the mode it runs (`wasm`/`native`).
const CHILD_MODE: &str = "HALYARD_PIPELINE_BENCH_CHILD";
/// Set in the child's environment to its config file.
const CHILD_CONFIG: &str = "HALYARD_PIPELINE_BENCH_CONFIG";
/// The longest a single run may take before the bench gives up.
const RUN_LIMIT: Duration = Duration::from_secs(600);

fn main() {
    if let Ok(mode) = std::env::var(CHILD_MODE) {
        child(&mode);
        return;
    }
    let lines = arg("--lines").unwrap_or(1_000_000);
    let runs = arg("--runs").unwrap_or(3);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let input = dir.path().join("sensors.jsonl");
    let valid = write_input(&input, lines);
    let warm = dir.path().join("warm.jsonl");
    let warm_valid = write_input(&warm, 10_000);
    let modes = match arg("--scaling") {
        Some(1) => "wasm-w1,wasm-w2,wasm-w1-1cpu,wasm-w2-1cpu".to_owned(),
        _ => arg_text("--modes").unwrap_or_else(|| "wasm,native".into()),
    };
    let modes: Vec<&str> = modes.split(',').map(str::trim).collect();
    if let Some(bad) = modes
        .iter()
        .find(|m| !["wasm", "native", "none"].contains(&base(m)))
    {
        panic!("--modes: unknown mode {bad:?} (wasm, native, none)");
    }
    let cpus = arg_text("--cpus");
    println!(
        "input: {lines} lines, {valid} valid; {runs} runs per mode; host CPUs: {}\n",
        cpus.as_deref().unwrap_or("all")
    );

    // Fill the compile cache (and page in the binary) before timing.
    measure(dir.path(), "warm-up", "wasm", &warm, warm_valid);
    let mut results: Vec<(&str, Vec<Run>)> = modes.iter().map(|m| (*m, Vec::new())).collect();
    for i in 0..runs {
        for (mode, runs) in &mut results {
            // With no stages nothing is rejected: every line is delivered.
            let expect = if base(mode) == "none" { lines } else { valid };
            let run = measure(dir.path(), &format!("{mode}-{i}"), mode, &input, expect);
            println!(
                "{mode:>6} run {i}: {:>9.0} lines/s ({:>6.0} sustained)  {:>6.2} s  \
                 peak RSS {:>5.1} MB  CPU per line: host {:>5.1} µs, receiver {:>5.1} µs",
                run.lines_per_s(lines),
                run.sustained_per_s(lines),
                run.elapsed.as_secs_f64(),
                run.peak_rss_kb as f64 / 1024.0,
                run.host_cpu.as_secs_f64() * 1e6 / lines as f64,
                run.receiver_cpu.as_secs_f64() * 1e6 / lines as f64,
            );
            runs.push(run);
        }
    }
    println!(
        "\n| stages | lines/s (median) | sustained lines/s, 10→90 % (median) | delivered/s | peak RSS (max) | host CPU µs/line | receiver CPU µs/line |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let mut medians = Vec::new();
    for (mode, runs) in &results {
        let mut rates: Vec<f64> = runs.iter().map(|r| r.lines_per_s(lines)).collect();
        rates.sort_by(f64::total_cmp);
        let median = rates[rates.len() / 2];
        let mut sustained: Vec<f64> = runs.iter().map(|r| r.sustained_per_s(lines)).collect();
        sustained.sort_by(f64::total_cmp);
        let rss = runs.iter().map(|r| r.peak_rss_kb).max().unwrap_or(0);
        let per_line = |cpu: Duration| cpu.as_secs_f64() * 1e6 / lines as f64;
        let mut host: Vec<f64> = runs.iter().map(|r| per_line(r.host_cpu)).collect();
        let mut recv: Vec<f64> = runs.iter().map(|r| per_line(r.receiver_cpu)).collect();
        host.sort_by(f64::total_cmp);
        recv.sort_by(f64::total_cmp);
        let delivered = if base(mode) == "none" { lines } else { valid };
        println!(
            "| {mode} | {median:.0} | {:.0} | {:.0} | {:.1} MB | {:.1} | {:.1} |",
            sustained[sustained.len() / 2],
            median * delivered as f64 / lines as f64,
            rss as f64 / 1024.0,
            host[host.len() / 2],
            recv[recv.len() / 2],
        );
        medians.push(median);
    }
    for (i, (mode, _)) in results.iter().enumerate().skip(1) {
        println!(
            "{mode} / {} throughput: {:.2}x",
            results[0].0,
            medians[i] / medians[0]
        );
    }
}

/// The mode without its `-wN` / `-1cpu` / `-p02` suffixes.
fn base(mode: &str) -> &str {
    mode.split('-').next().unwrap_or(mode)
}

/// The `[pipeline] workers` of a mode: its `-wN` suffix, else `--workers`.
fn workers(mode: &str) -> Option<u64> {
    mode.split('-')
        .find_map(|part| part.strip_prefix('w')?.parse().ok())
        .or_else(|| arg("--workers"))
}

/// One timed run.
struct Run {
    elapsed: Duration,
    /// From 10 % to 90 % of the events stored.
    sustained: Duration,
    peak_rss_kb: u64,
    /// CPU time (user + system) the host process used in total.
    host_cpu: Duration,
    /// CPU time this process (the receiver, and the polling) used meanwhile.
    receiver_cpu: Duration,
}

impl Run {
    fn lines_per_s(&self, lines: u64) -> f64 {
        lines as f64 / self.elapsed.as_secs_f64()
    }
    /// Lines per second between 10 % and 90 % stored (the invalid lines
    /// are spread evenly through the input).
    fn sustained_per_s(&self, lines: u64) -> f64 {
        0.8 * lines as f64 / self.sustained.as_secs_f64().max(1e-9)
    }
}

/// Runs the host on `input` with a fresh buffer and receiver until all
/// `valid` events are stored; checks the counts.
fn measure(dir: &Path, name: &str, mode: &str, input: &Path, valid: u64) -> Run {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime for the receiver");
    let store = dir.join(format!("received-{name}.db"));
    let receiver = rt
        .block_on(halyard_receiver::bind(ReceiverConfig::new(
            "127.0.0.1:0".parse().expect("an address"),
            store.clone(),
        )))
        .expect("the receiver binds");
    let url = format!("http://{}/v1/batches", receiver.local_addr());
    let (stop_receiver, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = rt.spawn(receiver.run(async move {
        let _ = stopped.await;
    }));

    let config = dir.join(format!("{name}.toml"));
    let mut text = config_text_with(
        dir,
        name,
        input,
        &format!("[transport]\ntype = \"http\"\nurl = \"{url}\"\n"),
        base(mode) != "none",
    );
    if let Some(n) = workers(mode) {
        text.push_str(&format!("\n[pipeline]\nworkers = {n}\n"));
    }
    if mode.split('-').any(|part| part == "p02") {
        text = text.replace(REDACT_PRIVACY, REDACT_V0_2);
    }
    std::fs::write(&config, text).expect("write the config");
    let start = Instant::now();
    let cpu_before = cpu_time();
    let exe = std::env::current_exe().expect("this executable");
    let cpus = match mode.ends_with("-1cpu") {
        true => Some("0".to_owned()),
        false => arg_text("--cpus"),
    };
    // `PIPELINE_BENCH_WRAP="heaptrack"` (or `perf record -g`, …) runs the
    // host under a profiler; the words come before the executable.
    let wrap = std::env::var("PIPELINE_BENCH_WRAP").unwrap_or_default();
    let mut argv: Vec<std::ffi::OsString> = Vec::new();
    if let Some(cpus) = cpus {
        argv.extend(["taskset".into(), "-c".into(), cpus.into()]);
    }
    argv.extend(wrap.split_whitespace().map(Into::into));
    argv.push(exe.into());
    let mut command = Command::new(&argv[0]);
    command.args(&argv[1..]);
    let mut host = command
        .env(CHILD_MODE, mode)
        // Benchmarks run unlicensed; the host says so in its log.
        .env("HALYARD_DEV_MODE", "1")
        .env(CHILD_CONFIG, &config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the host");
    // When the receiver first held 10 % and 90 % of the events: the rate
    // between them is the sustained one, without the start (loading the
    // plugins) and the tail (the last partial batch waits out `max_age`).
    let (mut at_10, mut at_90) = (None, None);
    let elapsed = loop {
        let stored = open_stats(&store).map(|s| s.events_stored).unwrap_or(0);
        if stored * 10 >= valid {
            at_10.get_or_insert_with(|| start.elapsed());
        }
        if stored * 10 >= valid * 9 {
            at_90.get_or_insert_with(|| start.elapsed());
        }
        if stored >= valid {
            break start.elapsed();
        }
        assert!(
            start.elapsed() < RUN_LIMIT,
            "{name}: only {stored} of {valid} stored"
        );
        if let Ok(Some(status)) = host.try_wait() {
            panic!("{name}: the host exited early with {status}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let receiver_cpu = cpu_time().saturating_sub(cpu_before);
    drop(host.stdin.take()); // EOF: shut down.
    let mut host_cpu = Duration::ZERO;
    let mut peak_rss_kb = 0;
    let mut left = u64::MAX;
    if let Some(out) = host.stdout.take() {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if let Some(v) = line.strip_prefix("peak_rss_kb ") {
                peak_rss_kb = v.parse().unwrap_or(0);
            } else if let Some(v) = line.strip_prefix("cpu_us ") {
                host_cpu = Duration::from_micros(v.parse().unwrap_or(0));
            } else if let Some(v) = line.strip_prefix("left_in_buffer ") {
                left = v.parse().unwrap_or(u64::MAX);
            }
        }
    }
    let status = host.wait().expect("the host exits");
    assert!(status.success(), "{name}: host exited with {status}");
    let _ = stop_receiver.send(());
    let _ = rt.block_on(served);
    let stats = open_stats(&store).expect("receiver stats");
    assert_eq!(
        (stats.events_stored, stats.duplicates, left),
        (valid, 0, 0),
        "{name}: every valid event delivered once, nothing left behind"
    );
    let _ = std::fs::remove_file(&store);
    Run {
        elapsed,
        sustained: at_90
            .unwrap_or(elapsed)
            .saturating_sub(at_10.unwrap_or_default()),
        peak_rss_kb,
        host_cpu,
        receiver_cpu,
    }
}

/// Child mode: run the host (`native` swaps in the native twins) until
/// stdin closes, then print the peak RSS, CPU time and what was left.
fn child(mode: &str) {
    // As `halyard`'s `main` does first, before any thread starts.
    halyard::allocator::limit_arenas();
    let path = PathBuf::from(std::env::var(CHILD_CONFIG).expect("the child's config"));
    let natives = match base(mode) {
        "native" => native_stages(),
        "none" => native_decoder(),
        _ => NativeStages::default(),
    };
    host_run::run_child(&path, natives);
    println!("peak_rss_kb {}", peak_rss_kb());
}

/// `VmHWM` of this process, in KiB.
fn peak_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The native decoder alone (the `none` mode has no event stages).
fn native_decoder() -> NativeStages {
    let mut natives = NativeStages::default();
    natives.register(
        JSONL_DECODER,
        PluginKind::Decoder,
        Arc::new(|_| Box::new(Twin::Decoder(native::JsonlDecoder)) as Box<dyn StagePlugin>),
    );
    natives
}

/// The native twins, registered under the component paths they replace.
fn native_stages() -> NativeStages {
    let mut natives = NativeStages::default();
    let factory = |make: fn(&std::collections::BTreeMap<String, String>) -> Twin| -> NativeFactory {
        Arc::new(move |config| Box::new(make(config)) as Box<dyn StagePlugin>)
    };
    natives.register(
        JSONL_DECODER,
        PluginKind::Decoder,
        factory(|_| Twin::Decoder(native::JsonlDecoder)),
    );
    natives.register(
        RANGE_VALIDATOR,
        PluginKind::Validator,
        factory(|c| Twin::Validator(native::RangeValidator::new(c))),
    );
    natives.register(
        REDACT_PRIVACY,
        PluginKind::Privacy,
        factory(|c| Twin::Privacy(native::RedactPolicy::new(c))),
    );
    natives.register(
        FRACTION_SAMPLER,
        PluginKind::Sampler,
        factory(|c| Twin::Sampler(native::FractionSampler::new(c))),
    );
    natives
}

/// One native twin of an example guest.
enum Twin {
    Decoder(native::JsonlDecoder),
    Validator(native::RangeValidator),
    Privacy(native::RedactPolicy),
    Sampler(native::FractionSampler),
}

impl Twin {
    fn wrong_kind(&self) -> CallError {
        CallError::BadOutput {
            plugin: "native twin".into(),
            message: "called as the wrong kind".into(),
        }
    }
}

impl StagePlugin for Twin {
    fn poll(&mut self, _max: u32) -> Result<Vec<Event>, CallError> {
        Err(self.wrong_kind())
    }
    fn decode(&mut self, frames: &[Frame]) -> Result<Vec<Result<Vec<Event>, String>>, CallError> {
        match self {
            Twin::Decoder(d) => Ok(d.decode_batch(frames)),
            _ => Err(self.wrong_kind()),
        }
    }
    fn validate(&mut self, events: &[Event]) -> Result<Vec<Verdict>, CallError> {
        match self {
            Twin::Validator(v) => Ok(v.validate_batch(events)),
            _ => Err(self.wrong_kind()),
        }
    }
    fn redact(&mut self, events: &[Event]) -> Result<Vec<Action>, CallError> {
        match self {
            Twin::Privacy(p) => Ok(p.redact_batch(events)),
            _ => Err(self.wrong_kind()),
        }
    }
    fn sample(&mut self, events: &[Event]) -> Result<Vec<bool>, CallError> {
        match self {
            Twin::Sampler(s) => Ok(s.sample_batch(events)),
            _ => Err(self.wrong_kind()),
        }
    }
}
