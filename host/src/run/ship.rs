//! The shipper: takes batches out of the buffer and delivers them. One
//! ship loop runs per transport, reading as that transport's buffer
//! consumer with its own delivery (backoff, breaker) and limits, so a
//! transport that is down holds only its own backlog.
//!
//! Invariants:
//! - a batch closes when it holds `max_events` events or `max_bytes`, or
//!   when its oldest event has waited `max_age`;
//! - a batch is acknowledged (deleted from the buffer) only after every one
//!   of its events is at the receiver or was refused by it for its content
//!   (400/422 naming it, or 413 for the event alone — see [`super::split`]);
//!   those refused events go to the dead-letter table with the receiver's
//!   reason first, then the batch is acknowledged, so a crash in between
//!   re-sends the batch (the receiver de-duplicates) rather than losing the
//!   refused events. A receiver refusing the *sender* (401, 403, …) never
//!   settles a batch: it is held until the receiver takes it. Shutdown
//!   releases a batch to be sent again after a restart.

use std::sync::Arc;
use std::time::Duration;

use halyard_buffer::{Batch, Buffer, Record};
use halyard_transport::{AnySink, Delivery};
use halyard_trust::usage::{Counter, UsageWindow};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::split::{self, Settlement};
use crate::licence::Licence;

/// When a batch closes. Replaceable while running: a config reload sends
/// new limits through the watch channel in [`ShipSettings::limits`], and
/// the next batch is cut by them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Most events per batch.
    pub max_events: usize,
    /// Most payload bytes per batch.
    pub max_bytes: usize,
    /// Longest the oldest event waits for a fuller batch.
    pub max_age: Duration,
    /// Most batches being delivered at once.
    pub max_in_flight: usize,
}

/// Batch limits and the host identity carried in every batch.
#[derive(Debug, Clone)]
pub struct ShipSettings {
    /// The transport this loop ships for: its buffer consumer name.
    pub transport: String,
    /// The batch limits in force; changes apply from the next batch.
    pub limits: watch::Receiver<BatchLimits>,
    /// The host id on the wire.
    pub host_id: String,
    /// The licence whose state gates shipping and is named in every
    /// batch; `None` ships unconditionally (tools, benchmarks).
    pub licence: Option<Arc<Licence>>,
    /// Where delivered events are counted for the heartbeat; given to one
    /// transport only (the first), so an event delivered to several
    /// transports is counted once.
    pub usage: Option<Arc<UsageWindow>>,
    /// Where this loop marks a delivery in hand (slot `.1`): held since the
    /// first batch went out with none in flight, or since the last one
    /// settled. The systemd watchdog stops pinging when that is too long
    /// ([`super::systemd`]).
    pub progress: Option<(Arc<super::Progress>, usize)>,
}

/// Counts of what the shipper did, for logs and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ShipReport {
    /// Batches delivered.
    pub batches_delivered: u64,
    /// Events in delivered batches.
    pub events_delivered: u64,
    /// Batches some (or all) of whose events the receiver refused for
    /// their content, so they went to the dead-letter table.
    pub batches_dead_lettered: u64,
    /// The events of those batches that went to the dead-letter table.
    pub events_dead_lettered: u64,
}

