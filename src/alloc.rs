//! The allocator's settings. The `viewcast` binary allocates with mimalloc
//! (its `#[global_allocator]`); so do the benchmarks that run the server in
//! their own process, so that their figures are the binary's.

/// mimalloc options (`mi_option_e` in mimalloc 3's `mimalloc.h`; the
/// `allocator_option_numbers` test checks them against the defaults).
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// How long freed memory may stay with the allocator before it goes back
/// to the system, in milliseconds.
const PURGE_DELAY_MS: std::os::raw::c_long = 100;

/// Arenas are committed as they are used, and memory freed goes back to the
/// system after [`PURGE_DELAY_MS`], not at once and not after mimalloc's
/// second:
/// - With mimalloc's defaults (eager commit, a purge delay of a second)
///   freed pages stayed resident: the scale benchmark's memory after a
///   backlog was 650 MiB rather than 350, and after the load 8–10× the
///   tables rather than 5× (at 200k orders).
/// - With no delay, every page a step freed and the next step took again
///   was given back and faulted in anew: loading TPC-H's 22 views took
///   1.4–1.5M page faults and 6.3–8.4 s of system time; with 100 ms,
///   0.7–0.8M faults and 3.9–5.2 s. Ready in 9.9–13.9 s (median 11.2)
///   against 8.7–11.1 s (median 9.7), eight runs each, for 75–100 MB
///   more resident when ready (see docs/architecture.md).
///
/// An operator's `MIMALLOC_*` environment variables still win. Call it
/// first thing, before other threads allocate.
pub fn configure() {
    for (option, var, value) in [
        (
            MI_OPTION_ARENA_EAGER_COMMIT,
            "MIMALLOC_ARENA_EAGER_COMMIT",
            0,
        ),
        (
            MI_OPTION_PURGE_DELAY,
            "MIMALLOC_PURGE_DELAY",
            PURGE_DELAY_MS,
        ),
    ] {
        if std::env::var_os(var).is_none() {
            // SAFETY: setting an option has no preconditions; mimalloc
            // reads it at its next use.
            unsafe { libmimalloc_sys::mi_option_set(option, value) };
        }
    }
}

/// Gives the memory freed so far back to the system now, without waiting
/// for the purge delay or for a thread to free a page (a process gone idle
/// after a load would otherwise keep its last freed pages): mimalloc's
/// forced collection purges every arena. When mimalloc is not the global
/// allocator (the library's tests) it has nothing to give back.
pub fn release_freed() {
    // SAFETY: collecting has no preconditions; it only walks mimalloc's own
    // structures.
    unsafe { libmimalloc_sys::mi_collect(true) };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The option numbers name the options meant: each has its documented
    /// default (eager commit 2: on overcommitting systems; a purge delay of
    /// 1000 ms) unless the environment set it.
    #[test]
    fn allocator_option_numbers() {
        // SAFETY: reading an option has no preconditions.
        let get = |o| unsafe { libmimalloc_sys::mi_option_get(o) };
        if std::env::var_os("MIMALLOC_ARENA_EAGER_COMMIT").is_none() {
            assert_eq!(get(MI_OPTION_ARENA_EAGER_COMMIT), 2);
        }
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(get(MI_OPTION_PURGE_DELAY), 1000);
        }
    }
}
