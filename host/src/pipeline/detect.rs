//! Detectors in the chain: validate → **detect** → privacy → sample.
//!
//! A detector sees the events its chain's validators accepted and returns
//! new events (alerts, summaries). The events it was given go on unchanged;
//! its new events join them after it, so they pass later detectors, the
//! privacy policies and the samplers, then the buffer, and their provenance
//! chain starts with the detector.
//!
//! Failure policy: fail open for the events. A detector that traps, breaks
//! its contract or is quarantined loses only its own output for that batch
//! (and the `kv` writes of that call); `detector_failures` counts it.
//!
//! State: each detector has a `kv` namespace (see [`crate::plugin::kv`]),
//! keyed by its stage name so a hot swap keeps it. Writes a batch's calls
//! staged are written in that batch's buffer transaction
//! ([`take_writes`], then [`settle`]).
//!
//! Ticks: [`super::Pipeline::tick_detectors`] calls `tick` on each detector
//! whose `tick_ms` has passed; its events run through privacy and samplers
//! and commit with its `kv` writes in one transaction.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use halyard_buffer::KvWrite;

use super::record::chain_link;
use super::stage::Stage;
use crate::event;
use crate::plugin::{Event, KvHandle, KvNamespace};

/// The detector config key that asks for a timer, in milliseconds.
pub const TICK_MS_KEY: &str = "tick_ms";

/// The shortest tick interval the host honours; shorter asks are raised.
pub const MIN_TICK: Duration = Duration::from_millis(10);

/// The `tick_ms` a detector's config entry (at `role`, `stages.detect[0]`)
/// asks for; a value that is not a whole number of milliseconds is an
/// error naming the role and the key.
pub fn tick_ms(
    role: &str,
    r: &crate::config::PluginRef,
) -> Result<Option<u64>, super::PipelineError> {
    r.config
        .get(TICK_MS_KEY)
        .map(|v| {
            v.to_string()
                .parse::<u64>()
                .map_err(|_| super::PipelineError::BadTick {
                    role: role.to_string(),
                    value: v.to_string(),
                })
        })
        .transpose()
}

/// One detector in the chain: its stage, its namespace and its timer.
pub struct DetectorStage {
    /// The plugin, its counters and health.
    pub stage: Stage,
    /// Its key-value namespace, shared by every version of it.
    pub kv: KvHandle,
    /// How often `tick` is called; `None`: never.
    pub tick: Option<Duration>,
    /// When `tick` is due next.
    pub next_tick: Option<Instant>,
}

impl DetectorStage {
    /// A detector stage; `tick_ms` comes from the plugin's own config.
    pub fn new(stage: Stage, kv: KvHandle, tick_ms: Option<u64>) -> Self {
        let tick = tick_ms
            .filter(|ms| *ms > 0)
            .map(|ms| Duration::from_millis(ms).max(MIN_TICK));
        DetectorStage {
            stage,
            kv,
            tick,
            next_tick: tick.map(|t| Instant::now() + t),
        }
    }
}

/// The new events of one chain run and which detector made each (by id),
/// for their provenance.
#[derive(Debug, Default)]
pub struct DetectorRun {
    /// Detector chain link by the id of each event it made.
    pub by_id: HashMap<(u64, u64), String>,
    /// New events made (before privacy and samplers).
    pub events: u64,
    /// Detector calls whose output was lost (trap, quarantine, refusal).
    pub failures: u64,
    /// New events by kind, for the licence usage (counted as received).
    pub kinds: std::collections::BTreeMap<String, u64>,
}

/// Runs `events` through one detector: they come back unchanged, followed
/// by the detector's new events (with fresh ids).
pub(super) fn detect(
    d: &mut DetectorStage,
    mut events: Vec<Event>,
    out: &mut DetectorRun,
) -> Vec<Event> {
    let n = events.len() as u64;
    d.stage.counters.events_in += n;
    d.stage.counters.events_out += n;
    let kv = d.kv.clone();
    let made = match d.stage.call(|i| i.detect(&events, &kv)) {
        Some(Ok(detected)) => match detected.refused {
            None => detected.events,
            Some(reason) => {
                d.stage.counters.refused += 1;
                out.failures += 1;
                tracing::warn!(plugin = %d.stage.name, %reason,
                    "detector output refused by the host; the batch's events go on");
                Vec::new()
            }
        },
        Some(Err(_)) | None => {
            // Fail open: the events go on; the output (and its kv writes)
            // is lost and counted. A trap is logged by the stage.
            out.failures += 1;
            Vec::new()
        }
    };
    append_made(d, made, &mut events, out);
    events
}

