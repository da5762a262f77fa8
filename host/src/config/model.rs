//! The typed host config: one TOML file. Every table denies unknown keys,
//! so a typo is an error that names the key and its line; choices are enums,
//! not strings. Durations carry their unit in the key (`_ms`, `_s`).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::plugin_ref::PluginRef;

/// The whole config file.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// Who this host is.
    #[serde(default)]
    pub host: HostSection,
    /// Where events come from.
    #[serde(default, rename = "input")]
    pub inputs: Vec<InputConfig>,
    /// The sandboxed stage chains.
    #[serde(default)]
    pub stages: StagesConfig,
    /// How many pipeline workers run the stages.
    #[serde(default)]
    pub pipeline: PipelineSection,
    /// The durable buffer.
    #[serde(default)]
    pub buffer: BufferSection,
    /// When a batch closes.
    #[serde(default)]
    pub batch: BatchSection,
    /// Where batches go: one `[transport]` (named `default`) or several
    /// `[[transport]]`, each named (see `transports.rs`).
    #[serde(rename = "transport")]
    pub transports: super::transports::Transports,
    /// Backoff between delivery attempts.
    #[serde(default)]
    pub retry: RetrySection,
    /// When to stop trying a dead receiver for a while.
    #[serde(default)]
    pub breaker: BreakerSection,
    /// The status server (`[health]`, also accepted as `[status]`).
    #[serde(default, alias = "status")]
    pub health: HealthSection,
    /// Log format and levels.
    #[serde(default)]
    pub log: LogSection,
    /// Where the host's own lifecycle events go besides logs and the stream.
    #[serde(default)]
    pub lifecycle: LifecycleSection,
    /// The audit trail of lifecycle events kept in `data_dir`.
    #[serde(default)]
    pub audit: AuditSection,
    /// How long shutdown may take.
    #[serde(default)]
    pub shutdown: ShutdownSection,
    /// The licence token, its vendor keys and the heartbeat.
    #[serde(default)]
    pub licence: super::licence::LicenceSection,
    /// Trusted plugin signers.
    #[serde(default)]
    pub plugins: super::supply::PluginsSection,
    /// Hot reload, rollback and reload backoff.
    #[serde(default)]
    pub reload: super::supply::ReloadSection,
    /// Remote plugin rollout.
    #[serde(default)]
    pub rollout: super::supply::RolloutSection,
    /// The file this config was read from (set by `HostConfig::parse`), so
    /// hot reload knows what to watch and re-read.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

/// `[host]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostSection {
    /// The host's id in provenance and on the wire; defaults to the hostname.
    pub id: Option<String>,
    /// Where the host keeps its state (buffer, input offsets, compile cache).
    pub data_dir: PathBuf,
}

impl Default for HostSection {
    fn default() -> Self {
        HostSection {
            id: None,
            data_dir: HostConfig::default_data_dir(),
        }
    }
}

impl HostConfig {
    /// `[host] data_dir` when the config does not set it.
    pub fn default_data_dir() -> PathBuf {
        PathBuf::from("halyard-data")
    }
}

