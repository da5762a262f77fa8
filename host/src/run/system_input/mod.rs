//! The `system` input: the host's own readings of the device it runs on
//! (CPU, memory, disk per mount, network bytes per interface, load, uptime,
//! temperature sensors where the platform exposes them), taken on an
//! interval and sent through the same stage chains as every other input,
//! so they can be validated, redacted, sampled and detected on.
//!
//! The platform reads are the `sysinfo` crate's; [`readings`] turns them
//! into events with the names documented in the README ("The system
//! input"). Every event of one collection shares one `time_ns`.
//!
//! Bounds and failure behaviour:
//! - at most [`MAX_PER_FAMILY`] mounts, interfaces and sensors each per
//!   collection (a machine with thousands of veth interfaces cannot flood
//!   the pipeline);
//! - a collection the pipeline refuses (buffer full) is dropped and counted,
//!   not retried: a stale reading is worth less than the next one;
//! - a collection that takes longer than the interval skips the missed
//!   ticks instead of bunching them up.

mod readings;

use std::sync::mpsc::Sender;
use std::time::Duration;

use tokio::sync::{oneshot, watch};

pub use readings::{Collector, Metric, Selection};

use super::inputs::{Input, InputContext, InputTask};
use super::worker::Work;
use crate::pipeline::PipelineError;

/// The most mounts, interfaces and temperature sensors read per
/// collection, each.
pub const MAX_PER_FAMILY: usize = 64;

/// A prepared `system` input.
pub struct SystemInput {
    /// The input's name.
    pub name: String,
    /// Time between collections.
    pub interval: Duration,
    /// What to read, and the `source` of the events.
    pub selection: Selection,
}

impl Input for SystemInput {
    fn name(&self) -> &str {
        &self.name
    }

    fn run(self: Box<Self>, ctx: InputContext) -> InputTask {
        Box::pin(run(*self, ctx.work, ctx.stop))
    }
}

/// Collects every `interval` until `stop`, handing each collection to the
/// pipeline and waiting for its commit before the next.
async fn run(input: SystemInput, work: Sender<Work>, mut stop: watch::Receiver<bool>) {
    let selection = input.selection.clone();
    // The first CPU reading needs an earlier one to compare with: take it
    // now, so the first collection (one interval later) has a real figure.
    let Ok(Ok(mut collector)) =
        tokio::task::spawn_blocking(move || Collector::new(selection)).await
    else {
        tracing::error!(input = %input.name, "system readings are not available on this platform");
        return;
    };
    let mut ticks =
        tokio::time::interval_at(tokio::time::Instant::now() + input.interval, input.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut dropped = 0u64;
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = ticks.tick() => {}
        }
        let Ok((back, events)) = tokio::task::spawn_blocking(move || {
            let events = collector.collect();
            (collector, events)
        })
        .await
        else {
            return;
        };
        collector = back;
        let count = events.len() as u64;
        let (reply, answer) = oneshot::channel();
        let sent = work.send(Work::Events {
            input: input.name.clone(),
            events,
            reply,
        });
        if sent.is_err() {
            return;
        }
        match answer.await {
            Ok(Ok(_)) => {}
            Ok(Err(PipelineError::ShuttingDown)) | Err(_) => return,
            Ok(Err(err)) => {
                dropped += count;
                tracing::warn!(input = %input.name, error = %err, events = count,
                    dropped_total = dropped, "system readings not accepted; dropped");
            }
        }
    }
}
