//! The allocator's settings. The `viewcast` binary allocates with mimalloc
//! (its `#[global_allocator]`); so do the benchmarks that run the server in
//! their own process, so that their figures are the binary's.

/// mimalloc options (`mi_option_e` in mimalloc 3's `mimalloc.h`; the
/// `allocator_option_numbers` test checks them against the defaults).
const MI_OPTION_ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Memory freed goes back to the system at once and arenas are committed as
/// they are used. With mimalloc's defaults (eager commit, and freed memory
/// purged only after a second, ten for whole arenas) freed pages stayed
/// resident: the scale benchmark's memory after a backlog was 650 MiB rather
/// than 350, and after the load 8–10× the tables rather than 5× (at 200k
/// orders). An operator's `MIMALLOC_*` environment variables still win.
/// Call it first thing, before other threads allocate.
pub fn configure() {
    for (option, var, value) in [
        (
            MI_OPTION_ARENA_EAGER_COMMIT,
            "MIMALLOC_ARENA_EAGER_COMMIT",
            0,
        ),
        (MI_OPTION_PURGE_DELAY, "MIMALLOC_PURGE_DELAY", 0),
    ] {
        if std::env::var_os(var).is_none() {
            // SAFETY: setting an option has no preconditions; mimalloc
            // reads it at its next use.
            unsafe { libmimalloc_sys::mi_option_set(option, value) };
        }
    }
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