/// One `[[input]]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum InputConfig {
    /// A source guest polled on an interval.
    Source {
        /// The input's name.
        name: String,
        /// The source plugin (`[input.source]`).
        source: PluginRef,
        /// Time between polls.
        #[serde(default = "default_poll_ms")]
        interval_ms: u64,
        /// The most events one poll may return.
        #[serde(default = "default_poll_max")]
        max_per_poll: u32,
    },
    /// Tail a file; each line is a frame for the decoder.
    File {
        /// The input's name (offsets are stored under it).
        name: String,
        /// The file to follow across appends and rotation.
        path: PathBuf,
        /// Where to start the first time (later: the stored offset).
        #[serde(default)]
        start_at: StartAt,
        /// Lines longer than this (bytes, without the `\n`) are
        /// dead-lettered with only their first 4 KiB kept, so a file without
        /// newlines cannot make the host hold it whole.
        #[serde(default = "default_max_line_bytes")]
        max_line_bytes: u64,
        /// The decoder plugin.
        decoder: PluginRef,
    },
    /// An HTTP ingest endpoint: `POST` a body of frames (one per line).
    Http {
        /// The input's name.
        name: String,
        /// Address to listen on (TCP). Optional when `socket` is given.
        #[serde(default)]
        listen: Option<SocketAddr>,
        /// A Unix domain socket to serve the same ingest on, for local
        /// applications (see [`super::IngestSocket`]).
        #[serde(default)]
        socket: Option<super::IngestSocket>,
        /// The decoder plugin.
        decoder: PluginRef,
        /// Who may post: `{ tokens = [...] }`, or `"none"` (loopback only).
        /// Required, so an endpoint is never open by accident.
        #[serde(default)]
        auth: Option<super::ingest::IngestAuth>,
        /// Time to send a request's headers, from connecting or from the
        /// previous answer (cuts slowloris clients).
        #[serde(default = "super::ingest::default_header_timeout_ms")]
        header_timeout_ms: u64,
        /// Time for the whole body to arrive after the headers (408).
        #[serde(default = "super::ingest::default_body_timeout_ms")]
        body_timeout_ms: u64,
        /// Time a kept-alive connection may wait for its next request.
        #[serde(default = "super::ingest::default_idle_timeout_ms")]
        idle_timeout_ms: u64,
        /// Open connections at most; more are answered 503 and closed.
        #[serde(default = "super::ingest::default_max_connections")]
        max_connections: usize,
        /// Requests read or processed at once; more are answered 503.
        #[serde(default = "super::ingest::default_max_in_flight")]
        max_in_flight: usize,
    },
    /// Subscribe to topic filters on an MQTT broker; each message is a
    /// frame for the decoder (see [`super::mqtt::MqttInput`]).
    Mqtt(super::mqtt::MqttInput),
    /// The device's own readings (CPU, memory, disks, network, load,
    /// uptime, temperatures) on an interval, as events through the stage
    /// chains (see `run/system_input`).
    System {
        /// The input's name.
        name: String,
        /// Time between collections (at least 100 ms).
        #[serde(default = "default_system_ms")]
        interval_ms: u64,
        /// The families to read; all of them when unset.
        #[serde(default = "default_system_metrics")]
        metrics: Vec<crate::run::SystemMetric>,
        /// Only these mount points (`["/", "/data"]`); all when empty.
        #[serde(default)]
        mounts: Vec<String>,
        /// Only these network interfaces (`["eth0"]`); all when empty.
        #[serde(default)]
        interfaces: Vec<String>,
        /// The events' `source`; the host id when unset.
        #[serde(default)]
        source: Option<String>,
    },
}

fn default_system_ms() -> u64 {
    10_000
}
fn default_system_metrics() -> Vec<crate::run::SystemMetric> {
    crate::run::SystemMetric::ALL.to_vec()
}

fn default_poll_ms() -> u64 {
    1000
}
fn default_poll_max() -> u32 {
    1000
}

/// Where a file input starts when it has no stored offset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StartAt {
    /// Read the whole file (the default: nothing already there is missed).
    #[default]
    Beginning,
    /// Only lines appended after the host starts.
    End,
}

/// `[stages]`: the chains every batch runs through, in this order.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StagesConfig {
    /// Validators (fail closed: a trap dead-letters the batch).
    pub validate: Vec<PluginRef>,
    /// Detectors, after the validators (fail open: a trap loses only the
    /// detector's own new events for the batch). Contract 0.3.0.
    pub detect: Vec<PluginRef>,
    /// The byte bound of each detector's key-value namespace (keys plus
    /// values); a write past it is refused with an error the guest sees.
    pub kv_max_bytes: u64,
    /// Privacy policies (fail closed: a trap drops the batch, counted).
    pub privacy: Vec<PluginRef>,
    /// Samplers (fail open: a trap keeps the batch).
    pub sample: Vec<PluginRef>,
    /// Traps within `quarantine_window_s` that quarantine a plugin.
    pub quarantine_after_traps: u32,
    /// The window for `quarantine_after_traps`.
    pub quarantine_window_s: u64,
}

impl Default for StagesConfig {
    fn default() -> Self {
        StagesConfig {
            validate: Vec::new(),
            detect: Vec::new(),
            kv_max_bytes: crate::plugin::kv::DEFAULT_MAX_BYTES,
            privacy: Vec::new(),
            sample: Vec::new(),
            quarantine_after_traps: 5,
            quarantine_window_s: 60,
        }
    }
}

/// `[buffer]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BufferSection {
    /// The SQLite file, relative to `host.data_dir` unless absolute.
    pub path: PathBuf,
    /// Size bound in MiB of buffered event bytes.
    pub max_mb: u64,
    /// What to do when full.
    pub when_full: WhenFullConfig,
    /// `full` survives power loss; `normal` survives a killed process.
    pub synchronous: Synchronous,
    /// Most dead letters kept; the oldest beyond it are deleted (counted),
    /// so a flood of bad input cannot fill the disk.
    pub dead_letter_max: u64,
    /// Size bound in MiB of the dead-letter table (kept bytes, reasons and
    /// a per-row overhead); the oldest beyond it are evicted (counted).
    pub dead_letter_max_mb: u64,
    /// What a dead-lettered frame keeps: it did not decode, so no privacy
    /// policy could run on it.
    pub dead_letter_frames: DeadLetterFrames,
}

