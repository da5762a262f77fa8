//! The pipeline workers: each owns a [`Pipeline`] (its own instance of
//! every plugin) and serves ingest requests from the async inputs; the
//! first also polls source inputs on their intervals in between.
//!
//! One dispatcher thread takes requests off the inputs' channel in order
//! and queues them for the workers, which take them in that order. Batches
//! of one input that keeps a read position carry a [`Ticket`]: they are
//! staged on any worker in parallel and committed in send order (see
//! [`super::sequence`]). Plugin calls are synchronous and may take up to
//! their deadline; they run on these threads, never on an async worker
//! (wasmtime's synchronous WASI would panic inside a tokio runtime, and a
//! long call would stall other tasks).
//!
//! Invariant: a request's reply is sent only after its events are committed
//! to the buffer (or refused), so an input that got `Ok` may forget them.
//!
//! Reloads ([`Work::Swap`], [`Work::Rechain`], [`Work::Unload`]) are run by
//! the dispatcher: it applies them to the first worker's pipeline, then
//! makes every other worker's follow, each taken between two of its
//! batches (a worker's pipeline is locked for a whole batch), and replies
//! only when every worker has them. So no batch is split across versions.
//!
//! Shutdown is bounded: once the stop deadline ([`Worker::begin_stop`])
//! has passed, work still queued is answered
//! [`PipelineError::ShuttingDown`] (nothing of it accepted) instead of
//! being run, and [`Worker::stop`] gives up waiting at its own deadline.
//! Each plugin call ends within its deadline, so a thread is never held
//! much longer than that.

use std::collections::VecDeque;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, oneshot};

use super::progress::Progress;
use super::sequence::Ticket;
use crate::pipeline::{FrameRun, IngestReport, KeyedFrame, Pipeline, PipelineError};

/// A request to the pipeline workers.
pub enum Work {
    /// Decode and ingest frames from a named input.
    Frames {
        /// The input's name.
        input: String,
        /// The frames, in order; shared with the input, which keeps them
        /// to send again if the commit fails.
        frames: Arc<FrameRun>,
        /// The input's read position just past these frames, committed
        /// with their events.
        position: Option<Vec<u8>>,
        /// The batch's place in its input's commit order, for an input
        /// that keeps several batches in flight; `None`: no order to keep.
        ticket: Option<Ticket>,
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
        /// Where each frame's outcome goes, sent before `reply` and only
        /// on success, when the client asked per line; `None`: not asked.
        outcomes: Option<oneshot::Sender<Vec<crate::pipeline::FrameOutcome>>>,
        /// Where the committed report goes.
        reply: oneshot::Sender<Result<IngestReport, PipelineError>>,
    },
    /// Run events a host-owned input made itself (the `system` input)
    /// through the chains and commit them; their ids are assigned here.
    Events {
        /// The input's name.
        input: String,
        /// The events, in order.
        events: Vec<crate::plugin::Event>,
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
        /// The request's place in its input's commit order, if any.
        ticket: Option<Ticket>,
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

/// Handle to the running pipeline workers.
pub struct Worker {
    tx: Option<Sender<Work>>,
    /// Each worker's totals, sent when it ends.
    done: Receiver<IngestReport>,
    /// How many workers run.
    workers: usize,
    shared: Arc<Shared>,
}

/// What the dispatcher and the workers share.
struct Shared {
    /// Requests waiting for a worker, in the order the inputs sent them.
    queue: Mutex<Queue>,
    /// Signalled when a request is queued or the queue closes.
    ready: Condvar,
    /// One pipeline per worker; locked by its worker for a whole request,
    /// and by the dispatcher to apply a reload between two requests.
    pipelines: Vec<Mutex<Pipeline>>,
    /// When queued work stops being run (set at shutdown).
    stop_by: Mutex<Option<Instant>>,
    /// Notified after every commit so the delivery loop wakes.
    appended: Arc<Notify>,
    /// Marked around every piece of work, per worker.
    progress: Arc<Progress>,
}

#[derive(Default)]
struct Queue {
    work: VecDeque<Work>,
    /// Every sender is gone: workers end once the queue is empty.
    closed: bool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// Whether the stop deadline has passed.
    fn past_stop(&self) -> bool {
        lock(&self.stop_by).is_some_and(|by| Instant::now() >= by)
    }
}

impl Worker {
    /// Starts one worker per pipeline (built from the same config, the
    /// others following the first: [`Pipeline::follow`]) and the
    /// dispatcher. `appended` is notified after every commit so the
    /// delivery loop wakes without polling. `progress` is marked around
    /// every piece of work. Sources are polled by the first worker.
    pub fn start(
        pipelines: Vec<Pipeline>,
        sources: Vec<SourceSchedule>,
        appended: Arc<Notify>,
        progress: Arc<Progress>,
    ) -> std::io::Result<Worker> {
        let workers = pipelines.len();
        let (tx, rx) = channel();
        let (done_tx, done) = channel();
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            ready: Condvar::new(),
            pipelines: pipelines.into_iter().map(Mutex::new).collect(),
            stop_by: Mutex::new(None),
            appended,
            progress,
        });
        let mut sources = Some(sources);
        for i in 0..workers {
            let shared = shared.clone();
            let done_tx = done_tx.clone();
            let sources = if i == 0 {
                sources.take().unwrap_or_default()
            } else {
                Vec::new()
            };
            std::thread::Builder::new()
                .name(format!("halyard-pipeline-{i}"))
                .spawn(move || {
                    let totals = serve(i, &shared, &sources);
                    let _ = done_tx.send(totals);
                })?;
        }
        let dispatch = shared.clone();
        std::thread::Builder::new()
            .name("halyard-dispatch".into())
            .spawn(move || dispatch_all(&rx, &dispatch))?;
        Ok(Worker {
            tx: Some(tx),
            done,
            workers,
            shared,
        })
    }

