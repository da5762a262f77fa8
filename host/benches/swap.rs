//! Hot swap: how long from the `rename()` of a new validator into the
//! watched plugin directory until the first batch runs on the new version,
//! with a warm and with a cold compile cache, and what a swap does to
//! throughput under continuous load.
//!
//! Run with `cargo bench -p halyard --bench swap` (6 warm and 6 cold swaps)
//! or add `-- --swaps N`.
//!
//! The real `halyard` binary runs with an HTTP input, the example guests
//! (jsonl-decoder → validator → redact-privacy → fraction-sampler), the
//! SQLite buffer and an HTTP transport to the real receiver; the validator
//! is `plugins/validator.wasm`, deployed the documented way (write a
//! dotfile, then rename). One load thread posts requests of 20 events
//! back to back for the whole run; each request is one batch. 19 readings
//! are positive and one is negative, so v1 (range-validator, `min.temp =
//! 0`) rejects exactly one event per batch and v2 (hostile-validator,
//! accepting everything) none: every answer says which version served the
//! batch, while both versions do the same work downstream. A batch split
//! between versions, or a lost event, stops the bench.
//!
//! * Swap latency: rename → the answer to the first batch served by the
//!   new version (this includes the watcher's debounce, the check and
//!   compile off the hot path, and the swap between batches).
//!   *Warm*: bytes the host compiled before in this run (v1 ↔ v2 after
//!   the first round trip). *Cold*: bytes never seen — the component with
//!   a unique custom section appended, so its sha256 (the cache key)
//!   differs and it must be compiled.
//! * Throughput: events answered per 250 ms window. Steady state is the
//!   median of the windows away from any swap; a swap's windows are those
//!   that overlap [rename, first batch on the new version + 250 ms]. The
//!   figure is the lowest swap window divided by steady state; the lowest
//!   quiet window is printed too, as the noise floor of a shared machine.
//!   Per kind of swap, also: how many swaps had a window below 0.80, and
//!   the throughput lost per swap (the shortfall below steady state over
//!   its windows, in ms of steady throughput). A control gives the same
//!   figures for quiet stretches of equal length (for each swap, as many
//!   quiet windows as it touched, just before it), so a dip can be told
//!   from the machine's own noise.
//!
//! At the end the receiver must have stored exactly the accepted events,
//! with no duplicates.

#[allow(dead_code)]
#[path = "../../tests/e2e/pipeline/support.rs"]
mod pipeline_support;

#[allow(dead_code)]
#[path = "../../tests/e2e/operate/support.rs"]
mod operate_support;

#[allow(dead_code)]
#[path = "../../tests/e2e/reload/support.rs"]
mod support;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use halyard_test_components as components;

use support::{PER_REQUEST, Served, Setup, deploy, start};

/// Throughput window.
const WINDOW: Duration = Duration::from_millis(250);
/// Load without swaps before the first one.
const STEADY: Duration = Duration::from_secs(4);
/// Load after each swap is seen, before the next one.
const DWELL: Duration = Duration::from_millis(1500);
/// The longest a swap may take before the bench gives up.
const SWAP_LIMIT: Duration = Duration::from_secs(30);
/// The longest the load may run at all.
const RUN_LIMIT: Duration = Duration::from_secs(300);

/// One answered request.
#[derive(Clone, Copy)]
struct Answer {
    at: Instant,
    served: Served,
}

/// One swap.
struct Swap {
    warm: bool,
    renamed: Instant,
    served: Instant,
}

impl Swap {
    fn latency(&self) -> Duration {
        self.served - self.renamed
    }
}

