//! Wiring of what operators see into `halyard run`: the status server,
//! lifecycle events for the host, the breaker and the buffer, and
//! (optionally) lifecycle events appended to the buffer as events.
//!
//! Invariant: none of this can stop the data path. A status address that
//! cannot be bound is logged and the host runs without the server; the
//! watchers only read stats and subscribe to broadcasts.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use halyard_buffer::{Buffer, Record};
use halyard_transport::{AnySink, BreakerState, Delivery};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::HostConfig;
use crate::event;
use crate::lifecycle::{Lifecycle, LifecycleEvent, new_correlation_id};
use crate::pipeline::{Pipeline, PipelineError};
use crate::plugin::Event;
use crate::status::health::LOSS_WINDOW;
use crate::status::plugins::{PluginRegistry, Registrar};
use crate::status::stream::StreamClients;
use crate::status::{BUFFER_WATCH_INTERVAL, StatusServer, StatusState};
use crate::tap::Tap;

/// How long the status server and watchers get to finish at shutdown.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// The tap and lifecycle publisher of one run, made before anything loads
/// so that load failures are published too.
pub struct Channels {
    /// The live tap.
    pub tap: Tap,
    /// The lifecycle publisher.
    pub lifecycle: Lifecycle,
    /// Lifecycle events bound for the buffer, when configured.
    pub into_pipeline: Option<mpsc::Receiver<LifecycleEvent>>,
    /// Links `host.start` and `host.stop`.
    pub run_id: String,
    /// The licence whose state `/health` shows; set once it is checked.
    pub licence: Option<Arc<crate::licence::Licence>>,
    /// The pipeline thread's progress, which `/health` judges.
    pub progress: Arc<super::progress::Progress>,
}

impl Channels {
    /// Channels per `[health]` and `[lifecycle]`.
    pub fn new(config: &HostConfig) -> Self {
        let tap = Tap::new(config.health.stream_buffer);
        let mut lifecycle = Lifecycle::new(tap.clone());
        if config.audit.enabled {
            match crate::audit::AuditLog::open(&config.host.data_dir, config.audit.max_rows) {
                Ok(audit) => lifecycle = lifecycle.with_audit(audit),
                // The trail is for people; the data path runs without it.
                Err(err) => tracing::error!(error = %err, "audit trail not kept"),
            }
        }
        let (lifecycle, into_pipeline) = if config.lifecycle.into_pipeline {
            let (l, rx) = lifecycle.with_pipeline(1024);
            (l, Some(rx))
        } else {
            (lifecycle, None)
        };
        Channels {
            tap,
            lifecycle,
            into_pipeline,
            run_id: new_correlation_id(),
            licence: None,
            progress: Arc::new(super::progress::Progress::for_workers(
                Duration::from_millis(config.health.stall_ms),
                config.pipeline.workers(),
            )),
        }
    }

    /// Publishes `plugin.rejected` for a pipeline that could not be built.
    pub fn rejected(&self, err: &PipelineError) {
        if let PipelineError::Plugin { role, path, source } = err {
            self.lifecycle.emit(
                "plugin.rejected",
                &new_correlation_id(),
                serde_json::json!({"role": role, "file": path, "reason": source.to_string()}),
            );
        }
    }
}

/// How long the end of a run waits for the audit trail to take what was
/// published (`host.stop`, or why the start failed).
const AUDIT_FLUSH: Duration = Duration::from_secs(2);

impl Drop for Channels {
    /// Whether the run ends cleanly or its start fails, what it published
    /// reaches the audit trail before the process exits (bounded).
    fn drop(&mut self) {
        if let Some(audit) = self.lifecycle.audit()
            && !audit.flush(AUDIT_FLUSH)
        {
            tracing::warn!("audit trail: not every event was written before exit");
        }
    }
}

