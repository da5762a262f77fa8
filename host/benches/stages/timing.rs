//! Bounded timing loops: per-event cost of a batch call, as the median of a
//! few repetitions, each capped in events and in wall time so the whole run
//! stays short on a slow or busy machine.

use std::time::{Duration, Instant};

/// How much work one measurement may do.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    /// A repetition stops after this many events...
    pub max_events: usize,
    /// ...or after this long, whichever comes first.
    pub max_time: Duration,
    /// Repetitions; the median is reported.
    pub reps: usize,
}

/// The median nanoseconds per event of `call` over `inputs` cut into
/// batches of `batch` (a trailing partial batch is left out). The batch
/// slices are prebuilt; the clock is read once per pass over them, not once
/// per call, so small batches are not charged for `Instant::now`.
pub fn ns_per_event<I>(
    inputs: &[I],
    batch: usize,
    budget: Budget,
    mut call: impl FnMut(&[I]),
) -> f64 {
    let batches: Vec<&[I]> = inputs.chunks_exact(batch).collect();
    assert!(!batches.is_empty(), "fewer inputs than one batch");
    // Warm-up: caches, branch predictors, guest allocator high-water mark.
    for b in &batches {
        call(b);
    }
    let mut reps: Vec<f64> = (0..budget.reps)
        .map(|_| one_rep(&batches, budget, &mut call))
        .collect();
    median(&mut reps)
}

/// One repetition: passes over the batches until the budget runs out.
pub fn one_rep<I>(batches: &[&[I]], budget: Budget, call: &mut impl FnMut(&[I])) -> f64 {
    let start = Instant::now();
    let mut events = 0usize;
    loop {
        for b in batches {
            call(b);
            events += b.len();
        }
        if events >= budget.max_events || start.elapsed() >= budget.max_time {
            break;
        }
    }
    start.elapsed().as_nanos() as f64 / events as f64
}

/// The median of `values` (reordered in place).
pub fn median(values: &mut [f64]) -> f64 {
    assert!(!values.is_empty(), "median of nothing");
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// Wall time of `f` and its result.
pub fn timed<T>(f: impl FnOnce() -> T) -> (Duration, T) {
    let start = Instant::now();
    let out = f();
    (start.elapsed(), out)
}
