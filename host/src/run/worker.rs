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
//!
//! Shutdown is bounded: once the stop deadline ([`Worker::begin_stop`])
//! has passed, work still queued is answered
//! [`PipelineError::ShuttingDown`] (nothing of it accepted) instead of
//! being run, and [`Worker::stop`] gives up waiting at its own deadline.
//! Each plugin call ends within its deadline, so the thread is never held
//! much longer than that.

use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, oneshot};

use super::progress::Progress;
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
    /// Dead-letter one frame an input refused before decoding (a file
    /// line over `max_line_bytes`), committed with the input's position.
    Refuse {
        /// The input's name.
        input: String,
        /// What is kept of the frame.
        frame: KeyedFrame,
        /// Why it was refused (names the limit and the offset).
        reason: String,
        /// The input's read position just past the frame.
        position: Option<Vec<u8>>,
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
    /// The thread's totals, sent when it ends.
    done: Receiver<IngestReport>,
    /// When queued work stops being run (set at shutdown).
    stop_by: Arc<Mutex<Option<Instant>>>,
}

impl Worker {
    /// Starts the thread. `appended` is notified after every commit so the
    /// delivery loop wakes without polling.
    /// `progress` is marked around every piece of work.
    pub fn start(
        mut pipeline: Pipeline,
        sources: Vec<SourceSchedule>,
        appended: Arc<Notify>,
        progress: Arc<Progress>,
    ) -> std::io::Result<Worker> {
        let (tx, rx) = channel();
        let (done_tx, done) = channel();
        let stop_by = Arc::new(Mutex::new(None));
        let thread_stop_by = stop_by.clone();
        std::thread::Builder::new()
            .name("halyard-pipeline".into())
            .spawn(move || {
                let serving = Serving {
                    sources: &sources,
                    rx: &rx,
                    appended: &appended,
                    progress: &progress,
                    stop_by: &thread_stop_by,
                };
                let totals = serve(&mut pipeline, &serving);
                // Dropped before the totals are sent, so what it closes
                // (the provenance counter gives back its unused numbers)
                // is done when `stop` returns.
                drop(pipeline);
                let _ = done_tx.send(totals);
            })?;
        Ok(Worker {
            tx: Some(tx),
            done,
            stop_by,
        })
    }

    /// Shutdown has begun: work still queued at `deadline` is refused
    /// rather than run.
    pub fn begin_stop(&self, deadline: Instant) {
        *self.stop_by.lock().unwrap_or_else(|e| e.into_inner()) = Some(deadline);
    }

    /// A sender for inputs.
    pub fn sender(&self) -> Option<Sender<Work>> {
        self.tx.clone()
    }

    /// Stops taking work, lets queued requests finish (until the
    /// [`Worker::begin_stop`] deadline), stops polling sources, and returns
    /// the totals; `None` if the thread had not ended by `give_up` (it is
    /// left to finish on its own). Inputs must have dropped their senders.
    pub fn stop(mut self, give_up: Instant) -> Option<IngestReport> {
        self.tx = None;
        self.done
            .recv_timeout(give_up.saturating_duration_since(Instant::now()))
            .ok()
    }
}

/// What the pipeline thread serves with.
struct Serving<'a> {
    sources: &'a [SourceSchedule],
    rx: &'a Receiver<Work>,
    appended: &'a Notify,
    progress: &'a Progress,
    stop_by: &'a Mutex<Option<Instant>>,
}

impl Serving<'_> {
    /// Whether the stop deadline has passed.
    fn past_stop(&self) -> bool {
        self.stop_by
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|by| Instant::now() >= by)
    }
}

fn serve(pipeline: &mut Pipeline, serving: &Serving<'_>) -> IngestReport {
    let Serving {
        sources,
        rx,
        appended,
        progress,
        ..
    } = *serving;
    let start = Instant::now();
    let mut next_poll: Vec<Instant> = sources.iter().map(|_| start).collect();
    loop {
        let now = Instant::now();
        for (i, schedule) in sources.iter().enumerate() {
            if next_poll[i] <= now {
                next_poll[i] = now + schedule.interval;
                progress.begin();
                let polled = pipeline.poll_source(i, schedule.max_per_poll);
                progress.end();
                match polled {
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
        let work = rx.recv_timeout(wait);
        if serving.past_stop() {
            // Past the stop deadline: answer what is queued, run nothing.
            match work {
                Ok(
                    Work::Frames { reply, .. }
                    | Work::SharedFrames { reply, .. }
                    | Work::Refuse { reply, .. },
                ) => {
                    let _ = reply.send(Err(PipelineError::ShuttingDown));
                }
                Err(RecvTimeoutError::Disconnected) => break,
                _ => {}
            }
            continue;
        }
        progress.begin();
        let disconnected = serve_one(pipeline, work, appended);
        progress.end();
        if disconnected {
            break;
        }
    }
    pipeline.totals.clone()
}

/// Runs one piece of work; true when every sender is gone.
fn serve_one(
    pipeline: &mut Pipeline,
    work: Result<Work, RecvTimeoutError>,
    appended: &Notify,
) -> bool {
    match work {
        Ok(Work::Frames {
            input,
            frames,
            position,
            reply,
        }) => {
            let bytes = frames.iter().map(|f| f.frame.data.len() as u64).sum();
            let result = pipeline.ingest_frames(&input, frames, position, bytes);
            answer(result, reply, appended);
        }
        Ok(Work::SharedFrames {
            input,
            frames,
            reply,
        }) => {
            let bytes = frames.bytes() as u64;
            let result = pipeline.ingest_frames(&input, frames, None, bytes);
            answer(result, reply, appended);
        }
        Ok(Work::Refuse {
            input,
            frame,
            reason,
            position,
            reply,
        }) => {
            let result = pipeline.refuse_frame(&input, frame, &reason, position);
            answer(result, reply, appended);
        }
        Ok(Work::Swap(swap)) => crate::reload::apply(pipeline, swap),
        Ok(Work::Rechain { plan, reply }) => {
            pipeline.rechain(plan);
            let _ = reply.send(());
        }
        Ok(Work::Unload(unload)) => crate::reload::swap::unload(pipeline, unload),
        Err(RecvTimeoutError::Timeout) => {}
        Err(RecvTimeoutError::Disconnected) => return true,
    }
    false
}

/// Sends an ingest's outcome to its input, waking the shipper first if
/// anything was committed.
fn answer(
    result: Result<IngestReport, PipelineError>,
    reply: oneshot::Sender<Result<IngestReport, PipelineError>>,
    appended: &Notify,
) {
    if matches!(&result, Ok(r) if r.accepted > 0) {
        appended.notify_one();
    }
    let _ = reply.send(result);
}
