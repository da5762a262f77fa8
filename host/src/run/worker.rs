//! The pipeline thread: owns the [`Pipeline`] (every plugin instance) and
//! serves ingest requests from the async inputs, polling source inputs on
//! their intervals in between.
//!
//! Plugin calls are synchronous and may take up to their deadline; they run
//! here, never on an async worker (wasmtime's synchronous WASI would panic
//! inside a tokio runtime, and a long call would stall other tasks).
//!
//! Invariant: a request's reply is sent only after its events are committed
//! to the buffer (or refused), so an input that got `Ok` may forget them.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, oneshot};

use crate::pipeline::{IngestReport, KeyedFrame, Pipeline, PipelineError};

/// A request to the pipeline thread.
pub enum Work {
    /// Decode and ingest frames from a named input.
    Frames {
        /// The input's name.
        input: String,
        /// The frames, in order.
        frames: Vec<KeyedFrame>,
        /// The input's read position just past these frames, committed
        /// with their events.
        position: Option<Vec<u8>>,
        /// Where the committed report goes.
        reply: oneshot::Sender<Result<IngestReport, PipelineError>>,
    },
    /// Decode and ingest frames that share one buffer (an http request's
    /// body), built one plugin call's worth at a time.
    SharedFrames {
        /// The input's name.
        input: String,
        /// The frames, in order.
        frames: crate::pipeline::SharedFrames,
        /// Where the committed report goes.
        reply: oneshot::Sender<Result<IngestReport, PipelineError>>,
    },
    /// Hot reload: swap in new plugin versions between two batches.
    Swap(crate::reload::Swap),
    /// Config reload: rebuild the stage chains between two batches; the
    /// reply says it is done.
    Rechain {
        /// The chains as they will be.
        plan: crate::pipeline::ChainPlan,
        /// Told when the new chains are in place.
        reply: Sender<()>,
    },
    /// A plugin file was removed and `[reload] on_remove = "unload"`:
    /// unload these stages between two batches.
    Unload(crate::reload::Unload),
}

/// A source input and its schedule.
pub struct SourceSchedule {
    /// Time between polls.
    pub interval: Duration,
    /// The most events per poll.
    pub max_per_poll: u32,
}

/// Handle to the running pipeline thread.
pub struct Worker {
    tx: Option<Sender<Work>>,
    thread: Option<JoinHandle<IngestReport>>,
}

impl Worker {
    /// Starts the thread. `appended` is notified after every commit so the
    /// delivery loop wakes without polling.
    pub fn start(
        mut pipeline: Pipeline,
        sources: Vec<SourceSchedule>,
        appended: Arc<Notify>,
    ) -> std::io::Result<Worker> {
        let (tx, rx) = channel();
        let thread = std::thread::Builder::new()
            .name("halyard-pipeline".into())
            .spawn(move || serve(&mut pipeline, &sources, &rx, &appended))?;
        Ok(Worker {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// A sender for inputs.
    pub fn sender(&self) -> Option<Sender<Work>> {
        self.tx.clone()
    }

    /// Stops taking work, lets queued requests finish, stops polling sources,
    /// and returns the totals. Inputs must have dropped their senders.
    pub fn stop(mut self) -> IngestReport {
        self.tx = None;
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

fn serve(
    pipeline: &mut Pipeline,
    sources: &[SourceSchedule],
    rx: &Receiver<Work>,
    appended: &Notify,
) -> IngestReport {
    let start = Instant::now();
    let mut next_poll: Vec<Instant> = sources.iter().map(|_| start).collect();
    loop {
        let now = Instant::now();
        for (i, schedule) in sources.iter().enumerate() {
            if next_poll[i] <= now {
                next_poll[i] = now + schedule.interval;
                match pipeline.poll_source(i, schedule.max_per_poll) {
                    Ok(report) if report.accepted > 0 => appended.notify_one(),
                    Ok(_) => {}
                    Err(err) => tracing::error!(error = %err, "source batch not accepted"),
                }
            }
        }
        let wait = next_poll
            .iter()
            .min()
            .map(|t| t.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_secs(3600));
        match rx.recv_timeout(wait) {
            Ok(Work::Frames {
                input,
                frames,
                position,
                reply,
            }) => {
                let result = pipeline.ingest_frames(&input, frames, position);
                if matches!(&result, Ok(r) if r.accepted > 0) {
                    appended.notify_one();
                }
                let _ = reply.send(result);
            }
            Ok(Work::SharedFrames {
                input,
                frames,
                reply,
            }) => {
                let result = pipeline.ingest_frames(&input, frames, None);
                if matches!(&result, Ok(r) if r.accepted > 0) {
                    appended.notify_one();
                }
                let _ = reply.send(result);
            }
            Ok(Work::Swap(swap)) => crate::reload::apply(pipeline, swap),
            Ok(Work::Rechain { plan, reply }) => {
                pipeline.rechain(plan);
                let _ = reply.send(());
            }
            Ok(Work::Unload(unload)) => crate::reload::swap::unload(pipeline, unload),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    pipeline.totals.clone()
}
