//! End-to-end tests of `halyard run`: the real binary, real guests, a real
//! SQLite buffer, and a real peer (a file transport or the receiver on
//! 127.0.0.1), with exact counts.

mod audit;
mod broker_transports;
mod buffer_cap;
mod contracts;
mod damage;
mod deadletter;
mod file_identity;
mod file_limits;
mod file_transport;
mod flaky_hub;
mod http_auth;
mod http_hostile;
mod http_input;
mod http_memory;
mod http_support;
mod in_flight;
mod mosquitto;
mod mqtt_input;
mod multi_transport;
mod precompiled;
mod receiver;
mod receiver_refusals;
mod receiver_support;
mod refusals;
mod retry;
mod support;
mod system_input;
mod workers;

/// The operator tests' helpers (a host with an http input and a status
/// server, a blocking client, `/metrics` parsed), shared rather than copied.
#[allow(dead_code)]
#[path = "../operate/support.rs"]
mod operate_support;
/// Damaging a buffer file page by page, shared with the buffer crate's
/// tests so both damage files the same way.
#[path = "../../../buffer/tests/buffer/pages.rs"]
mod pages;
/// `operate/support.rs` reaches the pipeline helpers by this name.
use support as pipeline_support;
