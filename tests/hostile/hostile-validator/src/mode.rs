//! The misbehaviour selected by the `mode` config key.

use halyard_sdk::{Config, InitError};

/// What the hostile validator does (see README.md for each mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `ok`: accept every event (the default).
    Ok,
    /// `loop`: never return from `validate`.
    Loop,
    /// `alloc`: allocate and touch 1 GiB per call, and keep it.
    Alloc,
    /// `panic`: panic (trap) in `validate`.
    Panic,
    /// `huge`: return 1,000,000 verdicts whatever the input (12 MB, within
    /// the guest's 64 MiB cap, past the host's 16 MiB output cap once lifted).
    Huge,
    /// `huge-fits`: return 100,000 verdicts (below the host's output cap, so
    /// the host's one-result-per-input check is what refuses them).
    HugeFits,
    /// `short`: return one verdict fewer than the events given.
    Short,
    /// `long-reason`: reject every event with a 4 MiB reason.
    LongReason,
    /// `snoop`: probe the filesystem and environment, report in the reason.
    Snoop,
    /// `trap-after` (with `calls` = N): accept N calls, then panic on every
    /// later call of this instance.
    TrapAfter(u64),
    /// `init-error`: `init` fails with an error for key `mode`.
    InitError,
    /// `init-loop`: `init` never returns.
    InitLoop,
    /// `sleep` (with `ms`, default one hour): `std::thread::sleep` in
    /// `validate`, i.e. a `wasi:clocks` pollable and `wasi:io/poll` wait.
    Sleep(u64),
    /// `init-sleep` (with `ms`): the same wait in `init`.
    InitSleep(u64),
    /// `stderr-flood` (with `lines`, default 50): write that many 200-byte
    /// lines to stderr per call, then accept every event.
    StderrFlood(u64),
    /// `init-print`: print to stdout and stderr in `init`, then succeed.
    InitPrint,
    /// `init-panic`: print to stdout in `init`, then panic.
    InitPanic,
    /// `connect` (with `addr`): open a TCP connection to `addr`, send
    /// `ping\n`, read one answer, and reject every event with what
    /// happened (`connected: <answer>` or `connect failed: <error>`). A
    /// peer that never answers leaves the guest waiting in a socket read.
    Connect,
    /// `slow` (with `us_per_event`, default 100): run (spin on the clock,
    /// never wait) that many µs per event of the batch, then accept every
    /// event: a guest in a slow language on a busy device.
    Slow(u64),
}

impl Mode {
    /// Reads `mode` (and `calls` for `trap-after`).
    pub fn from_config(config: &Config) -> Result<Self, InitError> {
        let name = config.get("mode").map(str::trim).unwrap_or("ok");
        Ok(match name {
            "ok" | "" => Mode::Ok,
            "loop" => Mode::Loop,
            "alloc" => Mode::Alloc,
            "panic" => Mode::Panic,
            "huge" => Mode::Huge,
            "huge-fits" => Mode::HugeFits,
            "short" => Mode::Short,
            "long-reason" => Mode::LongReason,
            "snoop" => Mode::Snoop,
            "trap-after" => Mode::TrapAfter(config.parse_or("calls", 0)?),
            "init-error" => Mode::InitError,
            "init-loop" => Mode::InitLoop,
            "sleep" => Mode::Sleep(config.parse_or("ms", 3_600_000)?),
            "init-sleep" => Mode::InitSleep(config.parse_or("ms", 3_600_000)?),
            "stderr-flood" => Mode::StderrFlood(config.parse_or("lines", 50)?),
            "init-print" => Mode::InitPrint,
            "init-panic" => Mode::InitPanic,
            "connect" => Mode::Connect,
            "slow" => Mode::Slow(config.parse_or("us_per_event", 100)?),
            other => {
                return Err(InitError::for_key(
                    "mode",
                    format!("unknown mode {other:?}"),
                ));
            }
        })
    }
}
