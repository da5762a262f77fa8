//! Turning a failed guest entry (a trap, a call cut at its deadline) into
//! a readable [`CallError`], with the guest's last output attached.

use wasmtime::{Store, Trap};

use super::super::Plugin;
use super::super::deadline::Unfinished;
use super::super::error::{CallError, TrapCause};
use super::super::host::HostState;
use super::super::limiter::OverBudget;

/// Turns a wasmtime error from a guest call into a readable [`CallError`].
pub(super) fn trap_error(
    plugin: &Plugin,
    store: &mut Store<HostState>,
    err: &wasmtime::Error,
    deadline: std::time::Duration,
) -> CallError {
    let trap = err.downcast_ref::<Trap>().copied();
    let root = err.root_cause().to_string();
    if root.contains("fuel allocated for hostcalls") {
        return CallError::BadOutput {
            plugin: plugin.info.name.clone(),
            message: format!(
                "result larger than the {} MiB output cap",
                plugin.options.limits.max_output_bytes >> 20
            ),
        };
    }
    let over_budget = err
        .chain()
        .any(|cause| cause.downcast_ref::<OverBudget>().is_some());
    let cause = match trap {
        Some(Trap::Interrupt) => TrapCause::Deadline,
        Some(Trap::UnreachableCodeReached) => TrapCause::Panic,
        _ if over_budget => TrapCause::Memory,
        _ if root.contains("memory") && root.contains("grow") => TrapCause::Memory,
        _ => TrapCause::Other,
    };
    let message = match cause {
        TrapCause::Deadline => format!(
            "ran past its {} ms deadline (wall clock)",
            deadline.as_millis()
        ),
        TrapCause::Memory => format!(
            "tried to grow memory or tables past its {} MiB cap",
            plugin.options.limits.memory_bytes >> 20
        ),
        _ => trap.map(|t| t.to_string()).unwrap_or(root),
    };
    with_output(plugin, store, cause, message)
}

/// A call that [`deadline::run`] had to cut (or could not run).
pub(super) fn cut_error(
    plugin: &Plugin,
    store: &mut Store<HostState>,
    why: Unfinished,
    deadline: std::time::Duration,
) -> CallError {
    let ms = deadline.as_millis();
    let (cause, message) = match why {
        Unfinished::Blocked => (
            TrapCause::Deadline,
            format!(
                "waited in a host call (sleep, poll, stream or socket) past its {ms} ms deadline (wall clock)"
            ),
        ),
        Unfinished::NoRuntime => (TrapCause::Other, why.to_string()),
    };
    with_output(plugin, store, cause, message)
}

/// A trap of `cause`, its message followed by the guest's last lines of
/// output (a panic message, a traceback).
fn with_output(
    plugin: &Plugin,
    store: &mut Store<HostState>,
    cause: TrapCause,
    message: String,
) -> CallError {
    CallError::Trap {
        plugin: plugin.info.name.clone(),
        cause,
        message,
        guest_output: store.data_mut().output_tail(),
    }
}
