//! The input registry: from `[[input]]` to something that runs, in one
//! place.
//!
//! Every host-owned input implements [`Input`]: prepared at start (sockets
//! bound, so a port in use fails `halyard run` naming the input), then run
//! as one task with the shared [`InputContext`] until the stop signal.
//! Source inputs are not tasks: the pipeline thread polls their guest on a
//! [`SourceSchedule`]. Adding a protocol is one module under `run/` that
//! implements [`Input`], one `InputConfig` variant, and one arm in
//! [`prepare`] (plus its arms in `config/inputs.rs`).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::Duration;

use halyard_buffer::Buffer;
use tokio::sync::watch;

use super::{FileInput, HttpInput, HttpOptions, MqttInput, RunError, SourceSchedule, Work};
use crate::config::InputConfig;
use crate::lifecycle::Lifecycle;
use crate::status::StatusState;

/// What every running input shares with the rest of the host.
pub struct InputContext {
    /// Where frames go: the pipeline thread. Dropping it (when the input
    /// returns) tells the pipeline thread this input is done.
    pub work: Sender<Work>,
    /// Turns true at shutdown: stop reading at a committed position.
    pub stop: watch::Receiver<bool>,
}

/// A future an input runs as.
pub type InputTask = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A host-owned input, prepared and ready to run.
pub trait Input: Send {
    /// The input's name in the config (logs, metrics, dead letters).
    fn name(&self) -> &str;

    /// Reads frames and hands them to `ctx.work` until `ctx.stop` turns
    /// true; returns once what it read is answered or handed over.
    fn run(self: Box<Self>, ctx: InputContext) -> InputTask;
}

/// How one configured input is driven.
pub enum Prepared {
    /// A host-owned task.
    Task(Box<dyn Input>),
    /// A source guest the pipeline thread polls.
    Polled(SourceSchedule),
}

/// What preparing an input may need from the host.
pub struct Shared<'a> {
    /// For inputs that keep a read position with their events (a file's
    /// offset).
    pub buffer: &'a Arc<Buffer>,
    /// The host id, for inputs whose identity at a peer derives from it
    /// (an MQTT client id).
    pub host_id: &'a str,
    /// Where inputs publish connect/disconnect lifecycle events.
    pub lifecycle: &'a Lifecycle,
    /// Where inputs register the counters `/metrics` shows.
    pub status: &'a StatusState,
}

/// Prepares `config`: the one place that matches on input types to run
/// them.
pub async fn prepare(config: &InputConfig, shared: &Shared<'_>) -> Result<Prepared, RunError> {
    let buffer = shared.buffer;
    Ok(match config {
        InputConfig::Source {
            interval_ms,
            max_per_poll,
            ..
        } => Prepared::Polled(SourceSchedule {
            interval: Duration::from_millis(*interval_ms),
            max_per_poll: *max_per_poll,
        }),
        InputConfig::File {
            name,
            path,
            start_at,
            max_line_bytes,
            ..
        } => Prepared::Task(Box::new(FileInput {
            name: name.clone(),
            path: path.clone(),
            start_at: *start_at,
            max_line_bytes: usize::try_from(*max_line_bytes).unwrap_or(usize::MAX),
            buffer: buffer.clone(),
        })),
        InputConfig::Http {
            name,
            listen,
            socket,
            ..
        } => {
            let options = HttpOptions::from_config(config)
                .ok_or_else(|| RunError::Transport(format!("input `{name}`: not an http input")))?;
            let mut bound = HttpInput::new(name, options);
            if let Some(listen) = listen {
                bound
                    .listen_tcp(*listen)
                    .await
                    .map_err(|reason| RunError::Listen {
                        input: name.clone(),
                        addr: *listen,
                        reason,
                    })?;
            }
            if let Some(socket) = socket {
                bound
                    .listen_unix(socket)
                    .map_err(|reason| RunError::ListenSocket {
                        input: name.clone(),
                        path: socket.path.clone(),
                        reason,
                    })?;
                tracing::info!(input = %name, socket = %socket.path.display(),
                    mode = %socket.mode, "http input socket bound");
            }
            if let Some(addr) = bound.local_addr() {
                tracing::info!(input = %name, listen = %addr, "http input bound");
            }
            Prepared::Task(Box::new(bound))
        }
        InputConfig::System {
            name,
            interval_ms,
            metrics,
            mounts,
            interfaces,
            source,
        } => Prepared::Task(Box::new(super::SystemInput {
            name: name.clone(),
            interval: Duration::from_millis(*interval_ms),
            selection: super::SystemSelection {
                metrics: metrics.clone(),
                mounts: mounts.clone(),
                interfaces: interfaces.clone(),
                source: source.clone().unwrap_or_else(|| shared.host_id.to_string()),
            },
        })),
        // Built (its TLS config read) before anything runs, so a missing CA
        // file fails the start with the input's name.
        InputConfig::Mqtt(mqtt) => {
            let built = MqttInput::from_config(mqtt, shared.host_id, shared.lifecycle.clone())
                .map_err(|source| RunError::Mqtt {
                    input: mqtt.name.clone(),
                    source,
                })?;
            shared.status.watch_mqtt(built.stats());
            Prepared::Task(Box::new(built))
        }
    })
}

impl Input for MqttInput {
    fn name(&self) -> &str {
        MqttInput::name(self)
    }

    fn run(self: Box<Self>, ctx: InputContext) -> InputTask {
        Box::pin(MqttInput::run(*self, ctx.work, ctx.stop))
    }
}

impl Input for FileInput {
    fn name(&self) -> &str {
        &self.name
    }

    fn run(self: Box<Self>, ctx: InputContext) -> InputTask {
        Box::pin(FileInput::run(*self, ctx.work, ctx.stop))
    }
}

impl Input for HttpInput {
    fn name(&self) -> &str {
        HttpInput::name(self)
    }

    fn run(self: Box<Self>, ctx: InputContext) -> InputTask {
        Box::pin(HttpInput::run(*self, ctx.work, ctx.stop))
    }
}
