//! Per-event cost of each example stage through the sandbox, against the
//! same logic in native Rust on the same `Event` type.
//!
//! Run with `cargo bench -p halyard --bench stages`. The input is the peer
//! benchmark's sensor lines (see [`input`]); every stage runs in one warmed
//! [`halyard::plugin::PluginInstance`] and gets prebuilt batch slices of
//! 1, 100 and 1000 events. Before anything is timed, every guest's output on
//! the whole input is asserted equal to its native twin's ([`check`]), which
//! doubles as a cross-check of the guests. The results are printed as a
//! markdown table, with the cold/warm load time, the cost of a fresh
//! instance's first call, the boundary cost by event shape ([`shape`]) and
//! the call mechanism against synchronous calls in the same run
//! ([`mechanism`]). See BENCHMARKS.md for how to read them.
//!
//! `STAGES_OLD_GUESTS=DIR` also measures the same stages' components as
//! found in `DIR` (same file names, same configs, same cross-check), in the
//! same run, labelled with their contract version: how the contract 0.2.0
//! builds compare with the 0.1.0 builds of main (see BENCHMARKS.md).
//!
//! `cargo bench -p halyard --bench stages -- redact` runs only the stages
//! whose name contains `redact` (handy under `perf record`);
//! `STAGES_LOOP=sync|real|async` runs only batch-1 sampler calls through
//! one mechanism (`STAGES_CALLS` of them, default 3 M), to profile it.

#[path = "stages/check.rs"]
mod check;
#[path = "stages/input.rs"]
mod input;
#[path = "stages/mechanism.rs"]
mod mechanism;
#[path = "stages/native.rs"]
mod native;
#[path = "stages/report.rs"]
mod report;
#[path = "stages/shape.rs"]
mod shape;
#[path = "stages/timing.rs"]
mod timing;

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use halyard::plugin::{Event, Frame, Plugin, PluginKind, PluginOptions, Runtime};
use halyard_test_components::{
    FRACTION_SAMPLER, JSONL_DECODER, RANGE_VALIDATOR, REDACT_PRIVACY, REDACT_V0_2,
};

use report::Row;
use timing::{Budget, ns_per_event, timed};

/// Distinct input lines; measurements cycle through them.
const EVENTS: u64 = 1000;

/// The batch sizes measured.
const BATCHES: [usize; 3] = [1, 100, 1000];

/// One measurement: up to 200 000 events or 1 s per repetition, median of
/// 5. The 35 measurements (15 sandbox, 15 native, 5 shapes) can take at most
/// about three minutes; on the 2-core development VM the whole run takes
/// about 40 s.
const BUDGET: Budget = Budget {
    max_events: 200_000,
    max_time: Duration::from_secs(1),
    reps: 5,
};

/// A stage under test: a component with one config.
pub struct Stage {
    /// The name in the table, e.g. `fraction-sampler (0.5)`.
    pub name: &'static str,
    /// The component file.
    pub path: &'static str,
    /// The world it implements.
    pub kind: PluginKind,
    /// Its config as key/value pairs.
    pub config: &'static [(&'static str, &'static str)],
}

/// The stages, in table order. The first four are distinct components; the
/// last is redact-privacy's policy built against contract 0.2.0, to compare
/// its `list<action>` answer with 0.4.0's flat one in the same run.
const STAGES: [Stage; 6] = [
    Stage {
        name: "jsonl-decoder",
        path: JSONL_DECODER,
        kind: PluginKind::Decoder,
        config: &[],
    },
    Stage {
        name: "range-validator",
        path: RANGE_VALIDATOR,
        kind: PluginKind::Validator,
        config: &[("min.temp", "0")],
    },
    Stage {
        name: "redact-privacy",
        path: REDACT_PRIVACY,
        kind: PluginKind::Privacy,
        config: &[("hash_keys", "operator"), ("salt", "bench")],
    },
    Stage {
        name: "fraction-sampler (1)",
        path: FRACTION_SAMPLER,
        kind: PluginKind::Sampler,
        config: &[("fraction", "1")],
    },
    Stage {
        name: "fraction-sampler (0.5)",
        path: FRACTION_SAMPLER,
        kind: PluginKind::Sampler,
        config: &[("fraction", "0.5")],
    },
    Stage {
        name: "redact-privacy, 0.2.0 answer",
        path: REDACT_V0_2,
        kind: PluginKind::Privacy,
        config: &[("hash_keys", "operator"), ("salt", "bench")],
    },
];

