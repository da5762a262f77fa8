//! `halyard run`: the host's main job, wiring inputs → pipeline workers
//! (`[pipeline] workers` threads, each with its own plugin instances; see
//! [`worker`]) → buffer → shipper → transport.
//!
//! Shutdown order (SIGINT/SIGTERM or the caller's future): stop the inputs
//! (a file input stops between two read chunks or batches, however far
//! behind it is, at a committed position);
//! let the pipeline thread finish what is queued (every reply it sends is a
//! commit); let the shipper send what is buffered; then stop it, releasing
//! any batch in flight. The buffer closes last. All of it shares one
//! deadline, `shutdown.timeout_ms` (plus [`STOP_MARGIN`] for the inputs and
//! the pipeline thread): work still queued then is refused to its input,
//! not accepted. Nothing accepted is lost: whatever was not delivered is
//! still in the buffer for the next start. Last, a final licence heartbeat
//! reports the usage counted so far (stored in the buffer first, so a
//! failure leaves it for the next start), within the same deadline plus
//! [`STOP_MARGIN`].
//!
//! [`Progress`] tells `/health` when the pipeline thread holds one piece of
//! work for longer than `[health] stall_ms`.

mod file_input;
mod http_input;
pub mod inputs;
mod mqtt_input;
mod observe;
mod progress;
mod sequence;
mod ship;
mod split;
mod system_input;
pub mod systemd;
pub mod transports;
mod worker;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use halyard_buffer::{Buffer, BufferConfig, WhenFull};
use halyard_transport::RetryConfig;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::config::{HostConfig, Synchronous, WhenFullConfig};
use crate::pipeline::{IngestReport, NativeStages, Pipeline, PipelineError};
use crate::plugin::{LoadError, Runtime};

pub use file_input::FileInput;
pub use http_input::{HttpInput, HttpOptions};
pub use mqtt_input::{
    MqttInput, MqttSnapshot, MqttStats, TlsSetupError, check_tls as check_mqtt_tls, frame_key,
};
pub use progress::Progress;
pub use ship::{BatchLimits, ShipReport, ShipSettings, encode, encode_with};
pub use system_input::{Metric as SystemMetric, Selection as SystemSelection, SystemInput};
pub use worker::{SourceSchedule, Work, Worker};

/// How long past `[shutdown] timeout_ms` the stop may wait for the inputs
/// and the pipeline thread to hand back their totals.
pub const STOP_MARGIN: Duration = Duration::from_millis(500);