/// The running observers of one run.
pub struct Observer {
    /// What the status server reads.
    pub state: Arc<StatusState>,
    run_id: String,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Observer {
    /// Registers the pipeline's plugins, binds the status server and starts
    /// the watchers.
    pub async fn start(
        config: &HostConfig,
        host_id: &str,
        channels: &mut Channels,
        buffer: &Arc<Buffer>,
        buffer_path: PathBuf,
        transports: &[super::transports::Transport],
        pipeline: &mut Pipeline,
    ) -> Observer {
        let stop = CancellationToken::new();
        let plugins = Arc::new(PluginRegistry::default());
        register_plugins(pipeline, &plugins, &channels.lifecycle, &channels.tap);
        let state = Arc::new(StatusState {
            started: Instant::now(),
            host_id: host_id.to_string(),
            buffer: buffer.clone(),
            buffer_path,
            buffer_max_bytes: config.buffer.max_mb << 20,
            transports: transports
                .iter()
                .map(|t| crate::status::TransportStatus {
                    name: t.name.clone(),
                    stats: t.delivery.stats().clone(),
                })
                .collect(),
            plugins,
            tap: channels.tap.clone(),
            lifecycle: channels.lifecycle.clone(),
            stream: Arc::new(StreamClients::default()),
            last_loss: Mutex::new(None),
            shutdown: stop.clone(),
            licence: channels.licence.clone(),
            progress: Some(channels.progress.clone()),
            damage: Mutex::new(None),
            damage_degraded: Duration::from_millis(config.health.damage_degraded_ms),
            mqtt_inputs: Mutex::new(Vec::new()),
            token: crate::status::auth::token_from(config.health.token.as_ref()),
        });
        let mut tasks = Vec::new();
        let mut listen = None;
        if config.health.enabled {
            match StatusServer::bind(config.health.listen, state.clone()).await {
                Ok(server) => {
                    listen = server.local_addr();
                    if let Some(addr) = listen {
                        tracing::info!(%addr, "status server listening");
                    }
                    let stop = stop.clone();
                    tasks.push(tokio::spawn(
                        server.serve(async move { stop.cancelled().await }),
                    ));
                }
                Err(err) => tracing::error!(addr = %config.health.listen, error = %err,
                    "cannot bind the status server; running without /health, /metrics and /events/stream"),
            }
        }
        for t in transports {
            tasks.push(tokio::spawn(watch_breaker(
                t.name.clone(),
                t.delivery.clone(),
                channels.lifecycle.clone(),
                stop.clone(),
            )));
            tasks.push(tokio::spawn(watch_refusals(
                t.name.clone(),
                t.delivery.clone(),
                channels.lifecycle.clone(),
                stop.clone(),
            )));
        }
        tasks.push(tokio::spawn(watch_buffer(state.clone(), stop.clone())));
        channels.lifecycle.emit(
            "host.start",
            &channels.run_id,
            serde_json::json!({"host_id": host_id, "version": env!("CARGO_PKG_VERSION"),
                "pid": std::process::id(), "status_listen": listen.map(|a| a.to_string())}),
        );
        Observer {
            state,
            run_id: channels.run_id.clone(),
            stop,
            tasks,
        }
    }

    /// Appends lifecycle events from `rx` to the buffer as ordinary events
    /// (kind `halyard.<kind>`), waking the shipper through `appended`.
    pub fn append_lifecycle(
        &mut self,
        mut rx: mpsc::Receiver<LifecycleEvent>,
        appended: Arc<Notify>,
    ) {
        let buffer = self.state.buffer.clone();
        let host_id = self.state.host_id.clone();
        let stop = self.stop.clone();
        self.tasks.push(tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    e = rx.recv() => match e { Some(e) => e, None => break },
                    _ = stop.cancelled() => break,
                };
                let record = lifecycle_record(&event, &host_id);
                let buffer = buffer.clone();
                match tokio::task::spawn_blocking(move || buffer.append(&[record])).await {
                    Ok(Ok(_)) => appended.notify_one(),
                    Ok(Err(err)) => {
                        tracing::warn!(error = %err, "lifecycle event not buffered")
                    }
                    Err(_) => break,
                }
            }
        }));
    }

    /// Publishes `host.stop` with the run's totals, then stops the server
    /// and the watchers.
    pub async fn stop(self, totals: serde_json::Value) {
        self.state.lifecycle.emit("host.stop", &self.run_id, totals);
        self.stop.cancel();
        for mut task in self.tasks {
            // Nothing here may hold up the exit: a stuck client connection
            // is cut after a grace period.
            if tokio::time::timeout(STOP_GRACE, &mut task).await.is_err() {
                task.abort();
            }
        }
    }
}

/// Adds every stage of `pipeline` to `registry`, hooks each up to the
/// lifecycle publisher, and offers committed events to `tap`. The pipeline
/// keeps the registrar for stages a config reload adds later.
fn register_plugins(
    pipeline: &mut Pipeline,
    registry: &Arc<PluginRegistry>,
    lifecycle: &Lifecycle,
    tap: &Tap,
) {
    pipeline.set_tap(tap.clone());
    let registrar = Registrar::new(registry.clone(), lifecycle.clone());
    let statuses = pipeline
        .stages_with_roles()
        .into_iter()
        .map(|(kind, input, stage)| registrar.observe(kind, input, stage))
        .collect();
    registrar.list(statuses);
    pipeline.set_registrar(registrar);
}