fn main() {
    // `cargo bench` passes `--bench`; any other argument selects the stages
    // whose name contains it and skips the load, first-call and shape
    // sections.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let selected = |name: &str| filter.as_deref().is_none_or(|f| name.contains(f));
    let cache = tempfile::tempdir().expect("a temporary compile-cache directory");
    let rt = Runtime::new(Some(cache.path().to_path_buf())).expect("the engine starts");

    if let Ok(mode) = std::env::var("STAGES_LOOP") {
        let rt = match mode.as_str() {
            "sync" => Runtime::sync_baseline(None),
            "async" => Runtime::async_only(None),
            _ => Runtime::new(None),
        }
        .expect("the engine starts");
        let decoder = load(&rt, &STAGES[0]);
        let events = input::decode_with_ids(&mut decoder.instance(), &input::frames(EVENTS));
        // `STAGES_CALLS` shortens the loop for `valgrind --tool=callgrind`,
        // whose instruction counts do not depend on the machine's load.
        let calls = std::env::var("STAGES_CALLS")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(3_000_000);
        // `STAGES_BATCH` events per call (default 1); `STAGES_OLD_GUESTS`
        // profiles that directory's build of the sampler instead.
        let batch = std::env::var("STAGES_BATCH")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(1);
        let sampler = match std::env::var_os("STAGES_OLD_GUESTS") {
            Some(dir) => load_from(&rt, &STAGES[3], dir.as_ref()),
            None => load(&rt, &STAGES[3]),
        };
        mechanism::profile_loop(&sampler, &events, calls, batch);
        return;
    }
    println!("# Halyard stage benchmark\n");
    if filter.is_none() {
        report::print_load_times(&STAGES[..4]);
    }
    let plugins: Vec<Arc<Plugin>> = STAGES.iter().map(|stage| load(&rt, stage)).collect();
    let frames = input::frames(EVENTS);
    let events = input::decode_with_ids(&mut plugins[0].instance(), &frames);
    if filter.is_none() {
        report::print_first_call(&plugins[1], &events);
    }

    // Builds of the same guests from another commit (e.g. the 0.1.0-contract
    // builds of main), measured in this same run beside the current ones.
    let old_builds = std::env::var_os("STAGES_OLD_GUESTS").map(std::path::PathBuf::from);
    println!("## Cross-check (guest output == native output on all {EVENTS} inputs)\n");
    let mut rows = Vec::new();
    for (stage, plugin) in STAGES.iter().zip(&plugins) {
        let name = stage.name;
        if !selected(name) {
            continue;
        }
        rows.extend(bench(plugin, name, &frames, &events));
        if let Some(dir) = &old_builds {
            let old = load_from(&rt, stage, dir);
            let old_name = format!("{name} [{}]", old.contract);
            rows.extend(bench(&old, &old_name, &frames, &events));
        }
    }
    println!();
    report::print_table(&rows, BUDGET);
    report::print_call_overhead(&rows);
    if filter.is_none() {
        shape::print_shapes(&plugins[3], &events, BUDGET);
    }
    compare_mechanisms(&plugins, &frames, &events, &selected);
}

