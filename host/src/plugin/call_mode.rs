//! Which of two call mechanisms a plugin gets, and how the cheap one is
//! kept as safe as the general one.
//!
//! A guest can hold a call past its deadline in two ways: by running (cut by
//! the epoch, in either mechanism) or by *waiting* in a host call — a
//! `sleep`, a `poll`, a read of a granted file or socket. Only the async
//! mechanism ([`super::deadline`]) can cut a wait, and it costs about
//! 0.25 µs per call more than a plain synchronous `call` (BENCHMARKS.md,
//! "Where the fixed cost of an async call goes"): +11–45 % at batch 1.
//!
//! So a plugin is called synchronously exactly when it *cannot* wait:
//! - it cannot both wait and have something to wait for: it imports neither
//!   `wasi:io/poll#poll` nor `[method]pollable.block` (the only functions
//!   that wait), or it imports no timer (`monotonic-clock#subscribe-*`) and
//!   no `wasi:sockets` at all; checked per function, since a component
//!   imports only the functions of an interface it uses (Rust's standard
//!   library imports `pollable.block` for stdout, a timer only for
//!   `sleep`);
//! - it has no directory grant (without a preopen no file can be opened, so
//!   no file read can block) and no network grant (without it every socket
//!   call fails at once);
//! - the streams it can still reach never wait: stdin is empty, and stdout
//!   and stderr are the host's ring buffers (`super::stdio`), always ready.
//!
//! Such a plugin is linked against WASI's synchronous implementation.
//! That implementation runs its async parts with `block_on`, which tokio
//! forbids on a thread inside a runtime (the "Cannot start a runtime from
//! within a runtime" crash of issue 11); [`run`] therefore moves a call made
//! from such a thread onto a scoped thread of its own, as the async
//! mechanism does.
//!
//! Everything else — Python and JavaScript guests, whose runtimes import
//! `poll`, and any plugin with a grant — keeps the async mechanism.

use wasmtime::Engine;
use wasmtime::component::types::{Component as ComponentType, ComponentItem};

use super::deadline::Unfinished;
use super::limits::{Grants, NetworkGrant};

/// How a plugin's guest entries are made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallMode {
    /// Plain `call`s, WASI linked synchronously: for plugins that cannot
    /// wait (see the module docs).
    Sync,
    /// `call_async` futures under a wall-clock timer ([`super::deadline`]).
    Async,
}

/// Which mechanism a runtime gives its plugins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallPolicy {
    /// [`CallMode::Sync`] for plugins that cannot wait, else async: every
    /// real runtime.
    Auto,
    /// Always synchronous, even for a plugin that can wait (which is then
    /// not cut while waiting): the benchmark's pre-issue-11 baseline.
    AlwaysSync,
    /// Always async: for measuring the async mechanism on guests that
    /// would otherwise be called synchronously.
    AlwaysAsync,
}

/// The functions of `wasi:io/poll` that wait for a pollable.
const WAITING_POLL_FUNCTIONS: &[&str] = &["poll", "[method]pollable.block"];

/// The functions of `wasi:clocks/monotonic-clock` that make a pollable that
/// is not ready at once.
const TIMER_FUNCTIONS: &[&str] = &["subscribe-instant", "subscribe-duration"];

impl CallPolicy {
    /// The mechanism for a component of type `ty` running with `grants`.
    pub(crate) fn mode_for(self, engine: &Engine, ty: &ComponentType, grants: &Grants) -> CallMode {
        match self {
            CallPolicy::AlwaysSync => CallMode::Sync,
            CallPolicy::AlwaysAsync => CallMode::Async,
            CallPolicy::Auto if can_wait(engine, ty, grants) => CallMode::Async,
            CallPolicy::Auto => CallMode::Sync,
        }
    }
}

/// Whether a guest of type `ty` with `grants` could wait in a host call.
///
/// Waiting takes a wait function and a pollable that is not ready at once.
/// Rust's standard library imports `pollable.block` for its stdout writes,
/// but without a grant the only pollables a guest can make that are ever
/// pending are timers (or sockets, which are all denied, but are counted
/// anyway): stdin is closed, stdout and stderr are always ready, and no
/// file can be opened.
fn can_wait(engine: &Engine, ty: &ComponentType, grants: &Grants) -> bool {
    if !grants.read_dirs.is_empty() || grants.network != NetworkGrant::None {
        return true;
    }
    let imports = |interface: &str, functions: &[&str]| {
        ty.imports(engine).any(|(name, item)| {
            if !name.starts_with(interface) {
                return false;
            }
            match item.ty {
                ComponentItem::ComponentInstance(instance) => instance
                    .exports(engine)
                    .any(|(function, _)| functions.is_empty() || functions.contains(&function)),
                // Imported in some other shape: assume the worst.
                _ => true,
            }
        })
    };
    imports("wasi:io/poll", WAITING_POLL_FUNCTIONS)
        && (imports("wasi:clocks/monotonic-clock", TIMER_FUNCTIONS)
            || imports("wasi:sockets/", &[]))
}

/// Runs a synchronous guest entry `call`, off any tokio runtime: on this
/// thread when it has none, else on a scoped thread of its own.
///
/// The call cannot wait (see the module docs), so the epoch alone ends it
/// within its deadline.
pub(crate) fn run<R: Send>(call: impl FnOnce() -> R + Send) -> Result<R, Unfinished> {
    if tokio::runtime::Handle::try_current().is_err() {
        return Ok(call());
    }
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("halyard-guest-call".into())
            .spawn_scoped(scope, call)
            .map_err(|_| Unfinished::NoRuntime)?
            .join()
            .map_err(|_| Unfinished::NoRuntime)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_grant_that_can_block_means_async() {
        let engine = Engine::default();
        // The smallest component: the header alone, importing nothing.
        let empty = b"\0asm\x0d\x00\x01\x00";
        let component = wasmtime::component::Component::from_binary(&engine, empty).unwrap();
        let ty = component.component_type();
        let none = Grants::default();
        assert_eq!(
            CallPolicy::Auto.mode_for(&engine, &ty, &none),
            CallMode::Sync
        );
        let dirs = Grants {
            read_dirs: vec!["/tmp".into()],
            ..Grants::default()
        };
        assert_eq!(
            CallPolicy::Auto.mode_for(&engine, &ty, &dirs),
            CallMode::Async
        );
        let net = Grants {
            network: NetworkGrant::Any,
            ..Grants::default()
        };
        assert_eq!(
            CallPolicy::Auto.mode_for(&engine, &ty, &net),
            CallMode::Async
        );
        assert_eq!(
            CallPolicy::AlwaysSync.mode_for(&engine, &ty, &net),
            CallMode::Sync
        );
    }

    #[tokio::test]
    async fn calls_from_an_async_task_run_off_its_runtime() {
        let inside = run(|| tokio::runtime::Handle::try_current().is_ok()).unwrap();
        assert!(!inside);
    }

    #[test]
    fn calls_from_a_plain_thread_run_on_it() {
        let caller = std::thread::current().id();
        assert_eq!(run(|| std::thread::current().id()).unwrap(), caller);
    }
}