/// Ships until `drain` is set and the buffer is empty, or `hard_stop` fires.
///
/// Up to `max_in_flight` batches are delivered at once (each its own
/// buffer lease, acknowledged as it completes), so the receiver's commit of
/// one batch overlaps the reading and sending of the next.
pub async fn ship(
    buffer: Arc<Buffer>,
    delivery: Arc<Delivery<AnySink>>,
    mut settings: ShipSettings,
    appended: Arc<Notify>,
    drain: CancellationToken,
    hard_stop: CancellationToken,
) -> ShipReport {
    let mut report = ShipReport::default();
    let mut licence = settings.licence.as_ref().map(|l| l.subscribe());
    let mut in_flight: JoinSet<(Batch, Settlement)> = JoinSet::new();
    // Set when a batch came back unsent (hard stop): take no more.
    let mut stopping = false;
    // Breaker transitions are published as lifecycle events (and so
    // logged) by `run::observe`.
    loop {
        while let Some(done) = in_flight.try_join_next() {
            stopping |= settle(&buffer, &delivery, &settings, &mut report, done);
            mark_settled(&settings, in_flight.is_empty());
        }
        if hard_stop.is_cancelled() || stopping {
            break;
        }
        if let Some(rx) = &mut licence
            && !rx.borrow_and_update().ships()
        {
            // Expired: events stay in the buffer (held, never dropped)
            // until the licence is valid again.
            if drain.is_cancelled() && in_flight.is_empty() {
                break;
            }
            tokio::select! {
                _ = rx.changed() => {}
                Some(done) = in_flight.join_next() => {
                    stopping |= settle(&buffer, &delivery, &settings, &mut report, done);
            mark_settled(&settings, in_flight.is_empty());
                }
                _ = drain.cancelled(), if !drain.is_cancelled() => {}
                _ = hard_stop.cancelled() => break,
            }
            continue;
        }
        let limits = *settings.limits.borrow_and_update();
        let Some(stats) = buffer.consumer_progress(&settings.transport) else {
            tracing::error!(transport = %settings.transport, "no buffer consumer for this transport");
            break;
        };
        let ready = stats.pending.saturating_sub(stats.leased);
        let draining = drain.is_cancelled();
        let full = in_flight.len() >= limits.max_in_flight.max(1);
        let wait_for_more = ready == 0
            || (!draining && (ready as usize) < limits.max_events && {
                let age = stats.oldest_age.unwrap_or_default();
                age < limits.max_age
            });
        if full || wait_for_more {
            if ready == 0 && draining && in_flight.is_empty() {
                break;
            }
            // Only a partial batch waits out its age.
            let age_left = (!full && ready > 0).then(|| {
                limits
                    .max_age
                    .saturating_sub(stats.oldest_age.unwrap_or_default())
            });
            tokio::select! {
                Some(done) = in_flight.join_next() => {
                    stopping |= settle(&buffer, &delivery, &settings, &mut report, done);
            mark_settled(&settings, in_flight.is_empty());
                }
                _ = appended.notified(), if !full => {}
                _ = sleep_or_never(age_left) => {}
                _ = limits_changed(&mut settings.limits) => {}
                _ = drain.cancelled(), if !draining => {}
                _ = hard_stop.cancelled() => break,
            }
            continue;
        }
        let batch = {
            let buffer = buffer.clone();
            let (n, b) = (limits.max_events, limits.max_bytes);
            let name = settings.transport.clone();
            match tokio::task::spawn_blocking(move || buffer.next_whole_batch_for(&name, n, b))
                .await
            {
                Ok(Ok(Some(batch))) => batch,
                Ok(Ok(None)) => continue,
                Ok(Err(err)) => {
                    tracing::error!(error = %err, transport = %settings.transport, "cannot read from the buffer");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                Err(_) => break,
            }
        };
        let state = settings.licence.as_ref().map(|l| l.state().name());
        let host_id = settings.host_id.clone();
        let (delivery, hard_stop) = (delivery.clone(), hard_stop.clone());
        in_flight.spawn(async move {
            let encode =
                |key: &str, records: &[&Record]| encode_records(key, records, &host_id, state);
            let settled = split::deliver(&delivery, &batch, encode, &hard_stop).await;
            (batch, settled)
        });
        if in_flight.len() == 1
            && let Some((progress, slot)) = &settings.progress
        {
            progress.begin_on(*slot);
        }
    }
    // A hard stop ends every delivery at once with `NotSent`; each batch is
    // released to be sent again after a restart.
    while let Some(done) = in_flight.join_next().await {
        settle(&buffer, &delivery, &settings, &mut report, done);
    }
    mark_settled(&settings, true);
    report
}

/// A delivery settled: the loop made progress. With more in flight, the
/// next one is held from now; with none, the loop is idle.
fn mark_settled(settings: &ShipSettings, idle: bool) {
    if let Some((progress, slot)) = &settings.progress {
        if idle {
            progress.end_on(*slot);
        } else {
            progress.begin_on(*slot);
        }
    }
}

/// Records one finished delivery: acknowledge (after dead-lettering any
/// refused events), or release the batch. Returns true if it was not sent
/// (the shipper is stopping).
fn settle(
    buffer: &Buffer,
    delivery: &Delivery<AnySink>,
    settings: &ShipSettings,
    report: &mut ShipReport,
    done: Result<(Batch, Settlement), tokio::task::JoinError>,
) -> bool {
    let Ok((batch, settlement)) = done else {
        // The task panicked or was cancelled: its lease is released when
        // the batch drops at restart at the latest; nothing was acked.
        return true;
    };
    let Settlement::Done {
        delivered, dead, ..
    } = settlement
    else {
        buffer.nack(&batch);
        return true;
    };
    report.batches_delivered += u64::from(delivered > 0);
    report.events_delivered += delivered;
    if let Some(usage) = &settings.usage {
        count_delivered(usage, &batch, |i| !dead.contains_key(&i));
    }
    let groups = split::dead_letter_groups(&batch, &dead);
    // The refused events are dead-lettered in the ack's own transaction: a
    // crash re-sends the whole batch (duplicates the receiver drops), and
    // never leaves them both buffered and dead-lettered.
    if let Err(err) = buffer.ack_with_dead_letters(&batch, &groups) {
        tracing::error!(error = %err, batch = %batch.key(), transport = %settings.transport,
            "delivered batch not acknowledged; it will be re-sent");
        buffer.nack(&batch);
        return false;
    }
    if !dead.is_empty() {
        let events = dead.len() as u64;
        report.batches_dead_lettered += 1;
        report.events_dead_lettered += events;
        delivery.stats().record_dead_letter(events);
        tracing::warn!(batch = %batch.key(), transport = %settings.transport, dead_lettered = events, delivered,
            reasons = ?groups.iter().map(|d| d.reason.as_str()).collect::<std::collections::BTreeSet<_>>(),
            "events refused by the receiver dead-lettered; the rest delivered");
    }
    false
}

/// Sleeps for `d`, or forever when there is nothing to wait for.
async fn sleep_or_never(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// Resolves when new batch limits arrive; never, once nobody can send any
/// (the reloader stopped), so a closed channel cannot spin the loop.
async fn limits_changed(limits: &mut watch::Receiver<BatchLimits>) {
    if limits.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The wire body: `{"batch_id", "host": {"id", "version"}, "events": [...]}`,
/// built by concatenating the stored event JSON without re-parsing it.
pub fn encode(batch: &Batch, host_id: &str) -> Vec<u8> {
    encode_with(batch, host_id, None)
}

/// [`encode`] with the licence state in the batch metadata
/// (`"licence":"dev"` in dev mode), so a receiver can tell unlicensed data.
pub fn encode_with(batch: &Batch, host_id: &str, licence: Option<&str>) -> Vec<u8> {
    let records: Vec<&Record> = batch.records.iter().collect();
    encode_records(&batch.key(), &records, host_id, licence)
}

/// The wire body of `records` under `batch_id`: a whole batch, or a part
/// of one that is delivered on its own.
pub fn encode_records(
    batch_id: &str,
    records: &[&Record],
    host_id: &str,
    licence: Option<&str>,
) -> Vec<u8> {
    let mut head = serde_json::json!({
        "batch_id": batch_id,
        "host": {"id": host_id, "version": env!("CARGO_PKG_VERSION")},
    });
    if let (Some(state), Some(obj)) = (licence, head.as_object_mut()) {
        obj.insert("licence".into(), state.into());
    }
    let head = head.to_string();
    let payload: usize = records.iter().map(|r| r.payload.len()).sum();
    let mut body = Vec::with_capacity(head.len() + payload + records.len() + 16);
    body.extend_from_slice(&head.as_bytes()[..head.len() - 1]);
    body.extend_from_slice(b",\"events\":[");
    for (i, record) in records.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(&record.payload);
    }
    body.extend_from_slice(b"]}");
    body
}

/// Counts the delivered events of `batch` (those `taken` says were not
/// refused) by kind for the heartbeat. Kinds come from the buffer's chunks
/// ([`Batch::kind`]), stored at the commit; only an event stored without
/// one (usage counting was off when it was committed, or a replay) has
/// its payload parsed.
fn count_delivered(usage: &UsageWindow, batch: &Batch, taken: impl Fn(usize) -> bool) {
    // Batches hold few kinds: a short list beats a map, and runs of one
    // kind (the usual case) cost one comparison per event.
    let mut kinds: Vec<(std::borrow::Cow<'_, str>, u64)> = Vec::new();
    for (i, record) in batch.records.iter().enumerate() {
        if !taken(i) {
            continue;
        }
        let kind = match batch.kind(i) {
            Some(kind) => std::borrow::Cow::Borrowed(kind),
            None => std::borrow::Cow::Owned(
                super::transports::kind_of(&record.payload)
                    .unwrap_or_else(|| "(unknown)".to_owned()),
            ),
        };
        match kinds.iter_mut().rev().find(|(k, _)| *k == kind) {
            Some((_, n)) => *n += 1,
            None => kinds.push((kind, 1)),
        }
    }
    for (kind, n) in kinds {
        usage.add(&kind, Counter::Delivered, n);
    }
}