/// Every selected stage through synchronous calls and through the real
/// mechanism, in this same run (see [`mechanism`]).
fn compare_mechanisms(
    plugins: &[Arc<Plugin>],
    frames: &[Frame],
    events: &[Event],
    selected: &dyn Fn(&str) -> bool,
) {
    let cache = tempfile::tempdir().expect("a temporary compile-cache directory");
    let sync_rt =
        Runtime::sync_baseline(Some(cache.path().to_path_buf())).expect("the engine starts");
    let async_rt =
        Runtime::async_only(Some(cache.path().to_path_buf())).expect("the engine starts");
    let mut rows = Vec::new();
    for (stage, real) in STAGES.iter().zip(plugins) {
        if !selected(stage.name) {
            continue;
        }
        let loaded = mechanism::Loaded {
            sync: load(&sync_rt, stage),
            real: real.clone(),
            asynch: load(&async_rt, stage),
        };
        let name = stage.name;
        rows.extend(match stage.kind {
            PluginKind::Decoder => mechanism::compare(name, &loaded, frames, BUDGET, |i, b| {
                black_box(i.decode(black_box(b)).expect("decode"));
            }),
            PluginKind::Validator => mechanism::compare(name, &loaded, events, BUDGET, |i, b| {
                black_box(i.validate(black_box(b)).expect("validate"));
            }),
            PluginKind::Privacy => mechanism::compare(name, &loaded, events, BUDGET, |i, b| {
                black_box(i.redact(black_box(b)).expect("redact"));
            }),
            PluginKind::Sampler => mechanism::compare(name, &loaded, events, BUDGET, |i, b| {
                black_box(i.sample(black_box(b)).expect("sample"));
            }),
            PluginKind::Source | PluginKind::Detector => {
                unreachable!("no source or detector is benchmarked")
            }
        });
    }
    mechanism::print(&rows, BUDGET);
    mechanism::print_wrapper_cost(BUDGET);
}

/// Checks and times one stage (see the `bench_*` functions).
fn bench(plugin: &Arc<Plugin>, name: &str, frames: &[Frame], events: &[Event]) -> Vec<Row> {
    match plugin.kind {
        PluginKind::Decoder => bench_decoder(plugin, name, frames),
        PluginKind::Validator => bench_validator(plugin, name, events),
        PluginKind::Privacy => bench_redact(plugin, name, events),
        PluginKind::Sampler => bench_sampler(plugin, name, events),
        PluginKind::Source | PluginKind::Detector => {
            unreachable!("no source or detector is benchmarked")
        }
    }
}

/// The stage's component as built in `dir` (same file name), same config.
fn load_from(rt: &Runtime, stage: &Stage, dir: &std::path::Path) -> Arc<Plugin> {
    let file = std::path::Path::new(stage.path)
        .file_name()
        .expect("a component file name");
    let path = dir.join(file);
    let options = PluginOptions {
        config: input::config(stage.config),
        ..Default::default()
    };
    rt.load(&path, Some(stage.kind), options)
        .unwrap_or_else(|e| panic!("loading {}: {e}", path.display()))
}

/// Loads a stage's component with its config; the bench's components and
/// configs are known-good, so a failure is fatal.
fn load(rt: &Runtime, stage: &Stage) -> Arc<Plugin> {
    let options = PluginOptions {
        config: input::config(stage.config),
        ..Default::default()
    };
    rt.load(stage.path.as_ref(), Some(stage.kind), options)
        .unwrap_or_else(|e| panic!("loading {}: {e}", stage.path))
}

/// Times the sandboxed and the native implementation at every batch size.
fn compare<I>(
    stage: &str,
    inputs: &[I],
    mut sandbox: impl FnMut(&[I]),
    mut native: impl FnMut(&[I]),
) -> Vec<Row> {
    BATCHES
        .iter()
        .map(|&batch| {
            let sandbox_ns = ns_per_event(inputs, batch, BUDGET, &mut sandbox);
            let native_ns = ns_per_event(inputs, batch, BUDGET, &mut native);
            eprintln!("  measured {stage} batch {batch}: {sandbox_ns:.0} / {native_ns:.0} ns");
            Row {
                stage: stage.to_owned(),
                batch,
                sandbox_ns,
                native_ns,
            }
        })
        .collect()
}

