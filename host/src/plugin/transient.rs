//! Host-side failures worth a second try, told apart from guest faults.
//!
//! Starting an instance asks the kernel for resources on the guest's
//! behalf: wasmtime writes each core module's initial memory into a sealed
//! `memfd` (its copy-on-write image, made on first use) and maps it into
//! every new instance. Sealing that memfd against writes can fail with
//! `EBUSY` while the kernel still holds a page of it elsewhere (a per-CPU
//! page batch, a migration): transient, and nothing to do with the guest.
//! CI saw exactly this once while loading a Python component, whose image
//! is tens of MiB; reported as a guest trap, it refused a sound plugin.
//!
//! So a failure whose cause is an OS error of the transient kinds below,
//! with no wasm trap in its chain, is retried a few times with a short
//! pause. Everything else (a trap, a link error, a guest's own error) is
//! final at once: retrying cannot change a deterministic guest.

use std::time::Duration;

use rustix::io::Errno;

/// Attempts in all, the first included.
pub const ATTEMPTS: u32 = 4;

/// The pause before the second attempt; it doubles after each failure
/// (5 + 10 + 20 ms in all), long enough for the kernel to settle a page
/// batch and short enough not to stall a load.
const FIRST_PAUSE: Duration = Duration::from_millis(5);

/// Whether `err` is a transient host resource failure: an OS error of kind
/// `EBUSY`, `EAGAIN` or `EINTR` somewhere in its chain, and no wasm trap.
pub fn is_transient(err: &wasmtime::Error) -> bool {
    if err.downcast_ref::<wasmtime::Trap>().is_some() {
        return false;
    }
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| match io.raw_os_error() {
                Some(code) => [Errno::BUSY, Errno::AGAIN, Errno::INTR]
                    .iter()
                    .any(|e| e.raw_os_error() == code),
                None => matches!(
                    io.kind(),
                    std::io::ErrorKind::ResourceBusy
                        | std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::Interrupted
                ),
            })
    })
}

/// How long to wait after failed attempt number `tries` (1 for the first)
/// before the next; `None` once [`ATTEMPTS`] have been made.
pub fn pause_after(tries: u32) -> Option<Duration> {
    (tries < ATTEMPTS).then(|| FIRST_PAUSE * (1 << (tries - 1).min(8)))
}

/// Runs `attempt` until it succeeds, fails for good, or has been tried
/// [`ATTEMPTS`] times; returns its last outcome. `retryable` says which
/// failures are worth another try.
pub fn retry<T, E>(
    mut attempt: impl FnMut() -> Result<T, E>,
    retryable: impl Fn(&E) -> bool,
) -> Result<T, E> {
    let mut tries = 1;
    loop {
        match attempt() {
            Err(err) if retryable(&err) => match pause_after(tries) {
                Some(pause) => std::thread::sleep(pause),
                None => return Err(err),
            },
            outcome => return outcome,
        }
        tries += 1;
    }
}

/// Makes the copy-on-write memory images of every core module in
/// `component` now, at load, retrying transient failures, so that starting
/// an instance later (a restart after a trap, a hot swap) only maps them.
/// A failure that persists is logged and left to the first instantiation,
/// which reports it.
pub fn prepare_memory_images(component: &wasmtime::component::Component, plugin: &str) {
    if let Err(err) = retry(|| component.initialize_copy_on_write_image(), is_transient) {
        tracing::debug!(plugin, error = %err,
            "memory images not prepared at load; the first instance makes them");
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    fn os_error(errno: Errno) -> wasmtime::Error {
        wasmtime::Error::new(std::io::Error::from_raw_os_error(errno.raw_os_error()))
    }

    #[test]
    fn busy_again_and_interrupted_are_transient_and_traps_are_not() {
        assert!(is_transient(&os_error(Errno::BUSY)));
        assert!(is_transient(&os_error(Errno::AGAIN)));
        assert!(is_transient(&os_error(Errno::INTR)));
        assert!(is_transient(
            &os_error(Errno::BUSY).context("failed to create memfd image")
        ));
        // Out of memory is not a blip worth waiting for.
        assert!(!is_transient(&os_error(Errno::NOMEM)));
        assert!(!is_transient(&wasmtime::Error::new(
            wasmtime::Trap::UnreachableCodeReached
        )));
        assert!(!is_transient(&wasmtime::Error::msg("link error")));
    }

    #[test]
    fn pauses_double_and_stop_after_the_last_attempt() {
        assert_eq!(pause_after(1), Some(Duration::from_millis(5)));
        assert_eq!(pause_after(2), Some(Duration::from_millis(10)));
        assert_eq!(pause_after(3), Some(Duration::from_millis(20)));
        assert_eq!(pause_after(ATTEMPTS), None);
    }

    #[test]
    fn a_transient_failure_is_retried_until_it_passes() {
        let calls = Cell::new(0);
        let out = retry(
            || {
                calls.set(calls.get() + 1);
                if calls.get() < 3 {
                    Err(os_error(Errno::BUSY))
                } else {
                    Ok(7)
                }
            },
            is_transient,
        );
        assert_eq!(out.ok(), Some(7));
        assert_eq!(calls.get(), 3);
    }

    #[test]
    fn a_lasting_failure_is_tried_a_bounded_number_of_times() {
        let calls = Cell::new(0);
        let out: Result<(), _> = retry(
            || {
                calls.set(calls.get() + 1);
                Err(os_error(Errno::BUSY))
            },
            is_transient,
        );
        assert!(out.is_err());
        assert_eq!(calls.get(), ATTEMPTS);
    }

    #[test]
    fn a_guest_fault_is_final_at_once() {
        let calls = Cell::new(0);
        let out: Result<(), _> = retry(
            || {
                calls.set(calls.get() + 1);
                Err(wasmtime::Error::new(wasmtime::Trap::UnreachableCodeReached))
            },
            is_transient,
        );
        assert!(out.is_err());
        assert_eq!(calls.get(), 1);
    }
}
