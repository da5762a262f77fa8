//! The audit trail: every lifecycle event the host publishes (plugin
//! loaded, swapped, rolled back or quarantined; config reloaded or refused;
//! licence state changes; breaker transitions; buffer damage; host start
//! and stop) is also kept in `data_dir/audit.db`, a bounded SQLite table
//! that survives restarts and that `halyard audit` prints.
//!
//! Guarantees and bounds:
//! - publishing never blocks the publisher: events go through a bounded
//!   queue ([`QUEUE`]) to one writer thread. When the queue is full the
//!   event is counted, and the writer adds an `audit.dropped` row with the
//!   count, so a gap in the trail is never silent;
//! - the table keeps at most `[audit] max_rows` rows (oldest evicted first,
//!   counted; `halyard audit` says how many) and each payload at most
//!   [`store::MAX_PAYLOAD_BYTES`], so a flapping input or a trapping guest
//!   cannot grow it without bound;
//! - each write is committed before the writer takes the next (WAL,
//!   `synchronous = NORMAL`): a killed host keeps every event written; a
//!   power cut may lose the last few;
//! - a clean stop waits (bounded) for the queue to drain, so `host.stop` is
//!   in the trail.
//!
//! A failure to open or write the audit file is logged and never stops the
//! data path.

pub mod store;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub use store::{AuditError, AuditFilter, AuditRow, AuditStore};

use crate::lifecycle::LifecycleEvent;

/// The audit file's name in `data_dir`.
pub const FILE_NAME: &str = "audit.db";

/// Events waiting for the writer at most; more are dropped and counted.
pub const QUEUE: usize = 1024;

/// Events the writer commits in one transaction at most.
const WRITE_BATCH: usize = 256;

/// Progress the writer reports, so [`AuditLog::flush`] can wait for it.
#[derive(Debug, Default)]
struct Written {
    /// Events taken off the queue and either written or given up on.
    done: Mutex<u64>,
    changed: Condvar,
}

/// The publishing side of the audit trail: cheap to clone, never blocks.
#[derive(Debug, Clone)]
pub struct AuditLog {
    tx: SyncSender<LifecycleEvent>,
    /// Events queued since start.
    queued: Arc<AtomicU64>,
    /// Events the full queue refused since start.
    dropped: Arc<AtomicU64>,
    written: Arc<Written>,
}

impl AuditLog {
    /// Opens `data_dir/audit.db` (0600) keeping `max_rows` rows, and starts
    /// its writer thread.
    pub fn open(data_dir: &Path, max_rows: u64) -> Result<AuditLog, AuditError> {
        let path = data_dir.join(FILE_NAME);
        let io = |source| AuditError::Io {
            path: path.display().to_string(),
            source,
        };
        crate::data_dir::precreate_private(&path).map_err(io)?;
        let store = AuditStore::open(&path, max_rows)?;
        crate::data_dir::tighten_sqlite(&path).map_err(io)?;
        let (tx, rx) = sync_channel(QUEUE);
        let log = AuditLog {
            tx,
            queued: Arc::new(AtomicU64::new(0)),
            dropped: Arc::new(AtomicU64::new(0)),
            written: Arc::new(Written::default()),
        };
        let (dropped, written) = (log.dropped.clone(), log.written.clone());
        std::thread::Builder::new()
            .name("halyard-audit".into())
            .spawn(move || write_loop(store, rx, &dropped, &written))
            .map_err(io)?;
        Ok(log)
    }

    /// Queues `event` for the trail, or counts it dropped if the queue is
    /// full (the writer is behind or its disk is stuck).
    pub fn offer(&self, event: &LifecycleEvent) {
        match self.tx.try_send(event.clone()) {
            Ok(()) => {
                self.queued.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Events the full queue refused since start.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Waits until every event queued so far is written, or `timeout`
    /// passes; says whether it all was.
    pub fn flush(&self, timeout: Duration) -> bool {
        let target = self.queued.load(Ordering::Relaxed);
        let deadline = Instant::now() + timeout;
        let mut done = self.written.done.lock().unwrap_or_else(|e| e.into_inner());
        while *done < target {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            done = self
                .written
                .changed
                .wait_timeout(done, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }
}

/// The writer thread: takes what is queued (up to [`WRITE_BATCH`] at a
/// time), writes it in one transaction, reports progress; ends when every
/// [`AuditLog`] is gone.
fn write_loop(
    mut store: AuditStore,
    rx: Receiver<LifecycleEvent>,
    dropped: &AtomicU64,
    written: &Written,
) {
    let mut dropped_recorded = 0;
    let mut failing = false;
    while let Ok(first) = rx.recv() {
        let mut events = vec![first];
        while events.len() < WRITE_BATCH {
            match rx.try_recv() {
                Ok(e) => events.push(e),
                Err(_) => break,
            }
        }
        let taken = events.len() as u64;
        let dropped_now = dropped.load(Ordering::Relaxed);
        if dropped_now > dropped_recorded {
            events.push(LifecycleEvent::new(
                "audit.dropped",
                &crate::lifecycle::new_correlation_id(),
                serde_json::json!({"events": dropped_now - dropped_recorded,
                    "why": "the audit queue was full"}),
            ));
        }
        match store.append(&events) {
            Ok(()) => {
                dropped_recorded = dropped_now;
                if failing {
                    tracing::info!("audit trail writable again");
                    failing = false;
                }
            }
            Err(err) => {
                // Logged once per episode; these events are not kept.
                if !failing {
                    tracing::error!(error = %err, "audit trail write failed");
                    failing = true;
                }
                dropped.fetch_add(taken, Ordering::Relaxed);
            }
        }
        let mut done = written.done.lock().unwrap_or_else(|e| e.into_inner());
        *done += taken;
        written.changed.notify_all();
    }
}
