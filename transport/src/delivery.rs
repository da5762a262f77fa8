//! The delivery loop: one batch in, exactly one [`Outcome`] out.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::breaker::Admission;
use crate::stats::Refusal;
use crate::{Attempt, Backoff, Breaker, EventRejection, MAX_RETRY_AFTER, Sink, TransportStats};

/// The single, final result of [`Delivery::deliver`] for one batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The receiver has it: acknowledge the batch in the buffer.
    Delivered {
        /// Send attempts made, including the successful one.
        attempts: u32,
    },
    /// 413: the receiver will not take a body this large. The host splits
    /// the batch and delivers the halves (a single event still refused is
    /// the one case where the host dead-letters it).
    TooLarge {
        /// The refusal, e.g. `HTTP 413: <start of the response body>`.
        reason: String,
        /// Send attempts made, including the refused one.
        attempts: u32,
    },
    /// 400/422: the receiver refused the batch because of some of its
    /// events and stored none of it. The host dead-letters the events
    /// named in `events` and sends the rest again; when none are named, it
    /// bisects to find them.
    Rejected {
        /// The refusal, e.g. `HTTP 400: <start of the response body>`.
        reason: String,
        /// The events the receiver named, by index in the batch.
        events: Vec<EventRejection>,
        /// Send attempts made, including the refused one.
        attempts: u32,
    },
    /// Shutdown came first: keep the batch buffered (nack it); it is sent
    /// again, under the same key, after the restart.
    NotSent {
        /// Attempts made before giving up; the last may have reached the
        /// receiver, which is why the key must stay the same.
        attempts: u32,
    },
}

/// Delivers batches through a [`Sink`], retrying with [`Backoff`] behind a
/// [`Breaker`], and counting everything in [`TransportStats`].
///
/// `deliver` takes `&self`, so one `Delivery` (in an `Arc`) can carry
/// several batches at once; they share the breaker, so an outage detected by
/// one batch holds back all of them.
#[derive(Debug)]
pub struct Delivery<S: Sink> {
    sink: S,
    backoff: Backoff,
    breaker: Breaker,
    stats: Arc<TransportStats>,
}

impl<S: Sink> Delivery<S> {
    /// Puts the parts together; the stats start at zero.
    pub fn new(sink: S, backoff: Backoff, breaker: Breaker) -> Self {
        let stats = Arc::new(TransportStats::new(breaker.gauge()));
        Self {
            sink,
            backoff,
            breaker,
            stats,
        }
    }

    /// The sink, e.g. to inspect a test double.
    pub fn sink(&self) -> &S {
        &self.sink
    }

    /// The backoff curve, replaceable while running (config reload).
    pub fn backoff(&self) -> &Backoff {
        &self.backoff
    }

    /// The breaker, to subscribe to its transitions or read its state.
    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// The counters, shareable with a metrics exporter.
    pub fn stats(&self) -> &Arc<TransportStats> {
        &self.stats
    }