impl Default for BufferSection {
    fn default() -> Self {
        BufferSection {
            path: PathBuf::from("buffer.db"),
            max_mb: 256,
            when_full: WhenFullConfig::DropOldest,
            synchronous: Synchronous::Normal,
            dead_letter_max: halyard_buffer::DEFAULT_DEAD_LETTER_MAX,
            dead_letter_max_mb: halyard_buffer::DEFAULT_DEAD_LETTER_MAX_BYTES >> 20,
            dead_letter_frames: DeadLetterFrames::Digest,
        }
    }
}

/// The buffer's overflow policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFullConfig {
    /// Evict the oldest events to make room (counted).
    DropOldest,
    /// Refuse the newest events (counted).
    DropNewest,
    /// Push back on inputs (HTTP ingest answers 503).
    Block,
}

/// SQLite durability level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Synchronous {
    /// Survives a killed process (WAL, the default).
    Normal,
    /// Also survives power loss, at a cost per commit.
    Full,
}

/// What the dead-letter table keeps of a frame that did not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterFrames {
    /// Its length and SHA-256 only (the default): raw input never passed
    /// the privacy stages, so it is not kept at rest.
    Digest,
    /// The raw bytes, so it can be inspected and replayed: an explicit
    /// opt-in to keep unscreened input on disk.
    Raw,
}

/// `[batch]`: a batch closes at whichever limit comes first.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchSection {
    /// Most events per batch.
    pub max_events: usize,
    /// Most encoded bytes per batch.
    pub max_bytes: usize,
    /// Longest a non-empty batch waits for more events.
    pub max_age_ms: u64,
    /// Most batches being delivered at once: the receiver's commit of one
    /// overlaps the sending of the next. Batches may then arrive out of
    /// order (events carry their time and id); 1 keeps them in order.
    pub max_in_flight: usize,
}

impl Default for BatchSection {
    fn default() -> Self {
        BatchSection {
            max_events: 1000,
            max_bytes: 1 << 20,
            max_age_ms: 1000,
            max_in_flight: 4,
        }
    }
}

/// The sink of a `[transport]` / `[[transport]]`: its `type` and settings.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum TransportConfig {
    /// POST batches to a hub.
    Http {
        /// The batch endpoint, e.g. `http://127.0.0.1:8080/v1/batches`.
        url: String,
        /// Sent in `api_key_header`; never logged or printed.
        api_key: Option<String>,
        /// The header carrying the key.
        #[serde(default = "default_key_header")]
        api_key_header: String,
        /// Gzip request bodies.
        #[serde(default = "yes")]
        gzip: bool,
        /// Per-request timeout.
        #[serde(default = "default_timeout_ms")]
        timeout_ms: u64,
    },
    /// Append each batch as a JSON line to a file.
    File {
        /// The file.
        path: PathBuf,
    },
    /// Print each batch as a JSON line.
    Stdout,
    /// Publish to an MQTT broker with QoS 1, one message per event or per
    /// batch; delivered when every PUBACK is in (see transport/README.md).
    Mqtt(halyard_transport::MqttConfig),
    /// Publish to NATS JetStream, each event with `Nats-Msg-Id` = its id,
    /// so the stream's duplicate window drops a crash re-send; delivered
    /// when every PubAck is in.
    Nats(halyard_transport::NatsConfig),
    /// `XADD` to a Redis stream in the event-bus wire shape, pipelined per
    /// batch, trimmed with `MAXLEN ~`.
    Redis(halyard_transport::RedisStreamConfig),
    /// OTLP/HTTP (protobuf, gzip) to an OpenTelemetry Collector: readings
    /// as gauge points, other events as log records.
    Otlp(halyard_transport::OtlpConfig),
}

/// 1 MiB, the default `max_line_bytes` of a file input (as Vector's
/// `max_line_bytes` and Fluent Bit's `Buffer_Max_Size` bound a line).
pub const DEFAULT_MAX_LINE_BYTES: u64 = 1 << 20;

fn default_max_line_bytes() -> u64 {
    DEFAULT_MAX_LINE_BYTES
}

fn default_key_header() -> String {
    "x-api-key".into()
}
fn yes() -> bool {
    true
}
fn default_timeout_ms() -> u64 {
    10_000
}