/// Calls `tick` on `d` at `now_ns` and returns its new events (none if it
/// failed, counted in `out`).
pub(super) fn tick(d: &mut DetectorStage, now_ns: i64, out: &mut DetectorRun) -> Vec<Event> {
    let kv = d.kv.clone();
    let made = match d.stage.call(|i| i.tick(now_ns, &kv)) {
        Some(Ok(detected)) => match detected.refused {
            None => detected.events,
            Some(reason) => {
                d.stage.counters.refused += 1;
                out.failures += 1;
                tracing::warn!(plugin = %d.stage.name, %reason, "detector tick output refused by the host");
                Vec::new()
            }
        },
        Some(Err(_)) => {
            out.failures += 1;
            Vec::new()
        }
        None => Vec::new(),
    };
    let mut events = Vec::new();
    append_made(d, made, &mut events, out);
    events
}

fn append_made(
    d: &mut DetectorStage,
    made: Vec<Event>,
    events: &mut Vec<Event>,
    out: &mut DetectorRun,
) {
    if made.is_empty() {
        return;
    }
    let link = chain_link(&d.stage);
    d.stage.counters.events_out += made.len() as u64;
    out.events += made.len() as u64;
    for mut e in made {
        e.id = event::new_id();
        out.by_id.insert((e.id.hi, e.id.lo), link.clone());
        *out.kinds.entry(e.kind.clone()).or_default() += 1;
        events.push(e);
    }
}

/// Takes the open batch of every namespace as buffer writes (to put in
/// the batch's commit) and the per-namespace lists to settle after it.
#[allow(clippy::type_complexity)]
pub(super) fn take_writes<'a>(
    detectors: impl Iterator<Item = &'a DetectorStage>,
) -> (
    Vec<KvWrite>,
    Vec<(KvHandle, Vec<(String, Option<Vec<u8>>)>)>,
) {
    let mut writes = Vec::new();
    let mut taken = Vec::new();
    for d in detectors {
        let mut ns = KvNamespace::lock(&d.kv);
        let batch = ns.take_batch();
        if batch.is_empty() {
            continue;
        }
        for (key, value) in &batch {
            writes.push(KvWrite {
                namespace: ns.name().to_string(),
                key: key.clone(),
                value: value.clone(),
            });
        }
        drop(ns);
        taken.push((d.kv.clone(), batch));
    }
    (writes, taken)
}

/// Folds the taken batches into the committed state (`committed`) or
/// forgets them (the commit failed; the input sends the batch again).
#[allow(clippy::type_complexity)]
pub(super) fn settle(taken: Vec<(KvHandle, Vec<(String, Option<Vec<u8>>)>)>, committed: bool) {
    for (kv, batch) in taken {
        let mut ns = KvNamespace::lock(&kv);
        if committed {
            ns.committed_ok(batch);
        } else {
            ns.rolled_back();
        }
    }
}

/// Forgets every namespace's open batch (an ingest failed before its
/// commit).
pub(super) fn forget<'a>(detectors: impl Iterator<Item = &'a DetectorStage>) {
    for d in detectors {
        KvNamespace::lock(&d.kv).rolled_back();
    }
}

impl super::Pipeline {
    /// When the next detector tick is due; `None` if no detector asked for
    /// one.
    pub fn next_tick(&self) -> Option<Instant> {
        self.chains
            .detectors
            .iter()
            .filter_map(|d| d.next_tick)
            .min()
    }

    /// Calls `tick` on every detector that is due, runs their new events
    /// through the privacy policies and samplers, and commits them with the
    /// detectors' `kv` writes in one transaction. Under `when_full =
    /// "block"` a full buffer is not ticked at all (what a tick made cannot
    /// be handed back); the tick comes again at its next interval.
    pub fn tick_detectors(&mut self) -> Result<super::IngestReport, super::PipelineError> {
        let now = Instant::now();
        let due: Vec<usize> = (0..self.chains.detectors.len())
            .filter(|&i| self.chains.detectors[i].next_tick.is_some_and(|t| t <= now))
            .collect();
        if due.is_empty() {
            return Ok(super::IngestReport::default());
        }
        for &i in &due {
            let d = &mut self.chains.detectors[i];
            d.next_tick = d.tick.map(|t| now + t);
        }
        self.buffer.admit(1)?;
        let now_ns = crate::plugin::host::wall_clock_ns();
        let mut outcome = super::ChainOutcome::default();
        for &i in &due {
            let made = tick(&mut self.chains.detectors[i], now_ns, &mut outcome.detected);
            outcome.accepted.extend(made);
        }
        self.chains.run_after_detect(&mut outcome);
        let mut report = super::IngestReport::default();
        let mut pending = super::Pending::default();
        let ran = self.settle_outcome(
            outcome,
            std::collections::BTreeMap::new(),
            &[],
            &mut report,
            &mut pending,
        );
        let committed = ran.and_then(|()| self.commit(&mut pending, None, &mut report));
        self.discard(pending);
        committed?;
        self.totals.add(&report);
        Ok(report)
    }
}
