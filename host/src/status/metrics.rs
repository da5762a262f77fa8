//! `GET /metrics`: everything in OpenMetrics text, encoded by
//! `prometheus-client`. One [`Collector`] reads the live sources on each
//! scrape (buffer stats, transport stats, plugin status, `/proc/self`), so
//! there is no second copy of any counter to drift.
//!
//! Naming: `halyard_<area>_<what>`, counters end in `_total` and values
//! carry their base unit (`_seconds`, `_bytes`); process figures use the
//! standard `process_*` names. Counters reset when the host restarts.

use std::fmt::Error;
use std::sync::Arc;

use halyard_transport::BreakerState;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};

use super::StatusState;
use super::process;
use crate::pipeline::StageCounters;

mod mqtt;

/// The registry served at `/metrics`.
pub fn registry(state: Arc<StatusState>) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(HostCollector { state }));
    registry
}

/// Encodes the registry as OpenMetrics text.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, registry).is_err() {
        out.clear();
    }
    out
}

#[derive(Debug)]
struct HostCollector {
    state: Arc<StatusState>,
}

type Labels = Vec<(&'static str, String)>;

fn counter(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: u64,
) -> Result<(), Error> {
    let m = enc.encode_descriptor(name, help, unit, MetricType::Counter)?;
    ConstCounter::new(value).encode(m)
}

fn gauge(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: f64,
) -> Result<(), Error> {
    let m = enc.encode_descriptor(name, help, unit, MetricType::Gauge)?;
    ConstGauge::new(value).encode(m)
}

fn counter_family(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &[(Labels, u64)],
) -> Result<(), Error> {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in rows {
        ConstCounter::new(*value).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

fn gauge_family(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: &[(Labels, f64)],
) -> Result<(), Error> {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in rows {
        ConstGauge::new(*value).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

impl Collector for HostCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), Error> {
        let s = &self.state;
        let enc = &mut enc;
        {
            let labels: Labels = vec![
                ("version", env!("CARGO_PKG_VERSION").to_string()),
                ("host_id", s.host_id.clone()),
            ];
            gauge_family(
                enc,
                "halyard_build_info",
                "The host's version and id (always 1).",
                &[(labels, 1.0)],
            )?;
        }
        gauge(
            enc,
            "halyard_uptime",
            "Time since the host started.",
            Some(&Unit::Seconds),
            s.started.elapsed().as_secs_f64(),
        )?;
        self.encode_plugins(enc)?;
        self.encode_buffer(enc)?;
        self.encode_transport(enc)?;
        mqtt::encode(&self.state, enc)?;
        counter(
            enc,
            "halyard_lifecycle_events",
            "Lifecycle events published.",
            None,
            s.lifecycle.published_total(),
        )?;
        gauge(
            enc,
            "halyard_stream_clients",
            "Clients connected to /events/stream.",
            None,
            s.stream.connected() as f64,
        )?;
        counter(
            enc,
            "halyard_stream_clients_dropped",
            "Stream clients dropped for falling behind.",
            None,
            s.stream.dropped_total(),
        )?;
        let p = process::read();
        if let Some(v) = p.cpu_seconds {
            let m = enc.encode_descriptor(
                "process_cpu",
                "User and system CPU time spent.",
                Some(&Unit::Seconds),
                MetricType::Counter,
            )?;
            ConstCounter::new(v).encode(m)?;
        }
        if let Some(v) = p.resident_bytes {
            gauge(
                enc,
                "process_resident_memory",
                "Resident memory size.",
                Some(&Unit::Bytes),
                v as f64,
            )?;
        }
        if let Some(v) = p.open_fds {
            gauge(
                enc,
                "process_open_fds",
                "Open file descriptors.",
                None,
                v as f64,
            )?;
        }
        if let Some(v) = process::free_disk_bytes(&s.buffer_path) {
            gauge(
                enc,
                "halyard_buffer_filesystem_free",
                "Free space on the buffer's filesystem.",
                Some(&Unit::Bytes),
                v as f64,
            )?;
        }
        Ok(())
    }
}

impl HostCollector {
    fn encode_plugins(&self, enc: &mut DescriptorEncoder) -> Result<(), Error> {
        let plugins = self.state.plugins.all();
        let labels = |p: &super::plugins::PluginStatus| -> Labels {
            let id = &p.identity;
            vec![
                ("stage", id.stage.as_str().to_string()),
                ("plugin", id.name.clone()),
                ("input", id.input.clone().unwrap_or_default()),
            ]
        };
        let rows = |f: fn(&StageCounters) -> u64| -> Vec<(Labels, u64)> {
            plugins
                .iter()
                .map(|p| (labels(p), f(&p.counters())))
                .collect()
        };
        counter_family(
            enc,
            "halyard_stage_events_in",
            "Events (frames, for decoders) handed to a stage's plugin.",
            &rows(|c| c.events_in),
        )?;
        counter_family(
            enc,
            "halyard_stage_events_out",
            "Events that came out of a stage.",
            &rows(|c| c.events_out),
        )?;
        counter_family(
            enc,
            "halyard_stage_events_rejected",
            "Events a stage rejected (validator, decode error, fail-closed); dead-lettered.",
            &rows(|c| c.rejected),
        )?;
        counter_family(
            enc,
            "halyard_stage_events_dropped",
            "Events a stage dropped (privacy, sampler, fail-closed).",
            &rows(|c| c.dropped),
        )?;
        counter_family(
            enc,
            "halyard_stage_output_refused",
            "Frames or events whose guest output broke a host cap; refused one by one \
             (already counted as rejected or dropped), never traps.",
            &rows(|c| c.refused),
        )?;
        counter_family(
            enc,
            "halyard_plugin_calls",
            "Calls into a plugin.",
            &rows(|c| c.calls),
        )?;
        counter_family(
            enc,
            "halyard_plugin_traps",
            "Plugin calls that trapped or returned bad output.",
            &rows(|c| c.traps),
        )?;
        let quarantines: Vec<(Labels, u64)> = plugins
            .iter()
            .map(|p| (labels(p), p.view().quarantines))
            .collect();
        counter_family(
            enc,
            "halyard_plugin_quarantines",
            "Times a plugin was quarantined.",
            &quarantines,
        )?;
        let quarantined: Vec<(Labels, f64)> = plugins
            .iter()
            .map(|p| (labels(p), f64::from(u8::from(p.is_quarantined()))))
            .collect();
        gauge_family(
            enc,
            "halyard_plugin_quarantined",
            "1 while a plugin is quarantined.",
            &quarantined,
        )?;
        let mut m = enc.encode_descriptor(
            "halyard_plugin_call_duration",
            "Wall time of one batch call into a plugin.",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for p in &plugins {
            let l = labels(p);
            p.latency().encode(m.encode_family(&l)?)?;
        }
        Ok(())
    }

    fn encode_buffer(&self, enc: &mut DescriptorEncoder) -> Result<(), Error> {
        let b = self.state.buffer.stats();
        let bytes = Some(&Unit::Bytes);
        gauge(
            enc,
            "halyard_buffer_events",
            "Events in the buffer, in flight or not.",
            None,
            b.records as f64,
        )?;
        gauge(
            enc,
            "halyard_buffer_size",
            "Accounted size of the buffered events.",
            bytes,
            b.bytes as f64,
        )?;
        gauge(
            enc,
            "halyard_buffer_max_size",
            "The buffer's configured bound.",
            bytes,
            self.state.buffer_max_bytes as f64,
        )?;
        gauge(
            enc,
            "halyard_buffer_oldest_age",
            "How long the oldest buffered event has waited (0 when empty).",
            Some(&Unit::Seconds),
            b.oldest_age.map(|d| d.as_secs_f64()).unwrap_or(0.0),
        )?;
        gauge(
            enc,
            "halyard_buffer_in_flight_events",
            "Buffered events leased to the transport.",
            None,
            b.leased_records as f64,
        )?;
        gauge(
            enc,
            "halyard_buffer_dead_letters",
            "Records in the dead-letter table.",
            None,
            b.dead_letters as f64,
        )?;
        gauge(
            enc,
            "halyard_buffer_dead_letter_size",
            "Accounted size of the dead-letter table (bounded by dead_letter_max_mb).",
            bytes,
            b.dead_letter_bytes as f64,
        )?;
        counter(
            enc,
            "halyard_buffer_dead_letters_evicted",
            "Oldest dead letters evicted to keep the table within its bounds.",
            None,
            b.dead_letters_pruned_total,
        )?;
        counter(
            enc,
            "halyard_buffer_dead_letters_evicted_size",
            "Accounted bytes of the evicted dead letters.",
            bytes,
            b.dead_letters_pruned_bytes_total,
        )?;
        counter(
            enc,
            "halyard_buffer_appended_events",
            "Events committed to the buffer (accepted).",
            None,
            b.appended_total,
        )?;
        counter(
            enc,
            "halyard_buffer_acked_events",
            "Events removed after delivery.",
            None,
            b.acked_total,
        )?;
        counter(
            enc,
            "halyard_buffer_evicted_events",
            "Buffered events evicted to make room (drop_oldest).",
            None,
            b.evicted_oldest_total,
        )?;
        counter(
            enc,
            "halyard_buffer_dropped_events",
            "New events refused because the buffer was full.",
            None,
            b.dropped_newest_total,
        )?;
        counter(
            enc,
            "halyard_buffer_damage_lost_events",
            "Buffered events lost because the buffer file was damaged (unreadable rows).",
            None,
            b.damage_lost_total,
        )?;
        counter(
            enc,
            "halyard_buffer_damage_repairs",
            "Times a damaged buffer file was salvaged into a fresh one while running.",
            None,
            b.damage_repairs_total,
        )
    }

    /// One family per figure, one row per transport (`transport="name"`).
    fn encode_transport(&self, enc: &mut DescriptorEncoder) -> Result<(), Error> {
        let snaps: Vec<(Labels, halyard_transport::StatsSnapshot)> = self
            .state
            .transports
            .iter()
            .map(|t| (vec![("transport", t.name.clone())], t.stats.snapshot()))
            .collect();
        let family = |enc: &mut DescriptorEncoder,
                      name: &str,
                      help: &str,
                      unit: Option<&Unit>,
                      value: fn(&halyard_transport::StatsSnapshot) -> u64|
         -> Result<(), Error> {
            let mut m = enc.encode_descriptor(name, help, unit, MetricType::Counter)?;
            for (labels, snap) in &snaps {
                ConstCounter::new(value(snap)).encode(m.encode_family(labels)?)?;
            }
            Ok(())
        };
        family(
            enc,
            "halyard_transport_batches_sent",
            "Batches the receiver accepted.",
            None,
            |t| t.batches_sent,
        )?;
        family(
            enc,
            "halyard_transport_batches_failed",
            "Delivery attempts that failed (retryable or refused).",
            None,
            |t| t.batches_failed,
        )?;
        family(
            enc,
            "halyard_transport_batches_retried",
            "Delivery attempts that re-sent a batch.",
            None,
            |t| t.retries,
        )?;
        family(
            enc,
            "halyard_transport_batches_dead_lettered",
            "Batches (or parts) with events the receiver refused for good.",
            None,
            |t| t.dead_lettered,
        )?;
        family(
            enc,
            "halyard_transport_events_dead_lettered",
            "Events the receiver refused for their content (400/422 naming them, 413 alone), moved to the dead-letter table.",
            None,
            |t| t.events_dead_lettered,
        )?;
        family(
            enc,
            "halyard_transport_refused",
            "Attempts the receiver refused as from this sender (401, 403, 404, …, TLS); the batch was held.",
            None,
            |t| t.refused,
        )?;
        family(
            enc,
            "halyard_transport_sent",
            "Body bytes (before compression) of delivered batches.",
            Some(&Unit::Bytes),
            |t| t.bytes_sent,
        )?;
        let states = [
            BreakerState::Closed,
            BreakerState::Open,
            BreakerState::HalfOpen,
        ];
        let rows: Vec<(Labels, f64)> = snaps
            .iter()
            .flat_map(|(labels, snap)| {
                states.iter().map(move |st| {
                    let mut labels = labels.clone();
                    labels.push(("state", st.as_str().to_string()));
                    (labels, f64::from(u8::from(*st == snap.breaker_state)))
                })
            })
            .collect();
        gauge_family(
            enc,
            "halyard_transport_breaker_state",
            "1 for each transport's circuit breaker's current state.",
            &rows,
        )?;
        let progress = self.state.buffer.consumer_stats();
        let pending: Vec<(Labels, f64)> = progress
            .iter()
            .map(|c| (vec![("transport", c.name.clone())], c.pending as f64))
            .collect();
        gauge_family(
            enc,
            "halyard_transport_pending_events",
            "Buffered events this transport has yet to deliver (its backlog).",
            &pending,
        )?;
        let oldest: Vec<(Labels, f64)> = progress
            .iter()
            .map(|c| {
                let age = c.oldest_age.map_or(0.0, |d| d.as_secs_f64());
                (vec![("transport", c.name.clone())], age)
            })
            .collect();
        gauge_family(
            enc,
            "halyard_transport_oldest_pending_age_seconds",
            "How long this transport's oldest undelivered event has waited (0 when none).",
            &oldest,
        )
    }
}