/// `[retry]`: exponential backoff with full jitter.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrySection {
    /// First backoff cap.
    pub initial_ms: u64,
    /// Largest backoff cap.
    pub max_ms: u64,
}

impl Default for RetrySection {
    fn default() -> Self {
        RetrySection {
            initial_ms: 1000,
            max_ms: 60_000,
        }
    }
}

/// `[breaker]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerSection {
    /// Consecutive failures that open the breaker.
    pub failure_threshold: u32,
    /// The longest the breaker stays open before one probe is let through:
    /// the first probe comes after 1 s (or this, if shorter), each failed
    /// probe doubles the wait up to this cap. So the host notices a
    /// receiver's return within this long, however long the outage.
    pub recovery_timeout_ms: u64,
}

impl Default for BreakerSection {
    fn default() -> Self {
        BreakerSection {
            failure_threshold: 5,
            recovery_timeout_ms: 5_000,
        }
    }
}

/// `[health]`: the status server (`/health`, `/metrics`, `/plugins`,
/// `/events/stream`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HealthSection {
    /// Whether to run it at all.
    pub enabled: bool,
    /// Status server address; loopback by default. Listen beyond loopback
    /// only with a `token`.
    pub listen: SocketAddr,
    /// Bearer token every route of the status server requires (`/`,
    /// `/health`, `/metrics`, `/plugins`, `/events/stream`, `/health/ack`);
    /// unset: `HALYARD_STATUS_TOKEN` from the environment, else open. Use
    /// `"${STATUS_TOKEN}"` to keep it out of the file. Never printed.
    pub token: Option<super::IngestToken>,
    /// Items the live event stream keeps for a slow client before dropping
    /// it.
    pub stream_buffer: usize,
    /// `/health` turns unhealthy when the pipeline thread holds one piece of
    /// work (a batch through the stages and its commit) for longer than
    /// this many milliseconds.
    pub stall_ms: u64,
    /// After damage to the buffer file cost events, `/health` stays
    /// degraded for this many milliseconds, or until an operator
    /// acknowledges it (`POST /health/ack`). A loss must not scroll out of
    /// sight before someone has seen it; 0 degrades only until the next
    /// look (the loss is still logged and published as `buffer.damaged`).
    pub damage_degraded_ms: u64,
}

impl Default for HealthSection {
    fn default() -> Self {
        HealthSection {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
            token: None,
            stream_buffer: 1024,
            stall_ms: 30_000,
            damage_degraded_ms: 24 * 3600 * 1000,
        }
    }
}

/// `[log]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// A `tracing` filter (`info`, `warn,halyard=debug`); `RUST_LOG` wins.
    pub level: String,
    /// One JSON object per line (for collectors), or text for people.
    pub format: LogFormat,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            level: "info".into(),
            format: LogFormat::Json,
        }
    }
}

/// How log lines look.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// One JSON object per line.
    #[default]
    Json,
    /// Human-readable text.
    Human,
}

/// `[lifecycle]`
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LifecycleSection {
    /// Also buffer and ship lifecycle events as ordinary events (kind
    /// `halyard.<kind>`, source the host id, the lifecycle event as `body`).
    pub into_pipeline: bool,
}

/// `[audit]`: lifecycle events kept in `data_dir/audit.db` for
/// `halyard audit` (see `crate::audit`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSection {
    /// Keep the trail (on by default: it is small and it is what an
    /// operator reads after an incident).
    pub enabled: bool,
    /// The most events kept; the oldest go first. Each row is at most
    /// ~4 KiB, most are ~200 bytes.
    pub max_rows: u64,
}

impl Default for AuditSection {
    fn default() -> Self {
        AuditSection {
            enabled: true,
            max_rows: 10_000,
        }
    }
}

/// `[shutdown]`
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownSection {
    /// How long shutdown may spend sending what is batched.
    pub timeout_ms: u64,
}

impl Default for ShutdownSection {
    fn default() -> Self {
        ShutdownSection { timeout_ms: 5000 }
    }
}

/// `[pipeline]`
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineSection {
    /// Pipeline workers, each with its own instance of every plugin; unset:
    /// one per CPU. One thread cannot use more than one core for the
    /// stages, and each worker costs one instance (memory) per plugin.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workers: Option<u64>,
}

impl PipelineSection {
    /// The number of workers to run: `workers`, else the CPUs available.
    pub fn workers(&self) -> usize {
        match self.workers {
            Some(n) => usize::try_from(n).unwrap_or(1).max(1),
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}