fn main() {
    let swaps = arg("--swaps").unwrap_or(6).max(1);
    let v1 = std::fs::read(components::RANGE_VALIDATOR).expect("range-validator");
    let v2 = std::fs::read(components::HOSTILE_VALIDATOR).expect("hostile-validator");
    let h = start("", "", |_| Vec::new());
    let dest = h.plugins.join("validator.wasm");
    let answers: Arc<Mutex<Vec<Answer>>> = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let answers = answers.clone();
        let stop = stop.clone();
        std::thread::spawn(move || run_load(h, &answers, &stop))
    };

    let began = Instant::now();
    std::thread::sleep(STEADY);
    let mut done = Vec::new();
    // The first v1 → v2 compiles v2 (cold, not counted); v2 → v1 and every
    // later plain swap find their bytes compiled.
    let mut round = |bytes: &[u8], want: Served, warm: Option<bool>| {
        let swap = swap(&dest, bytes, want, &answers);
        println!(
            "  {:<12} → {want:?}: {:>7.1} ms",
            match warm {
                Some(true) => "warm",
                Some(false) => "cold",
                None => "first (cold)",
            },
            swap.latency().as_secs_f64() * 1e3
        );
        if let Some(warm) = warm {
            done.push(Swap { warm, ..swap });
        }
        std::thread::sleep(DWELL);
    };
    println!("swap latency, rename → first batch on the new version:");
    round(&v2, Served::V2, None);
    round(&v1, Served::V1, Some(true));
    for i in 1..swaps {
        let (bytes, want) = if i % 2 == 1 {
            (&v2, Served::V2)
        } else {
            (&v1, Served::V1)
        };
        round(bytes, want, Some(true));
    }
    // Cold: alternate versions, each time bytes never seen before.
    let last_v1 = swaps % 2 == 1;
    for i in 0..swaps {
        let (base, want) = if (i % 2 == 0) == last_v1 {
            (&v2, Served::V2)
        } else {
            (&v1, Served::V1)
        };
        round(&with_nonce(base, i), want, Some(false));
    }
    stop.store(true, Ordering::Relaxed);
    let h = load.join().expect("the load thread");
    let answers = answers.lock().unwrap().clone();
    let total = answers.len() as u64 * PER_REQUEST;
    let elapsed = answers.last().map(|a| a.at - began).unwrap_or_default();
    println!(
        "\nload: {} requests, {total} events in {:.1} s",
        answers.len(),
        elapsed.as_secs_f64()
    );

    for warm in [true, false] {
        let mut ms: Vec<f64> = done
            .iter()
            .filter(|s| s.warm == warm)
            .map(|s| s.latency().as_secs_f64() * 1e3)
            .collect();
        ms.sort_by(f64::total_cmp);
        println!(
            "{} cache: {} swaps, median {:.1} ms, max {:.1} ms{}",
            if warm { "warm" } else { "cold" },
            ms.len(),
            median(&ms),
            ms.last().copied().unwrap_or(0.0),
            if warm {
                format!(
                    " (target ≤ 200 ms: {})",
                    verdict(ms.iter().all(|&m| m <= 200.0))
                )
            } else {
                String::new()
            }
        );
    }
    throughput(began, &answers, &done);

    h.finish();
    println!("\nexact counts: every event accepted or rejected once, all accepted stored");
}

/// Posts batches back to back until told to stop (or the run limit);
/// records which version answered each.
fn run_load(mut h: Setup, answers: &Mutex<Vec<Answer>>, stop: &AtomicBool) -> Setup {
    let began = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        assert!(began.elapsed() < RUN_LIMIT, "the run took too long");
        let served = send_mixed(&mut h);
        answers.lock().unwrap().push(Answer {
            at: Instant::now(),
            served,
        });
    }
    h
}

/// One request of [`PER_REQUEST`] readings, the last one negative.
fn send_mixed(h: &mut Setup) -> Served {
    let mut body = String::new();
    for i in h.next..h.next + PER_REQUEST {
        let value = if i % PER_REQUEST == PER_REQUEST - 1 {
            -1.5
        } else {
            21.5
        };
        body.push_str(&format!(
            "{{\"device\":\"d{}\",\"metric\":\"temp\",\"value\":{value:?},\"ts\":{},\"operator\":\"alice\"}}\n",
            i % 7,
            1_700_000_000_000u64 + i
        ));
    }
    h.next += PER_REQUEST;
    let answer = h.client.ingest(h.run.ingest, body.into_bytes());
    let accepted = answer["accepted"].as_u64().unwrap();
    let rejected = answer["rejected"].as_u64().unwrap();
    h.sent += PER_REQUEST;
    h.accepted += accepted;
    h.rejected += rejected;
    match (accepted, rejected) {
        (a, 1) if a == PER_REQUEST - 1 => Served::V1,
        (PER_REQUEST, 0) => Served::V2,
        _ => panic!("a batch was split between versions or lost events: {answer}"),
    }
}

