//! The application emit API (issue 17, item 3) against the real `halyard`
//! binary, the real example guests (jsonl decoder, range validator,
//! redacting privacy policy, fraction sampler with a per-source cap) and
//! the real receiver on 127.0.0.1, with exact counts:
//!
//! - [`lines`]: `?results=lines` over TCP gives each line's result in order
//!   (accepted with the id the receiver then stores, rejected with the
//!   validator's reason, dropped by privacy, sampled out, decode error);
//!   without asking the answer is unchanged; a line of no event is
//!   `empty`, one of several is `several` (100 listed, the rest counted);
//!   too many lines are refused before anything runs;
//! - [`socket`]: the same over the Unix socket with the `halyard-emit`
//!   client; the socket file has the configured mode, a stale file is
//!   replaced at start and the file is removed at stop; hostile clients on
//!   the socket (huge body, slow head, slow body, too many connections) are
//!   bounded as on TCP; configured tokens are required on the socket too;
//!   `config check` names the key and line of a bad socket setting;
//! - [`retry`]: the client retries through 503 (busy, then buffer full)
//!   and then succeeds with exact counts and no duplicates.

mod helpers;
mod lines;
mod retry;
mod socket;

/// The http input's test helpers (a token client, a raw TCP client).
#[allow(dead_code)]
#[path = "../pipeline/http_support.rs"]
mod http_support;
/// The operator tests' helpers (free ports, a blocking client).
#[allow(dead_code)]
#[path = "../operate/support.rs"]
mod operate_support;
/// The real receiver, run in-process on 127.0.0.1 (the pipeline suite's
/// helper, without that suite's receiver tests).
#[allow(dead_code)]
#[path = "../pipeline/receiver_support.rs"]
mod receiver;
/// The pipeline tests' helpers (host process, scenario, waits with
/// deadlines), shared rather than copied.
#[allow(dead_code)]
#[path = "../pipeline/support.rs"]
mod support;
/// `operate/support.rs` reaches the pipeline helpers by this name.
use support as pipeline_support;
