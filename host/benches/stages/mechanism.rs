//! The cost of the call mechanism, measured in one run: every stage through
//! a runtime with plain synchronous calls (the mechanism before issue 11,
//! `Runtime::sync_baseline`), through the real one (`Runtime::new`: plain
//! calls for a plugin that cannot wait, as every stage here), and through
//! the async mechanism every plugin that *can* wait gets (`call_async` under
//! a wall-clock deadline, `Runtime::async_only`). Repetitions of the three
//! alternate, so all see the same machine load; "real / sync" is the
//! "before/after, same run" comparison the issue asks for.
//!
//! Also printed: what the deadline wrapper alone costs per call, with no
//! guest at all, so the rest of the difference is wasmtime's fiber.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use halyard::plugin::{Plugin, PluginInstance, deadline};

use crate::BATCHES;
use crate::timing::{Budget, median, ns_per_event, one_rep};

/// One stage at one batch size, through both mechanisms.
pub struct Row {
    /// The stage and its config.
    pub stage: String,
    /// Events per call.
    pub batch: usize,
    /// Median ns per event with synchronous calls.
    pub sync_ns: f64,
    /// Median ns per event with the real mechanism.
    pub real_ns: f64,
    /// Median ns per event with the async mechanism.
    pub async_ns: f64,
}

/// The same stage loaded by each runtime being compared.
pub struct Loaded {
    /// By `Runtime::sync_baseline`.
    pub sync: Arc<Plugin>,
    /// By `Runtime::new`.
    pub real: Arc<Plugin>,
    /// By `Runtime::async_only`.
    pub asynch: Arc<Plugin>,
}

/// Times `call` through an instance of each of `loaded` at every batch
/// size, alternating their repetitions.
pub fn compare<I>(
    stage: &str,
    loaded: &Loaded,
    inputs: &[I],
    budget: Budget,
    call: impl Fn(&mut PluginInstance, &[I]),
) -> Vec<Row> {
    let (mut a, mut b, mut c) = (
        loaded.sync.instance(),
        loaded.real.instance(),
        loaded.asynch.instance(),
    );
    BATCHES
        .iter()
        .map(|&batch| {
            let batches: Vec<&[I]> = inputs.chunks_exact(batch).collect();
            for x in &batches {
                call(&mut a, x);
                call(&mut b, x);
                call(&mut c, x);
            }
            let (mut s, mut r, mut y) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..budget.reps {
                s.push(one_rep(&batches, budget, &mut |x| call(&mut a, x)));
                r.push(one_rep(&batches, budget, &mut |x| call(&mut b, x)));
                y.push(one_rep(&batches, budget, &mut |x| call(&mut c, x)));
            }
            let row = Row {
                stage: stage.to_owned(),
                batch,
                sync_ns: median(&mut s),
                real_ns: median(&mut r),
                async_ns: median(&mut y),
            };
            eprintln!(
                "  mechanism {stage} batch {batch}: {:.0} sync / {:.0} real / {:.0} async ns",
                row.sync_ns, row.real_ns, row.async_ns
            );
            row
        })
        .collect()
}

/// The same-run table, then the fixed cost per call of each mechanism
/// (ns/event at batch 1 minus at the largest batch).
pub fn print(rows: &[Row], budget: Budget) {
    println!(
        "## Call mechanism, same run (sync baseline vs real vs async-only; median of {}, repetitions alternated)\n",
        budget.reps
    );
    println!(
        "| stage | batch | sync (before) ns/event | real (now) ns/event | async-only ns/event | real / sync | async / sync |"
    );
    println!("|---|--:|--:|--:|--:|--:|--:|");
    for r in rows {
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.0} | {:.3} | {:.3} |",
            r.stage,
            r.batch,
            r.sync_ns,
            r.real_ns,
            r.async_ns,
            r.real_ns / r.sync_ns,
            r.async_ns / r.sync_ns
        );
    }
    println!("\n| stage | sync ns/call fixed | async ns/call fixed | difference ns |");
    println!("|---|--:|--:|--:|");
    let largest = BATCHES[BATCHES.len() - 1];
    for one in rows.iter().filter(|r| r.batch == 1) {
        let Some(big) = rows
            .iter()
            .find(|r| r.stage == one.stage && r.batch == largest)
        else {
            continue;
        };
        let (s, a) = (one.sync_ns - big.sync_ns, one.async_ns - big.async_ns);
        println!("| {} | {s:.0} | {a:.0} | {:.0} |", one.stage, a - s);
    }
    println!();
}

/// The deadline wrapper with nothing inside: `deadline::run` on a future
/// that is ready at once, per call.
pub fn print_wrapper_cost(budget: Budget) {
    let unit = [(); 1000];
    let ns = ns_per_event(&unit, 1, budget, |_| {
        black_box(deadline::run(Duration::from_millis(100), async {
            black_box(7)
        }))
        .ok();
    });
    println!("`deadline::run` around a ready future (no guest): {ns:.1} ns per call\n");
}

/// For `perf record` and callgrind: `STAGES_LOOP=sync|real|async` makes
/// the bench do nothing but `calls` sampler calls of `batch` events each
/// (`plugin` loaded by the runtime of that mechanism), then print ns per
/// event.
pub fn profile_loop(
    plugin: &Arc<Plugin>,
    events: &[halyard::plugin::Event],
    calls: usize,
    batch: usize,
) {
    let mut inst = plugin.instance();
    let batch = batch.clamp(1, events.len());
    let started = std::time::Instant::now();
    for chunk in events.chunks_exact(batch).cycle().take(calls) {
        black_box(inst.sample(black_box(chunk)).expect("sample"));
    }
    let ns = started.elapsed().as_nanos() as f64 / (calls * batch) as f64;
    println!(
        "{ns:.1} ns per event, batch-{batch} calls ({})",
        plugin.contract
    );
}