/// Deploys `bytes` and waits for the first answer from `want` after the
/// rename.
fn swap(dest: &Path, bytes: &[u8], want: Served, answers: &Mutex<Vec<Answer>>) -> Swap {
    let from = answers.lock().unwrap().len();
    let renamed = deploy(dest, bytes, None);
    loop {
        let first = answers.lock().unwrap()[from..]
            .iter()
            .find(|a| a.at > renamed && a.served == want)
            .map(|a| a.at);
        if let Some(served) = first {
            return Swap {
                warm: true,
                renamed,
                served,
            };
        }
        assert!(
            renamed.elapsed() < SWAP_LIMIT,
            "{want:?} did not serve within {SWAP_LIMIT:?}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Events per second in each window; steady state vs windows with a swap,
/// and the same figures for a control: for each swap, as many quiet windows
/// as it touched, just before it.
fn throughput(began: Instant, answers: &[Answer], swaps: &[Swap]) {
    let Some(end) = answers.last().map(|a| a.at) else {
        return;
    };
    let n = ((end - began).as_secs_f64() / WINDOW.as_secs_f64()) as usize;
    let mut counts = vec![0u64; n];
    for a in answers {
        let i = ((a.at - began).as_secs_f64() / WINDOW.as_secs_f64()) as usize;
        if i < n {
            counts[i] += PER_REQUEST;
        }
    }
    let rate = |c: u64| c as f64 / WINDOW.as_secs_f64();
    let window = |i: usize| (began + WINDOW * i as u32, began + WINDOW * (i as u32 + 1));
    let touches = |i: usize, s: &Swap| {
        let (a, b) = window(i);
        a < s.served + WINDOW && b > s.renamed
    };
    let is_quiet = |i: usize| !swaps.iter().any(|s| touches(i, s));
    let mut quiet: Vec<f64> = (0..n)
        .filter(|&i| is_quiet(i))
        .map(|i| rate(counts[i]))
        .collect();
    quiet.sort_by(f64::total_cmp);
    let steady = median(&quiet);
    println!(
        "\nthroughput, {} ms windows: steady state {steady:.0} events/s (median of {} quiet windows; \
         lowest quiet window {:.2} of it)",
        WINDOW.as_millis(),
        quiet.len(),
        quiet.first().copied().unwrap_or(0.0) / steady
    );
    let ratio = |i: usize| rate(counts[i]) / steady;
    for warm in [true, false] {
        let mut during = Dips::default();
        let mut control = Dips::default();
        for s in swaps.iter().filter(|s| s.warm == warm) {
            let touched: Vec<usize> = (0..n).filter(|&i| touches(i, s)).collect();
            let Some(&first) = touched.first() else {
                continue;
            };
            during.add(touched.iter().map(|&i| ratio(i)));
            let k = touched.len();
            if first >= k && (first - k..first).all(is_quiet) {
                control.add((first - k..first).map(ratio));
            }
        }
        let low = during.lowest();
        println!(
            "{} swaps: lowest window {low:.2} of steady state, median of each swap's lowest {:.2}, \
             below 0.80 in {}, lost {:.0} ms of steady throughput per swap (target ≥ 0.80: {})",
            if warm { "warm" } else { "cold" },
            during.median(),
            during.below(0.8),
            during.lost_ms(),
            verdict(low >= 0.8)
        );
        println!(
            "  control, as many quiet windows just before each swap: lowest {:.2}, median {:.2}, \
             below 0.80 in {}, lost {:.0} ms",
            control.lowest(),
            control.median(),
            control.below(0.8),
            control.lost_ms()
        );
    }
}

/// Per stretch of windows (a swap's, or a control's): the lowest
/// throughput ratio, and the throughput lost.
#[derive(Default)]
struct Dips {
    /// The lowest window of each stretch, as a fraction of steady state.
    lowest: Vec<f64>,
    /// Each stretch's shortfall below steady state, in windows' worth.
    lost: Vec<f64>,
}

impl Dips {
    fn add(&mut self, ratios: impl Iterator<Item = f64> + Clone) {
        self.lowest
            .push(ratios.clone().fold(f64::INFINITY, f64::min));
        self.lost.push(ratios.map(|r| 1.0 - r).sum());
    }

    fn lowest(&self) -> f64 {
        self.lowest.iter().copied().fold(f64::NAN, f64::min)
    }

    fn median(&self) -> f64 {
        let mut sorted = self.lowest.clone();
        sorted.sort_by(f64::total_cmp);
        median(&sorted)
    }

    fn below(&self, limit: f64) -> String {
        let below = self.lowest.iter().filter(|&&r| r < limit).count();
        format!("{below} of {}", self.lowest.len())
    }

    /// Mean shortfall per stretch, as milliseconds of steady throughput.
    fn lost_ms(&self) -> f64 {
        let mean = self.lost.iter().sum::<f64>() / self.lost.len().max(1) as f64;
        mean * WINDOW.as_secs_f64() * 1e3
    }
}

/// `bytes` with a custom section whose content is unique to this run and
/// `i`: a different sha256, the same behaviour.
fn with_nonce(bytes: &[u8], i: usize) -> Vec<u8> {
    let name = b"halyard-bench-nonce";
    let nonce = format!(
        "{}-{i}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let mut payload = leb128(name.len());
    payload.extend_from_slice(name);
    payload.extend_from_slice(nonce.as_bytes());
    let mut out = bytes.to_vec();
    out.push(0); // custom section
    out.extend(leb128(payload.len()));
    out.extend(payload);
    out
}

fn leb128(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

fn median(sorted: &[f64]) -> f64 {
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

/// `--name N` from the command line (cargo bench also passes `--bench`).
fn arg(name: &str) -> Option<usize> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
}