    /// Shutdown has begun: work still queued at `deadline` is refused
    /// rather than run.
    pub fn begin_stop(&self, deadline: Instant) {
        *lock(&self.shared.stop_by) = Some(deadline);
    }

    /// A sender for inputs.
    pub fn sender(&self) -> Option<Sender<Work>> {
        self.tx.clone()
    }

    /// Stops taking work, lets queued requests finish (until the
    /// [`Worker::begin_stop`] deadline), stops polling sources, and returns
    /// the totals summed over the workers; `None` if a worker had not ended
    /// by `give_up` (it is left to finish on its own). Inputs must have
    /// dropped their senders.
    pub fn stop(mut self, give_up: Instant) -> Option<IngestReport> {
        self.tx = None;
        let mut sum = IngestReport::default();
        for _ in 0..self.workers {
            let totals = self
                .done
                .recv_timeout(give_up.saturating_duration_since(Instant::now()))
                .ok()?;
            sum.add(&totals);
        }
        Some(sum)
    }
}

/// The dispatcher: queues ingest requests for the workers in arrival
/// order, and applies reloads to every worker's pipeline itself.
fn dispatch_all(rx: &Receiver<Work>, shared: &Shared) {
    while let Ok(work) = rx.recv() {
        match work {
            Work::Swap(mut swap) => {
                let (tx, first) = channel();
                let reply = std::mem::replace(&mut swap.reply, tx);
                crate::reload::apply(&mut lock(&shared.pipelines[0]), swap);
                let done = first.recv().unwrap_or_default();
                follow_first(shared);
                let _ = reply.send(done);
            }
            Work::Unload(mut unload) => {
                let (tx, first) = channel();
                let reply = std::mem::replace(&mut unload.reply, tx);
                crate::reload::swap::unload(&mut lock(&shared.pipelines[0]), unload);
                let done = first.recv().unwrap_or_default();
                follow_first(shared);
                let _ = reply.send(done);
            }
            Work::Rechain { plan, reply } => {
                let seeds = {
                    let mut first = lock(&shared.pipelines[0]);
                    first.rechain(plan);
                    first.chain_seeds()
                };
                for pipeline in &shared.pipelines[1..] {
                    lock(pipeline).rechain_like(&seeds);
                }
                let _ = reply.send(());
            }
            work => {
                lock(&shared.queue).work.push_back(work);
                shared.ready.notify_one();
            }
        }
    }
    lock(&shared.queue).closed = true;
    shared.ready.notify_all();
}

/// Makes every worker but the first follow the swaps, rollbacks and
/// unloads applied to the first's stages, each between two of its batches.
fn follow_first(shared: &Shared) {
    for pipeline in &shared.pipelines[1..] {
        lock(pipeline).sync_stages();
    }
}

/// What one worker takes next.
enum Next {
    Work(Work),
    /// Time to poll a source.
    Poll,
    /// The queue closed and is empty.
    Closed,
}

