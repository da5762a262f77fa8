//! What the benchmark prints: load and first-call costs, then the
//! per-event table and the fixed per-call overhead, all as markdown.

use std::sync::Arc;
use std::time::Duration;

use halyard::plugin::{Event, Plugin, Runtime};

use crate::Stage;
use crate::timing::{Budget, median, ns_per_event, timed};

/// One measured stage at one batch size.
#[derive(Clone, Debug)]
pub struct Row {
    /// The stage and its config, e.g. `fraction-sampler (0.5)`.
    pub stage: String,
    /// Events per call.
    pub batch: usize,
    /// Median ns per event through the sandbox.
    pub sandbox_ns: f64,
    /// Median ns per event of the native twin.
    pub native_ns: f64,
}

/// Repetitions of the load and first-call measurements.
const REPS: usize = 3;

/// Milliseconds with two decimals.
fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

/// Microseconds with one decimal.
fn us(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1e6)
}

/// Median of durations.
fn median_duration(durations: &[Duration]) -> Duration {
    let mut secs: Vec<f64> = durations.iter().map(Duration::as_secs_f64).collect();
    Duration::from_secs_f64(median(&mut secs))
}

/// Cold (empty compile cache: compile, store, probe) against warm (cached
/// artefact: read, hash, map, probe) `Runtime::load`, median of [`REPS`]
/// fresh runtimes with fresh cache directories.
pub fn print_load_times(stages: &[Stage]) {
    println!("## Component load (median of {REPS}, fresh runtime and empty cache dir each)\n");
    println!(
        "| component | size KiB | cold load ms (compile + cache store) | warm load ms (from cache) |"
    );
    println!("|---|--:|--:|--:|");
    for stage in stages {
        let (mut cold, mut warm) = (Vec::new(), Vec::new());
        for _ in 0..REPS {
            let dir = tempfile::tempdir().expect("a temporary compile-cache directory");
            let rt = Runtime::new(Some(dir.path().to_path_buf())).expect("the engine starts");
            let (t, from_cache) = crate::time_load(&rt, stage);
            assert!(!from_cache, "an empty cache cannot hit");
            cold.push(t);
            let (t, from_cache) = crate::time_load(&rt, stage);
            assert!(from_cache, "the second load must come from the cache");
            warm.push(t);
        }
        let size = std::fs::metadata(stage.path).map_or(0, |m| m.len()) / 1024;
        println!(
            "| {} | {size} | {} | {} |",
            stage.name.split(" (").next().unwrap_or(stage.name),
            ms(median_duration(&cold)),
            ms(median_duration(&warm))
        );
    }
    println!();
}

/// A fresh instance's first call (instantiate + `init` + the call) against
/// a warmed instance's single-event call, for a validator.
pub fn print_first_call(plugin: &Arc<Plugin>, events: &[Event]) {
    let one = &events[..1];
    let first: Vec<Duration> = (0..REPS)
        .map(|_| {
            let mut inst = plugin.instance();
            let (t, verdicts) = timed(|| inst.validate(one));
            verdicts.expect("validate");
            t
        })
        .collect();
    let mut inst = plugin.instance();
    let budget = Budget {
        max_events: 20_000,
        max_time: Duration::from_millis(500),
        reps: REPS,
    };
    let warm_ns = ns_per_event(one, 1, budget, |b| {
        std::hint::black_box(inst.validate(b).expect("validate"));
    });
    println!("## Instance start\n");
    println!(
        "- {}: new instance + first call (batch 1): {} µs (median of {REPS}); \
         a warmed instance's batch-1 call: {:.1} µs\n",
        plugin.info.name,
        us(median_duration(&first)),
        warm_ns / 1e3
    );
}

/// The per-event table.
pub fn print_table(rows: &[Row], budget: Budget) {
    println!(
        "## Per-event cost (median of {} runs; each run up to {} events or {:.1} s)\n",
        budget.reps,
        budget.max_events,
        budget.max_time.as_secs_f64()
    );
    println!(
        "| stage | batch | sandbox ns/event | native ns/event | ratio (sandbox/native) | sandbox M events/s |"
    );
    println!("|---|--:|--:|--:|--:|--:|");
    for r in rows {
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.1} | {:.2} |",
            r.stage,
            r.batch,
            r.sandbox_ns,
            r.native_ns,
            r.sandbox_ns / r.native_ns,
            1e3 / r.sandbox_ns
        );
    }
    println!();
}

/// Fixed cost of one call: per-event cost at the smallest batch minus the
/// per-event cost at the largest, for each stage.
pub fn print_call_overhead(rows: &[Row]) {
    println!("## Fixed per-call overhead (batch-1 cost minus batch-1000 per-event cost)\n");
    println!("| stage | sandbox ns/call | native ns/call |");
    println!("|---|--:|--:|");
    let mut stages: Vec<&str> = rows.iter().map(|r| r.stage.as_str()).collect();
    stages.dedup();
    for stage in stages {
        let of = |batch: usize| rows.iter().find(|r| r.stage == stage && r.batch == batch);
        if let (Some(small), Some(large)) = (of(1), of(1000)) {
            println!(
                "| {stage} | {:.0} | {:.0} |",
                small.sandbox_ns - large.sandbox_ns,
                small.native_ns - large.native_ns
            );
        }
    }
    println!();
}