/// Publishes every breaker transition of transport `name` as
/// `breaker.<state>` (the payload names the transport); one outage
/// (open … closed) shares a correlation id.
async fn watch_breaker(
    name: String,
    delivery: Arc<Delivery<AnySink>>,
    lifecycle: Lifecycle,
    stop: CancellationToken,
) {
    let mut transitions = delivery.breaker().subscribe();
    let mut outage = new_correlation_id();
    loop {
        let t = tokio::select! {
            t = transitions.recv() => t,
            _ = stop.cancelled() => break,
        };
        match t {
            Ok(t) => {
                if t.from == BreakerState::Closed {
                    outage = new_correlation_id();
                }
                lifecycle.emit(
                    &format!("breaker.{}", t.to.as_str()),
                    &outage,
                    serde_json::json!({"transport": name, "from": t.from.as_str(), "to": t.to.as_str(),
                        "consecutive_failures": delivery.breaker().consecutive_failures()}),
                );
            }
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "missed breaker transitions")
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
        }
    }
}

/// Publishes `transport.refused` when the receiver starts refusing this
/// sender (or refuses with another status), and `transport.accepted` when a
/// delivery succeeds again; one episode shares a correlation id.
async fn watch_refusals(
    name: String,
    delivery: Arc<Delivery<AnySink>>,
    lifecycle: Lifecycle,
    stop: CancellationToken,
) {
    let mut refusals = delivery.stats().subscribe_refusals();
    let mut episode: Option<String> = None;
    loop {
        tokio::select! {
            changed = refusals.changed() => if changed.is_err() { break },
            _ = stop.cancelled() => break,
        }
        let now = refusals.borrow_and_update().clone();
        match (now, &episode) {
            (Some(refusal), _) => {
                let id = episode.get_or_insert_with(new_correlation_id);
                lifecycle.emit(
                    "transport.refused",
                    id,
                    serde_json::json!({"transport": name, "status": refusal.status, "reason": refusal.reason,
                        "held": "batches stay buffered until the receiver accepts them"}),
                );
            }
            (None, Some(id)) => {
                lifecycle.emit(
                    "transport.accepted",
                    id,
                    serde_json::json!({"transport": name,
                        "refused_attempts": delivery.stats().snapshot().refused}),
                );
                episode = None;
            }
            (None, None) => {}
        }
    }
}

/// Watches the buffer's loss counters: the first drop or eviction of an
/// episode publishes `buffer.evicting`; [`LOSS_WINDOW`] without losses ends
/// the episode. Every damage report (at open or while running) publishes
/// `buffer.damaged` with the report as payload and degrades `/health`.
async fn watch_buffer(state: Arc<StatusState>, stop: CancellationToken) {
    let lost = |s: &halyard_buffer::Stats| s.evicted_oldest_total + s.dropped_newest_total;
    let mut seen = lost(&state.buffer.stats());
    let mut episode: Option<Instant> = None;
    let mut ticker = tokio::time::interval(BUFFER_WATCH_INTERVAL);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.cancelled() => break,
        }
        for damage in state.buffer.take_damage() {
            state.note_damage(&damage);
            let payload = serde_json::to_value(&damage).unwrap_or_default();
            state
                .lifecycle
                .emit("buffer.damaged", &new_correlation_id(), payload);
        }
        let stats = state.buffer.stats();
        let now = lost(&stats);
        if now > seen {
            state.note_loss();
            if episode.is_none() {
                state.lifecycle.emit(
                    "buffer.evicting",
                    &new_correlation_id(),
                    serde_json::json!({"evicted_total": stats.evicted_oldest_total,
                        "dropped_total": stats.dropped_newest_total,
                        "bytes": stats.bytes, "max_bytes": state.buffer_max_bytes}),
                );
            }
            episode = Some(Instant::now());
            seen = now;
        } else if episode.is_some_and(|t| t.elapsed() >= LOSS_WINDOW) {
            episode = None;
        }
    }
}

/// A lifecycle event as a buffer record in the event JSON form.
fn lifecycle_record(e: &LifecycleEvent, host_id: &str) -> Record {
    let id = event::new_id();
    let event = Event {
        id,
        time_ns: crate::plugin::host::wall_clock_ns(),
        source: host_id.to_string(),
        kind: format!("halyard.{}", e.kind),
        value: None,
        unit: None,
        attributes: Vec::new(),
        body: serde_json::to_string(e).ok(),
    };
    Record {
        id: crate::pipeline::id_bytes(&id),
        payload: serde_json::to_vec(&event::to_json(&event)).unwrap_or_default(),
    }
}
