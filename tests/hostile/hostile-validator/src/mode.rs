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
            other => {
                return Err(InitError::for_key(
                    "mode",
                    format!("unknown mode {other:?}"),
                ));
            }
        })
    }
}
