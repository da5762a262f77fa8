//! How every guest call is held to its deadline, whatever the guest does.
//!
//! The mechanism, and why:
//! - The engine runs with async support, and every entry into a guest
//!   (instantiation, `info`, `init`, the stage export) is a `call_async`
//!   future. WASI is linked with its async implementation, so a guest that
//!   waits — `sleep`, a `poll` with a huge timeout, a stream read, a socket
//!   under a network grant — suspends that future instead of blocking a
//!   thread.
//! - Running wasm code is cut by epoch interruption: the store's epoch
//!   deadline is set to the call's deadline in ticks, so a busy loop traps
//!   with [`wasmtime::Trap::Interrupt`] one tick after it.
//! - Waiting is cut by a wall-clock timer on the same deadline (plus one
//!   tick, so a busy guest gets the clearer "interrupt" trap first). When it
//!   fires the future is dropped; wasmtime then resumes the suspended guest
//!   with an error so its stack unwinds, and the store (now poisoned) is
//!   discarded by the caller.
//! - The future is driven by a current-thread tokio runtime owned by the
//!   calling thread (the pipeline thread, the reload thread). On a thread
//!   that belongs to another tokio runtime (an async task, a test), nesting
//!   runtimes is not allowed, so the call runs on a scoped thread of its own:
//!   guest code and WASI never run on the async runtime's worker threads.
//!
//! Both limits are **wall-clock** time from the start of the call, not CPU
//! time: a call that is descheduled on a saturated machine uses up its
//! deadline too. Every call ends within `deadline + 2 ×` [`EPOCH_TICK`].
//!
//! A blocking operation that WASI runs on a blocking thread (a read of a
//! granted file) is abandoned, not interrupted: the guest's call ends on
//! time and that thread finishes the read on its own.

use std::cell::OnceCell;
use std::future::Future;
use std::time::Duration;

use super::engine::EPOCH_TICK;

/// Why a call did not finish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Unfinished {
    /// It was still waiting in the host (the guest was suspended, not
    /// running wasm code) when the deadline passed.
    #[error("blocked in a host call past its deadline")]
    Blocked,
    /// No runtime or thread could be started to run it (the process is out
    /// of threads or file descriptors).
    #[error("no thread or runtime could be started to run the call")]
    NoRuntime,
}

thread_local! {
    /// This thread's runtime for guest calls; created on first use.
    static LOCAL: OnceCell<Option<tokio::runtime::Runtime>> = const { OnceCell::new() };
}

/// Runs `call` to completion within `deadline` (wall clock) and returns its
/// output, or why not.
pub fn run<F>(deadline: Duration, call: F) -> Result<F::Output, Unfinished>
where
    F: Future + Send,
    F::Output: Send,
{
    let until = tokio::time::Instant::now() + deadline.saturating_add(EPOCH_TICK);
    if tokio::runtime::Handle::try_current().is_ok() {
        // Inside some async runtime: tokio forbids starting another one
        // here, and a guest must not hold that runtime's thread.
        return std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("halyard-guest-call".into())
                .spawn_scoped(scope, || drive(until, call))
                .map_err(|_| Unfinished::NoRuntime)?
                .join()
                .unwrap_or(Err(Unfinished::NoRuntime))
        });
    }
    drive(until, call)
}

/// Drives `call` on this thread's runtime until it is done or `until`.
///
/// Most calls never wait: the guest runs to its end in the first poll. So
/// the first poll happens inside the runtime's context (WASI's async host
/// functions need it) but outside `block_on`, with no timer armed; only a
/// call that is still pending after it is handed to `block_on` with a
/// timer. This keeps the fixed cost of a call close to that of a plain
/// synchronous one (BENCHMARKS.md, "Stage cost").
fn drive<F: Future>(until: tokio::time::Instant, call: F) -> Result<F::Output, Unfinished> {
    LOCAL.with(|cell| {
        let fresh;
        let runtime = match cell.get_or_init(new_runtime) {
            Some(rt) => rt,
            // It could not be built (no fds left): try a fresh one for
            // this call.
            None => {
                fresh = new_runtime().ok_or(Unfinished::NoRuntime)?;
                &fresh
            }
        };
        let mut call = std::pin::pin!(call);
        {
            let _entered = runtime.enter();
            let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
            if let std::task::Poll::Ready(out) = call.as_mut().poll(&mut cx) {
                return Ok(out);
            }
        }
        runtime.block_on(async {
            tokio::time::timeout_at(until, call)
                .await
                .map_err(|_| Unfinished::Blocked)
        })
    })
}

fn new_runtime() -> Option<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("halyard-guest-io")
        .build()
        .ok()
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn a_waiting_call_is_cut_at_its_deadline() {
        let started = Instant::now();
        let out = run(Duration::from_millis(50), async {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        });
        assert_eq!(out, Err(Unfinished::Blocked));
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(50), "{took:?}");
        assert!(
            took < Duration::from_millis(50) + 20 * EPOCH_TICK,
            "{took:?}"
        );
        assert_eq!(run(Duration::from_millis(50), async { 7 }), Ok(7));
    }

    #[tokio::test]
    async fn calls_from_an_async_task_run_off_its_thread() {
        let caller = std::thread::current().id();
        let ran_on = run(Duration::from_secs(1), async {
            std::thread::current().id()
        })
        .unwrap();
        assert_ne!(ran_on, caller);
    }
}