/// Worker `i`'s loop: polls `sources` when due, else serves queued work,
/// until the queue is closed and empty; returns its totals.
fn serve(i: usize, shared: &Shared, sources: &[SourceSchedule]) -> IngestReport {
    let Shared {
        appended, progress, ..
    } = shared;
    let start = Instant::now();
    let mut next_poll: Vec<Instant> = sources.iter().map(|_| start).collect();
    loop {
        let now = Instant::now();
        // Detector ticks, on the first worker (with detectors it is the only one).
        let next_tick = if i == 0 {
            tick_if_due(i, shared, now)
        } else {
            None
        };
        for (s, schedule) in sources.iter().enumerate() {
            if next_poll[s] <= now {
                next_poll[s] = now + schedule.interval;
                progress.begin_on(i);
                let polled = {
                    let mut pipeline = lock(&shared.pipelines[i]);
                    pipeline.sync_stages();
                    pipeline.poll_source(s, schedule.max_per_poll)
                };
                progress.end_on(i);
                match polled {
                    Ok(report) if report.accepted > 0 => appended.notify_one(),
                    Ok(_) => {}
                    Err(err) => tracing::error!(error = %err, "source batch not accepted"),
                }
            }
        }
        let wait = next_poll
            .iter()
            .copied()
            .chain(next_tick)
            .min()
            .map(|t| t.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_secs(3600));
        let work = match take(shared, wait) {
            Next::Work(work) => work,
            Next::Poll => continue,
            Next::Closed => break,
        };
        if shared.past_stop() {
            // Past the stop deadline: answer what is queued, run nothing.
            if let Work::Frames { reply, .. }
            | Work::SharedFrames { reply, .. }
            | Work::Events { reply, .. }
            | Work::Refuse { reply, .. } = work
            {
                let _ = reply.send(Err(PipelineError::ShuttingDown));
            }
            continue;
        }
        progress.begin_on(i);
        {
            let mut pipeline = lock(&shared.pipelines[i]);
            pipeline.sync_stages();
            serve_one(&mut pipeline, work, appended);
        }
        progress.end_on(i);
    }
    let mut pipeline = lock(&shared.pipelines[i]);
    // Let go of the shared provenance counter before the totals are sent:
    // the last worker to let go gives back its unused numbers, so that is
    // done by the time `stop` has every worker's totals.
    pipeline.release_provenance();
    pipeline.totals.clone()
}

/// Ticks worker `i`'s detectors if a tick is due at `now`; returns when
/// the next one is due.
fn tick_if_due(i: usize, shared: &Shared, now: Instant) -> Option<Instant> {
    let mut pipeline = lock(&shared.pipelines[i]);
    pipeline.sync_stages();
    if pipeline.next_tick().is_some_and(|t| t <= now) {
        shared.progress.begin_on(i);
        let ticked = pipeline.tick_detectors();
        shared.progress.end_on(i);
        match ticked {
            Ok(report) if report.accepted > 0 => shared.appended.notify_one(),
            Ok(_) => {}
            Err(err) => tracing::error!(error = %err, "detector tick not committed"),
        }
    }
    pipeline.next_tick()
}

/// The next request for a worker, waiting at most `wait` (when a source
/// poll or a detector tick is due).
fn take(shared: &Shared, wait: Duration) -> Next {
    let deadline = Instant::now() + wait;
    let mut queue = lock(&shared.queue);
    loop {
        if let Some(work) = queue.work.pop_front() {
            return Next::Work(work);
        }
        if queue.closed {
            return Next::Closed;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Next::Poll;
        }
        queue = shared
            .ready
            .wait_timeout(queue, left)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}

/// Runs one ingest request.
fn serve_one(pipeline: &mut Pipeline, work: Work, appended: &Notify) {
    match work {
        Work::Frames {
            input,
            frames,
            position,
            ticket,
            reply,
        } => {
            let result = match ticket {
                // An earlier batch failed: this one cannot commit, so no
                // plugin sees it now (it comes back, in order).
                Some(t) if t.refused() => Err(PipelineError::EarlierBatchRefused),
                Some(t) => {
                    let result =
                        pipeline.ingest_run_in_turn(&input, &frames, position, || t.wait_turn());
                    t.finish(result.is_ok());
                    result
                }
                None => pipeline.ingest_run_in_turn(&input, &frames, position, || Ok(())),
            };
            answer(result, reply, appended);
        }
        Work::SharedFrames {
            input,
            frames,
            outcomes,
            reply,
        } => {
            let bytes = frames.bytes() as u64;
            let result = match outcomes {
                None => pipeline.ingest_frames(&input, frames, None, bytes),
                Some(to) => pipeline
                    .ingest_traced(&input, frames, bytes)
                    .map(|(report, lines)| {
                        let _ = to.send(lines);
                        report
                    }),
            };
            answer(result, reply, appended);
        }
        Work::Events {
            input: _,
            events,
            reply,
        } => {
            let result = pipeline.ingest_input_events(events);
            answer(result, reply, appended);
        }
        Work::Refuse {
            input,
            frame,
            reason,
            position,
            ticket,
            reply,
        } => {
            let result = match ticket {
                Some(t) => {
                    let result = t
                        .wait_turn()
                        .and_then(|()| pipeline.refuse_frame(&input, frame, &reason, position));
                    t.finish(result.is_ok());
                    result
                }
                None => pipeline.refuse_frame(&input, frame, &reason, position),
            };
            answer(result, reply, appended);
        }
        // The dispatcher runs reloads; none is ever queued.
        Work::Swap(_) | Work::Rechain { .. } | Work::Unload(_) => {}
    }
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
