//! The C allocator's settings for a small device.
//!
//! Why: glibc's `malloc` gives a thread that meets contention an arena of
//! its own, up to eight per core, and keeps what was freed in an arena for
//! later use in that arena. The host's threads take turns with the same
//! data (the HTTP input reads a body on a tokio thread, splits it on a
//! blocking thread, the pipeline thread decodes and commits it, the
//! shipper reads it back), so a large request leaves its peak in several
//! arenas at once.
//!
//! Measured with the `http_memory` test (debug build, one pipeline worker,
//! a 14.2 MiB request), the peak grew 2.83–3.03× the body with glibc's
//! default (16 arenas on 2 cores), 2.74× with 4, 2.46× with 2 and 2.23×
//! with one. In the pipeline benchmark (2 cores, 2 workers) 2 arenas cost
//! 7–20 % more CPU per line (the threads wait on each other's locks) while 4 cost
//! nothing measurable and took 4–5 MB off the peak RSS: see BENCHMARKS.md
//! ("Issue 14, third round"). So the cap is two arenas per core: one for
//! each busy thread a core runs (a pipeline worker and a tokio worker).
//!
//! An operator's own `MALLOC_ARENA_MAX` wins: glibc reads it at start, and
//! this module leaves the setting alone when it is set.

/// How many glibc arenas the host allows per core.
pub const ARENAS_PER_CORE: usize = 2;

/// Caps glibc's arenas at [`ARENAS_PER_CORE`] per core unless
/// `MALLOC_ARENA_MAX` is set.
/// Call it first in `main`, before any thread starts: arenas already made
/// are kept. Elsewhere than Linux with glibc it does nothing.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        glibc::set_arena_max(cores.saturating_mul(ARENAS_PER_CORE));
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod glibc {
    use std::ffi::c_int;

    // From the C library std already links.
    unsafe extern "C" {
        fn mallopt(param: c_int, value: c_int) -> c_int;
    }

    /// `M_ARENA_MAX` in glibc's `malloc.h`.
    const M_ARENA_MAX: c_int = -8;

    pub(super) fn set_arena_max(arenas: usize) {
        let arenas = c_int::try_from(arenas).unwrap_or(c_int::MAX);
        // SAFETY: a plain call with integer arguments; glibc takes its own
        // lock. It returns 0 on a bad parameter, which leaves the default.
        unsafe { mallopt(M_ARENA_MAX, arenas) };
    }
}
