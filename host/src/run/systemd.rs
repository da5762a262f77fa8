//! systemd integration: the notify protocol of a `Type=notify` unit
//! (`examples/systemd/halyard.service`), through the `sd-notify` crate.
//!
//! - `READY=1` once the buffer is open, every plugin is loaded, every input
//!   is bound and the ship loops run ([`ready`]), so `systemctl start`
//!   returns only when the host takes events;
//! - `WATCHDOG=1` every half `WATCHDOG_USEC` (systemd's `WatchdogSec=`), but
//!   only while the host makes progress ([`watchdog`]): no pipeline worker
//!   holds one piece of work past `[health] stall_ms`, and no ship loop whose
//!   breaker is closed holds a delivery past the same limit plus the longest
//!   retry backoff. A stuck host stops pinging and systemd restarts it; a
//!   transport that is down (breaker open or half-open) is waiting, not
//!   stuck, and a restart would not help it, so it does not stop the pings;
//! - `STOPPING=1` when shutdown begins ([`stopping`]).
//!
//! Without `NOTIFY_SOCKET` (not under systemd) every message is a no-op.
//! Send errors are logged once and never stop the host.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use halyard_transport::{BreakerState, TransportStats};
use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

use super::Progress;

/// Set once a send failed, so a broken socket is logged once.
static SEND_FAILED: AtomicBool = AtomicBool::new(false);

fn send(state: &[NotifyState]) {
    if let Err(err) = sd_notify::notify(state)
        && !SEND_FAILED.swap(true, Ordering::Relaxed)
    {
        tracing::warn!(error = %err, "cannot notify systemd (NOTIFY_SOCKET)");
    }
}

/// Tells systemd the host is up: buffer, plugins, inputs and ship loops.
pub fn ready(inputs: usize) {
    let status = format!("running: {inputs} inputs");
    send(&[NotifyState::Ready, NotifyState::Status(&status)]);
}

/// Tells systemd the host is shutting down.
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// Reads one transport's breaker state.
pub type Breaker = Box<dyn Fn() -> BreakerState + Send + Sync>;

/// A transport's breaker, as the watchdog reads it.
pub fn breaker_of(stats: Arc<TransportStats>) -> Breaker {
    Box::new(move || stats.breaker_state())
}

/// What the watchdog judges: the pipeline workers, and each transport's
/// ship loop with its breaker.
pub struct Watched {
    /// The pipeline workers' progress (`[health] stall_ms`).
    pub pipeline: Arc<Progress>,
    /// The ship loops' progress, one slot per transport, in `transports`
    /// order.
    pub shippers: Arc<Progress>,
    /// Each transport's breaker state, read now (from its
    /// [`TransportStats::breaker_state`]).
    pub breakers: Vec<Breaker>,
}

impl Watched {
    /// Why the host is not making progress, or `None` when it is.
    pub fn stuck(&self) -> Option<String> {
        if let Some(held) = self.pipeline.stalled() {
            return Some(format!(
                "pipeline made no progress for {} s with work in hand",
                held.as_secs()
            ));
        }
        for (slot, breaker) in self.breakers.iter().enumerate() {
            if breaker() != BreakerState::Closed {
                continue;
            }
            if let Some(held) = self.shippers.stalled_on(slot) {
                return Some(format!(
                    "a ship loop held a delivery for {} s with its breaker closed",
                    held.as_secs()
                ));
            }
        }
        None
    }
}

/// The watchdog interval systemd asks for (`WATCHDOG_USEC`, for this
/// process), if any.
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled()
}

/// Pings `WATCHDOG=1` every `interval / 2` while `watched` makes progress,
/// until `stop`. It runs on the host's async runtime, so a runtime that
/// is wedged stops pinging too.
pub async fn watchdog(interval: Duration, watched: Watched, stop: CancellationToken) {
    let period = (interval / 2).max(Duration::from_millis(10));
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut withheld = false;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.cancelled() => return,
        }
        match watched.stuck() {
            None => {
                if withheld {
                    tracing::info!("systemd watchdog: progress again; pings resume");
                    withheld = false;
                }
                send(&[NotifyState::Watchdog]);
            }
            Some(reason) => {
                if !withheld {
                    tracing::warn!(%reason, "systemd watchdog: withholding pings");
                    withheld = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::atomic::AtomicU8;

    #[test]
    fn a_held_delivery_is_stuck_unless_its_breaker_is_open() {
        let state = Arc::new(AtomicU8::new(0));
        let read = state.clone();
        let watched = Watched {
            pipeline: Arc::new(Progress::new(Duration::from_secs(3600))),
            shippers: Arc::new(Progress::for_workers(Duration::ZERO, 1)),
            breakers: vec![Box::new(move || match read.load(Ordering::Relaxed) {
                0 => BreakerState::Closed,
                _ => BreakerState::Open,
            })],
        };
        assert_eq!(watched.stuck(), None, "idle");
        watched.shippers.begin_on(0);
        let started = std::time::Instant::now();
        while watched.stuck().is_none() {
            assert!(started.elapsed() < Duration::from_secs(5));
            std::hint::spin_loop();
        }
        assert!(watched.stuck().unwrap().contains("ship loop"));
        state.store(1, Ordering::Relaxed);
        assert_eq!(watched.stuck(), None, "a transport that is down waits");
        state.store(0, Ordering::Relaxed);
        assert!(watched.stuck().is_some());
        watched.shippers.end_on(0);
        assert_eq!(watched.stuck(), None);
    }
}