/// jsonl-decoder: one line per frame.
fn bench_decoder(plugin: &Arc<Plugin>, stage: &str, frames: &[Frame]) -> Vec<Row> {
    let mut inst = plugin.instance();
    let native = native::JsonlDecoder;
    check::decoder(&mut inst, &native, frames);
    compare(
        stage,
        frames,
        |b| {
            black_box(inst.decode(black_box(b)).expect("decode"));
        },
        |b| {
            black_box(native.decode_batch(black_box(b)));
        },
    )
}

/// range-validator with `min.temp=0`: 10 % of the events are rejected.
fn bench_validator(plugin: &Arc<Plugin>, stage: &str, events: &[Event]) -> Vec<Row> {
    let mut inst = plugin.instance();
    let native = native::RangeValidator::new(&plugin.options.config);
    check::validator(&mut inst, &native, events);
    compare(
        stage,
        events,
        |b| {
            black_box(inst.validate(black_box(b)).expect("validate"));
        },
        |b| {
            black_box(native.validate_batch(black_box(b)));
        },
    )
}

/// redact-privacy hashing `operator`: every event is edited.
fn bench_redact(plugin: &Arc<Plugin>, stage: &str, events: &[Event]) -> Vec<Row> {
    let mut inst = plugin.instance();
    let native = native::RedactPolicy::new(&plugin.options.config);
    let salt = plugin.options.config.get("salt").map_or("", String::as_str);
    check::redact(&mut inst, &native, salt, events);
    // What the pipeline calls: edits applied to its own events in place.
    // One working copy serves every repetition (a slice of `events` maps to
    // the same positions in it); each call first puts back the original
    // `operator` values, which the last call hashed, so the guest sees the
    // input's values (and its hash cache hits as often) as in the copying
    // run below. Putting them back is timed too: one string copy per event.
    let mut work = events.to_vec();
    let mut rows = compare(
        stage,
        events,
        |b| {
            let at = (b.as_ptr() as usize - events.as_ptr() as usize) / size_of::<Event>();
            let batch = &mut work[at..at + b.len()];
            for (event, original) in batch.iter_mut().zip(b) {
                restore_operator(event, original);
            }
            black_box(inst.redact_in_place(black_box(batch)).expect("redact"));
        },
        |b| {
            black_box(native.redact_batch(black_box(b)));
        },
    );
    // The 0.1.0-shaped answer (every edit copied into a rewrite), as the
    // pipeline called it before it edited in place.
    rows.extend(compare(
        &format!("{stage} (copying)"),
        events,
        |b| {
            black_box(inst.redact(black_box(b)).expect("redact"));
        },
        |b| {
            black_box(native.redact_batch(black_box(b)));
        },
    ));
    rows
}

/// Sets `event`'s `operator` attribute back to `original`'s value.
fn restore_operator(event: &mut Event, original: &Event) {
    let operator = |e: &Event| e.attributes.iter().position(|a| a.key == "operator");
    if let (Some(i), Some(j)) = (operator(event), operator(original)) {
        event.attributes[i].value = original.attributes[j].value.clone();
    }
}

/// fraction-sampler with the plugin's `fraction`.
fn bench_sampler(plugin: &Arc<Plugin>, stage: &str, events: &[Event]) -> Vec<Row> {
    let mut inst = plugin.instance();
    let native = native::FractionSampler::new(&plugin.options.config);
    check::sampler(&mut inst, &native, stage, events);
    compare(
        stage,
        events,
        |b| {
            black_box(inst.sample(black_box(b)).expect("sample"));
        },
        |b| {
            black_box(native.sample_batch(black_box(b)));
        },
    )
}

/// Wall time of loading a stage into `rt`, and whether it came from the
/// compile cache.
fn time_load(rt: &Runtime, stage: &Stage) -> (Duration, bool) {
    let (elapsed, plugin) = timed(|| load(rt, stage));
    (elapsed, plugin.from_cache)
}