    /// Delivers one batch, retrying until it is delivered, refused for its
    /// content (413, 400/422: the caller decides what to do with which
    /// events), or `shutdown` is cancelled.
    ///
    /// While the breaker is open this waits (sending nothing) until it goes
    /// half-open; after a retryable failure it waits
    /// `max(backoff, Retry-After)`. A receiver that refuses the sender
    /// (401, 403, 404, …, TLS) trips the breaker and the batch is held,
    /// probed again and again, until the receiver takes it. Cancelling `shutdown` ends any wait, or
    /// an attempt in flight, at once with [`Outcome::NotSent`]. Dropping the
    /// future is equally safe.
    pub async fn deliver(
        &self,
        batch_key: &str,
        body: &[u8],
        shutdown: &CancellationToken,
    ) -> Outcome {
        let mut attempts: u32 = 0;
        let mut failures: u32 = 0;
        loop {
            let Some(mut permit) = self.admitted(shutdown).await else {
                return Outcome::NotSent { attempts };
            };
            if attempts > 0 {
                self.stats.record_retry();
            }
            attempts = attempts.saturating_add(1);
            let attempt = tokio::select! {
                biased;
                attempt = self.sink.send(batch_key, body) => attempt,
                () = shutdown.cancelled() => return Outcome::NotSent { attempts },
            };
            match attempt {
                Attempt::Delivered => {
                    permit.settle(true);
                    self.stats.record_delivered(body.len());
                    self.stats.clear_refusal();
                    tracing::debug!(batch = batch_key, attempts, "batch delivered");
                    return Outcome::Delivered { attempts };
                }
                Attempt::TooLarge { reason } => {
                    // The hub answered, so the connection is healthy.
                    permit.settle(true);
                    self.stats.record_failed_attempt();
                    self.stats.clear_refusal();
                    tracing::info!(batch = batch_key, attempts, %reason,
                        "batch too large for the receiver; it will be split");
                    return Outcome::TooLarge { reason, attempts };
                }
                Attempt::Rejected { reason, events } => {
                    permit.settle(true);
                    self.stats.record_failed_attempt();
                    self.stats.clear_refusal();
                    tracing::info!(batch = batch_key, attempts, %reason, named = events.len(),
                        "receiver refused events of the batch");
                    return Outcome::Rejected {
                        reason,
                        events,
                        attempts,
                    };
                }
                Attempt::Refused { status, reason } => {
                    // Not an outage, and not the data's fault: hold the
                    // batch, stop sending until the next probe, and say so.
                    permit.trip();
                    self.stats.record_failed_attempt();
                    if self.stats.record_refusal(Refusal {
                        status,
                        reason: reason.clone(),
                    }) {
                        tracing::error!(batch = batch_key, attempts, %reason,
                            "receiver refused delivery; holding batches until it accepts them");
                    } else {
                        tracing::debug!(batch = batch_key, attempts, %reason,
                            "receiver still refuses delivery");
                    }
                }
                Attempt::Retry {
                    reason,
                    retry_after,
                } => {
                    permit.settle(false);
                    self.stats.record_failed_attempt();
                    let hinted = retry_after.unwrap_or_default().min(MAX_RETRY_AFTER);
                    let started = tokio::time::Instant::now();
                    let mut wait = self.backoff.delay(failures).max(hinted);
                    failures = failures.saturating_add(1);
                    tracing::warn!(batch = batch_key, attempts, %reason, ?wait,
                        breaker = self.breaker.state().as_str(), "batch delivery failed; will retry");
                    loop {
                        // Registered before sleeping, so a reload between
                        // drawing the delay and waiting is not missed.
                        let changed = self.backoff.changed().notified();
                        tokio::pin!(changed);
                        changed.as_mut().enable();
                        tokio::select! {
                            biased;
                            () = shutdown.cancelled() => return Outcome::NotSent { attempts },
                            () = tokio::time::sleep_until(started + wait) => break,
                            () = &mut changed => {
                                // New retry settings: re-draw this wait from
                                // the new curve (still honouring Retry-After).
                                wait = self.backoff.delay(failures - 1).max(hinted);
                                tracing::info!(batch = batch_key, ?wait, "retry settings changed; wait re-drawn");
                            }
                        }
                    }
                }
            }
        }
    }

    /// Waits until the breaker lets an attempt through, or returns `None` on
    /// shutdown.
    async fn admitted(&self, shutdown: &CancellationToken) -> Option<Permit<'_>> {
        loop {
            if shutdown.is_cancelled() {
                return None;
            }
            // Register for wake-ups before looking, so an outcome reported
            // between the look and the wait is not missed.
            let notified = self.breaker.changed().notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.breaker.admit() {
                Admission::Allowed { probe } => {
                    return Some(Permit {
                        breaker: &self.breaker,
                        probe,
                        settled: false,
                    });
                }
                Admission::OpenFor(wait) => {
                    tracing::debug!(?wait, "circuit open; holding batches");
                    tokio::select! {
                        biased;
                        () = shutdown.cancelled() => return None,
                        () = tokio::time::sleep(wait) => {}
                        () = &mut notified => {}
                    }
                }
                Admission::ProbeBusy => {
                    tokio::select! {
                        biased;
                        () = shutdown.cancelled() => return None,
                        () = &mut notified => {}
                    }
                }
            }
        }
    }
}

/// One admitted attempt. Reporting its result settles it; dropping it
/// unsettled (shutdown mid-send, or the future dropped) hands a half-open
/// probe slot back, so another batch can probe.
struct Permit<'a> {
    breaker: &'a Breaker,
    probe: bool,
    settled: bool,
}

impl Permit<'_> {
    /// The receiver refuses the sender: open the breaker at once.
    fn trip(&mut self) {
        self.settled = true;
        self.breaker.trip();
    }

    fn settle(&mut self, success: bool) {
        self.settled = true;
        if success {
            self.breaker.on_success();
        } else {
            self.breaker.on_failure();
        }
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if !self.settled && self.probe {
            self.breaker.release_probe();
        }
    }
}