/// Why the host could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The data directory (or a file in it) could not be created or made
    /// owner-only.
    #[error("data directory: {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The wasm engine could not be created.
    #[error(transparent)]
    Engine(#[from] LoadError),
    /// The buffer could not be opened.
    #[error("cannot open the buffer: {0}")]
    Buffer(#[from] halyard_buffer::BufferError),
    /// A plugin was refused.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// The transport could not be set up.
    #[error("transport: {0}")]
    Transport(String),
    /// An http input could not bind its listen address (e.g. in use).
    #[error("input `{input}`: cannot listen on {addr}: {reason}")]
    Listen {
        /// The input's name.
        input: String,
        /// The configured address.
        addr: std::net::SocketAddr,
        /// What the OS said.
        reason: std::io::Error,
    },
    /// An http input could not make or bind its Unix socket (in use by a
    /// running process, not a socket, its directory missing).
    #[error("input `{input}`: cannot listen on the socket {}: {reason}", path.display())]
    ListenSocket {
        /// The input's name.
        input: String,
        /// The configured socket path.
        path: std::path::PathBuf,
        /// What went wrong.
        reason: std::io::Error,
    },
    /// An mqtt input's TLS settings are unusable (e.g. a missing CA file).
    #[error("input `{input}`: {source}")]
    Mqtt {
        /// The input's name.
        input: String,
        /// What is wrong.
        source: TlsSetupError,
    },
    /// The pipeline thread could not be started.
    #[error("cannot start the pipeline thread: {0}")]
    Thread(std::io::Error),
    /// No valid licence (and not in dev mode).
    #[error(transparent)]
    Licence(#[from] crate::licence::LicenceStartError),
    /// The host key or the provenance counter is unusable.
    #[error(transparent)]
    Provenance(#[from] crate::provenance::ProvenanceSetupError),
    /// The rollback ledger is unreadable, or a plugin file holds a version
    /// rolled back earlier with no good copy to put back.
    #[error(transparent)]
    Rollback(#[from] crate::reload::last_good::LedgerError),
}

/// What a run did, for the exit log and for tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunReport {
    /// Everything ingested.
    pub ingest: IngestReport,
    /// Everything shipped, summed over the transports (an event delivered
    /// by two transports counts twice).
    pub ship: ShipReport,
    /// What each transport shipped, in config order.
    pub ship_by_transport: Vec<(String, ShipReport)>,
    /// Events left in the buffer at exit (sent after the next start).
    pub left_in_buffer: u64,
}

/// Runs the host until `shutdown` resolves, then shuts down in order.
pub async fn run(
    config: HostConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<RunReport, RunError> {
    run_with(config, NativeStages::default(), shutdown).await
}

/// Like [`run`], with native stages standing in for some plugin paths
/// (the pipeline benchmark's native baseline).
pub async fn run_with(
    config: HostConfig,
    natives: NativeStages,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<RunReport, RunError> {
    let data_dir = config.host.data_dir.clone();
    crate::data_dir::prepare(&data_dir).map_err(|source| RunError::DataDir {
        path: data_dir.clone(),
        source,
    })?;
    let host_id = config.host.id.clone().unwrap_or_else(hostname);
    let mut runtime = Runtime::new(Some(data_dir.join("cache")))?;
    config
        .plugins
        .apply_to(&mut runtime, config.licence.fleet.as_deref());
    let runtime = Arc::new(runtime);
    let mut channels = observe::Channels::new(&config);
    let earlier_run = crate::licence::persist::StateStore::earlier_run(&data_dir);
    let host_key = crate::provenance::host_key(&data_dir)?;
    // Deliveries are counted here (by the first transport) and moved into
    // the buffer by the heartbeat; the pipeline counts into its own window.
    let usage = Arc::new(halyard_trust::usage::UsageWindow::new());
    let buffer_path = buffer_config(&config, &data_dir).path;
    crate::data_dir::precreate_private(&buffer_path)
        .and_then(|()| crate::data_dir::tighten_sqlite(&buffer_path))
        .map_err(|source| RunError::DataDir {
            path: buffer_path.clone(),
            source,
        })?;
    let (buffer, opened) = Buffer::open(buffer_config(&config, &data_dir))?;
    // SQLite made its `-wal` and `-shm` with the database file's mode.
    crate::data_dir::tighten_sqlite(&buffer_path).map_err(|source| RunError::DataDir {
        path: buffer_path.clone(),
        source,
    })?;
    if let Some(moved) = &opened.recovered_from_corruption {
        // The details (recovered, lost) follow as `buffer.damaged` from the
        // buffer watch, which publishes every damage report.
        channels.lifecycle.emit(
            "buffer.recovered",
            &crate::lifecycle::new_correlation_id(),
            serde_json::json!({"moved_to": moved.display().to_string(),
                "records_recovered": opened.damage.as_ref().map(|d| d.records_recovered),
                "records_lost": opened.damage.as_ref().map(|d| d.records_lost)}),
        );
    }
    tracing::info!(pending = opened.pending_records, "buffer opened");
    // The licence continues the history the last run saved; the buffer
    // knows when usage was last reported (the last heartbeat), in case
    // that history was lost.
    let licence = if halyard_trust::licence::dev_mode_from_env() {
        crate::licence::Licence::dev(Some(channels.lifecycle.clone()))
    } else {
        let last_heartbeat = buffer.usage().ok().and_then(|u| u.reported_at);
        let store = crate::licence::persist::StateStore::new(
            &data_dir,
            &host_id,
            host_key.clone(),
            earlier_run,
            last_heartbeat,
        );
        crate::licence::Licence::start_with(
            &config.licence,
            &host_id,
            &data_dir,
            crate::licence::system_clock(),
            Some(channels.lifecycle.clone()),
            Some(store),
        )?
    };
    channels.licence = Some(licence.clone());
    licence
        .check_plugins(&config)
        .map_err(crate::licence::LicenceStartError::from)?;
    // Kind filters route events to transports by their `kind`.
    buffer.set_kind_reader(transports::kind_of);
    let buffer = Arc::new(buffer);
    let ledger = crate::reload::prepare(&config)?;
    let mut pipeline = Pipeline::build_with(&config, &runtime, buffer.clone(), &natives)
        .inspect_err(|e| channels.rejected(e))?;
    pipeline.set_provenance(crate::provenance::Stamper::open(&host_id, &data_dir)?);
    pipeline.set_usage(Arc::new(halyard_trust::usage::UsageWindow::new()));
    let transports = transports::build(
        &config,
        Some(crate::provenance::signature_headers(host_key)),
    )
    .map_err(|e| RunError::Transport(e.to_string()))?;
    let mut observer = observe::Observer::start(
        &config,
        &host_id,
        &mut channels,
        &buffer,
        buffer_config(&config, &data_dir).path,
        &transports,
        &mut pipeline,
    )
    .await;

    // Prepare every input (bind every socket) before the pipeline thread
    // and the other inputs start, so a port in use fails the start with the
    // input's name and address.
    let mut tasks = Vec::new();
    let mut schedules = Vec::new();
    for input in &config.inputs {
        let shared = inputs::Shared {
            buffer: &buffer,
            host_id: &host_id,
            lifecycle: &channels.lifecycle,
            status: &observer.state,
        };
        match inputs::prepare(input, &shared).await? {
            inputs::Prepared::Task(task) => tasks.push(task),
            inputs::Prepared::Polled(schedule) => schedules.push(schedule),
        }
    }

    let appended = Arc::new(Notify::new());
    if let Some(rx) = channels.into_pipeline.take() {
        observer.append_lifecycle(rx, appended.clone());
    }
    let running = crate::reload::swap::running(&mut pipeline);
    let pipelines = worker_pipelines(&config, &runtime, &buffer, &natives, pipeline)?;
    let worker = Worker::start(
        pipelines,
        schedules,
        appended.clone(),
        channels.progress.clone(),
    )
    .map_err(RunError::Thread)?;
    let (live, batch_limits) = crate::reload::Live::new(&transports);
    let reloader = crate::reload::supply(
        &config,
        &runtime,
        worker.sender(),
        &channels.lifecycle,
        live,
        running,
        Some(licence.clone()),
        ledger,
    );

    let (stop_inputs, inputs_stopped) = watch::channel(false);
    let mut inputs = Vec::new();
    for task in tasks {
        let Some(work) = worker.sender() else { break };
        tracing::debug!(input = %task.name(), "input starting");
        inputs.push(tokio::spawn(task.run(inputs::InputContext {
            work,
            stop: inputs_stopped.clone(),
        })));
    }

    let drain = CancellationToken::new();
    let hard_stop = CancellationToken::new();
    let background = CancellationToken::new();
    let mut background_tasks = vec![tokio::spawn(licence.clone().watch_time(background.clone()))];
    let mut final_heartbeat = None;
    if !matches!(licence.state(), halyard_trust::licence::LicenceState::Dev)
        && let Some(hb) = crate::licence::heartbeat::HeartbeatConfig::from_section(&config.licence)
    {
        let heartbeat = crate::licence::heartbeat::Heartbeat::new(
            hb,
            usage.clone(),
            licence.clone(),
            Some(buffer.clone()),
            &host_id,
        )
        .map_err(|e| RunError::Transport(e.to_string()))?;
        final_heartbeat = Some(heartbeat.clone());
        background_tasks.push(tokio::spawn(heartbeat.run(background.clone())));
    }
    // One ship loop per transport, each reading its own buffer consumer;
    // all wake on every append. Usage (the heartbeat's delivered counts)
    // is counted by the first transport only, so it counts events, not
    // deliveries.
    let mut wakers = Vec::new();
    let mut shippers = Vec::new();
    // A ship loop holding one delivery past this, breaker closed, is stuck
    // (the longest backoff between two attempts is `[retry] max_ms`).
    let ship_progress = Arc::new(Progress::for_workers(
        Duration::from_millis(config.health.stall_ms.saturating_add(config.retry.max_ms)),
        transports.len(),
    ));
    for (i, (t, limits)) in transports.iter().zip(batch_limits).enumerate() {
        let settings = ShipSettings {
            transport: t.name.clone(),
            limits,
            host_id: host_id.clone(),
            licence: Some(licence.clone()),
            usage: (i == 0).then(|| usage.clone()),
            progress: Some((ship_progress.clone(), i)),
        };
        let wake = Arc::new(Notify::new());
        wakers.push(wake.clone());
        shippers.push((
            t.name.clone(),
            tokio::spawn(ship::ship(
                buffer.clone(),
                t.delivery.clone(),
                settings,
                wake,
                drain.clone(),
                hard_stop.clone(),
            )),
        ));
    }
    background_tasks.push(tokio::spawn(fan_out(appended, wakers, background.clone())));
    tracing::info!(inputs = config.inputs.len(), "halyard running");
    // Start-up is over: its code need not stay resident (see `resident`).
    let dropped = crate::resident::drop_executable_pages();
    tracing::debug!(
        bytes = dropped,
        "executable pages dropped from the resident set"
    );
    // Ready first: systemd counts the watchdog from READY=1.
    systemd::ready(config.inputs.len());
    if let Some(interval) = systemd::watchdog_interval() {
        let watched = systemd::Watched {
            pipeline: channels.progress.clone(),
            shippers: ship_progress,
            breakers: transports
                .iter()
                .map(|t| systemd::breaker_of(t.delivery.stats().clone()))
                .collect(),
        };
        tracing::info!(?interval, "systemd watchdog enabled");
        background_tasks.push(tokio::spawn(systemd::watchdog(
            interval,
            watched,
            background.clone(),
        )));
    }

    shutdown.await;
    systemd::stopping();
    tracing::info!("shutting down: stopping inputs");
    // One deadline for the whole stop: inputs, the pipeline thread and the
    // shipper share `[shutdown] timeout_ms`, so a slow plugin or a stuck
    // input cannot hold SIGTERM past it (plus one call deadline and
    // `STOP_MARGIN`). Whatever was not accepted by then was refused to its
    // input; whatever was not delivered stays buffered.
    let timeout = Duration::from_millis(config.shutdown.timeout_ms);
    let stop_by = tokio::time::Instant::now() + timeout;
    worker.begin_stop(stop_by.into_std());
    let _ = stop_inputs.send(true);
    if let Some(reloader) = reloader {
        let stopped = tokio::task::spawn_blocking(move || reloader.stop());
        if tokio::time::timeout_at(stop_by, stopped).await.is_err() {
            tracing::warn!("shutdown timeout: the reload thread is left to finish on its own");
        }
    }
    for mut input in inputs {
        if tokio::time::timeout_at(stop_by + STOP_MARGIN, &mut input)
            .await
            .is_err()
        {
            tracing::warn!("shutdown timeout: an input did not stop in time");
            input.abort();
        }
    }
    let give_up = (stop_by + STOP_MARGIN).into_std();
    let ingest = tokio::task::spawn_blocking(move || worker.stop(give_up))
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| {
            tracing::warn!("shutdown timeout: the pipeline thread did not stop in time");
            IngestReport::default()
        });
    drain.cancel();
    let mut ship_by_transport = Vec::new();
    for (name, mut shipper) in shippers {
        let report = match tokio::time::timeout_at(stop_by, &mut shipper).await {
            Ok(report) => report.unwrap_or_default(),
            Err(_) => {
                tracing::warn!(transport = %name, "shutdown timeout: unsent batches stay buffered");
                hard_stop.cancel();
                shipper.await.unwrap_or_default()
            }
        };
        ship_by_transport.push((name, report));
    }
    let ship = ship_by_transport
        .iter()
        .fold(ShipReport::default(), |sum, (_, r)| ShipReport {
            batches_delivered: sum.batches_delivered + r.batches_delivered,
            events_delivered: sum.events_delivered + r.events_delivered,
            batches_dead_lettered: sum.batches_dead_lettered + r.batches_dead_lettered,
            events_dead_lettered: sum.events_dead_lettered + r.events_dead_lettered,
        });
    background.cancel();
    for task in background_tasks {
        let _ = task.await;
    }
    // Every commit and delivery is counted by now: report them.
    if let Some(heartbeat) = final_heartbeat {
        heartbeat.final_beat(stop_by + STOP_MARGIN).await;
    }
    let left_in_buffer = buffer.stats().records;
    tracing::info!(
        delivered = ship.events_delivered,
        left_in_buffer,
        "halyard stopped"
    );
    observer
        .stop(serde_json::json!({
            "accepted": ingest.accepted,
            "delivered": ship.events_delivered,
            "left_in_buffer": left_in_buffer,
        }))
        .await;
    Ok(RunReport {
        ingest,
        ship,
        ship_by_transport,
        left_in_buffer,
    })
}

/// The first worker's pipeline (`first`, observed and stamped) and one
/// more per further `[pipeline] workers`, each with its own plugin
/// instances and following the first ([`Pipeline::follow`]).
fn worker_pipelines(
    config: &HostConfig,
    runtime: &Runtime,
    buffer: &Arc<Buffer>,
    natives: &NativeStages,
    first: Pipeline,
) -> Result<Vec<Pipeline>, RunError> {
    // A detector's kv namespace is one per host and its batches must commit
    // in the order they saw it: with detectors, one worker.
    let workers = if config.stages.detect.is_empty() {
        config.pipeline.workers()
    } else {
        if config.pipeline.workers() > 1 {
            tracing::info!(
                asked = config.pipeline.workers(),
                "detectors are configured: one pipeline worker"
            );
        }
        1
    };
    let mut pipelines = Vec::with_capacity(workers);
    for _ in 1..workers {
        pipelines.push(Pipeline::build_follower(
            config,
            runtime,
            buffer.clone(),
            natives,
            &first,
        )?);
    }
    pipelines.insert(0, first);
    tracing::info!(workers, "pipeline workers");
    Ok(pipelines)
}

/// The buffer `[buffer]` asks for, its path resolved against `data_dir`.
pub(crate) fn buffer_config(config: &HostConfig, data_dir: &Path) -> BufferConfig {
    let path = if config.buffer.path.is_absolute() {
        config.buffer.path.clone()
    } else {
        data_dir.join(&config.buffer.path)
    };
    let mut b = BufferConfig::new(path, config.buffer.max_mb << 20);
    b.when_full = match config.buffer.when_full {
        WhenFullConfig::DropOldest => WhenFull::DropOldest,
        WhenFullConfig::DropNewest => WhenFull::DropNewest,
        WhenFullConfig::Block => WhenFull::Block,
    };
    b.synchronous_full = config.buffer.synchronous == Synchronous::Full;
    b.dead_letter_max = config.buffer.dead_letter_max;
    b.dead_letter_max_bytes = config.buffer.dead_letter_max_mb << 20;
    b.consumers = Some(
        config
            .transports
            .list
            .iter()
            .map(|t| t.consumer())
            .collect(),
    );
    b
}

/// Wakes every ship loop on each append: a `Notify` wakes one waiter, and
/// each transport must see new events.
async fn fan_out(appended: Arc<Notify>, wakers: Vec<Arc<Notify>>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = appended.notified() => {}
            _ = stop.cancelled() => return,
        }
        for w in &wakers {
            w.notify_one();
        }
    }
}

/// The backoff curve `[retry]` asks for.
pub(crate) fn retry_config(retry: &crate::config::RetrySection) -> RetryConfig {
    RetryConfig {
        initial: Duration::from_millis(retry.initial_ms),
        max: Duration::from_millis(retry.max_ms),
        multiplier: 2.0,
    }
}

/// This machine's hostname, the default host id.
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "halyard-host".to_string())
}
