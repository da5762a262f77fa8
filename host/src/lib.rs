//! Halyard: a WebAssembly-extensible telemetry host for edge devices.
//!
//! The native host owns everything that must be trusted and durable; what
//! varies between fleets (decoders, validators, privacy policies, samplers,
//! sources) runs as sandboxed WebAssembly components that implement the
//! `halyard:plugin` WIT contract in `wit/`.
//!
//! # Layout
//!
//! - [`config`]: the host's TOML config: `${VAR}` substitution, typed
//!   sections that refuse unknown keys, checks that name the key.
//! - [`event`]: the host's view of an event: id assignment and the JSON form
//!   used on the command line, in files and on the wire.
//! - [`plugin`]: the component runtime: the engine and its limits, the single
//!   `bindgen!` of the WIT package, the host imports, loading and checking a
//!   component against the world of its kind, the on-disk compile cache, and
//!   sandboxed calls that contain every trap: a wall-clock deadline that
//!   also cuts a guest waiting in a host call, one memory budget, guest
//!   stdout/stderr drained into the log, deny-by-default WASI and grants.
//! - [`pipeline`]: decode → validate → privacy → sample → buffer, with
//!   each stage's failure policy and plugin quarantine; synchronous, owns
//!   every plugin instance.
//! - [`run`]: `halyard run`: the pipeline thread, file, http and source inputs,
//!   the shipper (buffer → transport), ordered shutdown bounded by one
//!   deadline, and the stall watchdog behind `/health`.
//! - [`reload`]: hot reload: file watch, off-thread compile, swap between
//!   batches, rollback with quarantine by hash and reload backoff (the
//!   ledger and last good files kept in `data_dir`), and the signed remote
//!   rollout manifest ([`reload::rollout`], [`reload::manifest`]).
//! - [`data_dir`]: the data directory's owner-only permissions.
//! - [`status`]: the status server: `/health`, `/metrics` (Prometheus),
//!   `/plugins`, `/events/stream` (Server-Sent Events).
//! - [`licence`]: the licence checked at start, its heartbeat (usage
//!   reports, renewal), and the valid → grace → expired states the shipper
//!   obeys; dev mode.
//! - [`provenance`]: the host key that signs batches, and the provenance
//!   (host, version, persisted sequence number, plugin chain) of each event.
//! - [`lifecycle`]: the host's own events (started, plugin quarantined,
//!   breaker open, …) with a stable wire shape.
//! - [`tap`]: the bounded broadcast of accepted and lifecycle events that
//!   feeds the event stream without ever slowing the pipeline.
//! - [`logging`]: JSON or human logs, levels from config or `RUST_LOG`.
//! - [`resident`]: takes the executable's startup code out of the resident
//!   set once the host runs.
//! - [`cli`]: the `halyard` command line, kept apart from `main.rs` so that
//!   tests can exercise argument parsing without spawning a process;
//!   `halyard deadletter` lists, shows, replays and purges dead letters.

pub mod allocator;
pub mod audit;
pub mod cli;
pub mod config;
pub mod data_dir;
pub mod event;
pub mod event_wire;
pub mod licence;
pub mod lifecycle;
pub mod logging;
pub mod pipeline;
pub mod plugin;
pub mod provenance;
pub mod reload;
pub mod resident;
pub mod run;
pub mod status;
pub mod tap;
