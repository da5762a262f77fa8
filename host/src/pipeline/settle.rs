//! Settling one chain run: the events of a call go through the validators,
//! detectors, privacy policies and samplers, and what came out is counted
//! (report, licence usage, traps), traced for per-line results, stamped
//! with its chain and set aside in `Pending` for the commit.

use std::collections::BTreeMap;

use halyard_trust::usage::Counter;

use super::*;

impl Pipeline {
    /// Runs one call's worth of events through the chains; rejections are
    /// set aside as dead letters and the accepted events as records, in
    /// `pending`, and everything is counted in `report`.
    pub(super) fn run_chains(
        &mut self,
        events: Vec<Event>,
        origin: Option<String>,
        report: &mut IngestReport,
        pending: &mut Pending,
    ) -> Result<(), PipelineError> {
        let mut kinds_in = BTreeMap::<String, u64>::new();
        if self.usage.is_some() {
            for e in &events {
                // The kind is cloned only the first time it is seen.
                match kinds_in.get_mut(&e.kind) {
                    Some(n) => *n += 1,
                    None => {
                        kinds_in.insert(e.kind.clone(), 1);
                    }
                }
            }
        }
        let chain: Vec<String> = origin
            .into_iter()
            .chain(self.chains.validators.iter().map(chain_link))
            .chain(self.chains.detectors.iter().map(|d| chain_link(&d.stage)))
            .chain(self.after_detect_links())
            .collect();
        let outcome = self.chains.run(events);
        self.settle_outcome(outcome, kinds_in, &chain, report, pending)
    }

    /// The chain links of the privacy policies and samplers: what a
    /// detector's new events pass after it.
    pub(super) fn after_detect_links(&self) -> Vec<String> {
        self.chains
            .privacy
            .iter()
            .chain(&self.chains.samplers)
            .map(chain_link)
            .collect()
    }

    /// Counts a chain run's `outcome`, sets its rejections aside as dead
    /// letters and its accepted events (stamped with `chain`, or with their
    /// detector's chain) as records in `pending`.
    pub(super) fn settle_outcome(
        &mut self,
        outcome: ChainOutcome,
        mut kinds_in: BTreeMap<String, u64>,
        chain: &[String],
        report: &mut IngestReport,
        pending: &mut Pending,
    ) -> Result<(), PipelineError> {
        report.detected += outcome.detected.events;
        report.detector_failures += outcome.detected.failures;
        if self.usage.is_some() {
            for (kind, n) in &outcome.detected.kinds {
                *kinds_in.entry(kind.clone()).or_default() += n;
            }
        }
        if let Some(trace) = &mut self.trace {
            trace.accepted(&outcome.accepted);
            for (e, reason) in &outcome.rejected {
                trace.rejected(&e.id, reason);
            }
            for id in &outcome.privacy_dropped_ids {
                trace.privacy_dropped(id);
            }
        }
        let after_detect = if outcome.detected.by_id.is_empty() {
            Vec::new()
        } else {
            self.after_detect_links()
        };
        // Stored with the chunk, so transports filter and delivered usage
        // is counted by kind without parsing a payload.
        for e in &outcome.accepted {
            pending.push_kind(&e.kind);
        }
        if let Some(usage) = &self.usage {
            for (kind, n) in &kinds_in {
                usage.add(kind, Counter::Received, *n);
            }
            for (e, _) in &outcome.rejected {
                usage.add(&e.kind, Counter::Rejected, 1);
                if let Some(n) = kinds_in.get_mut(&e.kind) {
                    *n = n.saturating_sub(1);
                }
            }
            for e in &outcome.accepted {
                if let Some(n) = kinds_in.get_mut(&e.kind) {
                    *n = n.saturating_sub(1);
                }
            }
            // What neither was rejected nor came out: privacy and samplers.
            for (kind, n) in &kinds_in {
                usage.add(kind, Counter::Dropped, *n);
            }
            let traps: Vec<(String, u64)> = self
                .stages()
                .map(|st| (st.name.clone(), st.counters.traps))
                .collect();
            for (name, total) in traps {
                let seen = self.traps_counted.entry(name.clone()).or_default();
                usage.add_traps(&name, total.saturating_sub(*seen));
                *seen = (*seen).max(total);
            }
        }
        report.rejected += outcome.rejected.len() as u64;
        report.privacy_dropped += outcome.privacy_dropped;
        report.sampled_out += outcome.sampled_out;
        for (e, reason) in outcome.rejected {
            pending.dead.event(e, reason);
        }
        let mut stamper = self
            .stamper
            .as_ref()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()));
        for e in &outcome.accepted {
            let derived = outcome.detected.by_id.get(&(e.id.hi, e.id.lo)).map(|link| {
                std::iter::once(link.clone())
                    .chain(after_detect.iter().cloned())
                    .collect::<Vec<_>>()
            });
            let record = match &mut stamper {
                Some(stamper) => stamper.record(e, derived.as_deref().unwrap_or(chain)),
                None => event_record(e),
            };
            pending.record_bytes += record.payload.len();
            pending.stored_bytes +=
                record.payload.len() as u64 + halyard_buffer::RECORD_OVERHEAD_BYTES;
            pending.records.push(record);
        }
        drop(stamper);
        if pending.record_bytes >= STAGE_AFTER_BYTES {
            self.buffer.stage(&mut pending.staged, &pending.records)?;
            pending.records = Vec::new();
            pending.record_bytes = 0;
        }
        Ok(())
    }
}
