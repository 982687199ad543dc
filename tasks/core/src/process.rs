//! Settings of a Bitácora binary's own process. Each `main` declares [`Allocator`] as its global
//! allocator and calls [`init`] first; the libraries and the Python module leave their host alone.

/// The binaries' global allocator: glibc's malloc maps and unmaps the steps' large buffers over
/// and over (page faults, `mmap_lock` contention between workers); mimalloc keeps them.
pub use mimalloc::MiMalloc as Allocator;

/// Prepares the process for a step's work: transparent huge pages off.
///
/// A step's memory is mostly buffers built once and dropped (Arrow columns, Parquet pages, decoded
/// blocks); with transparent huge pages every first touch of a 2 MiB region zeroes all of it, which
/// both inflates the peak (a 1M-event transform: 760 → 600 MiB) and costs more time than the TLB
/// saves (transform of a 1M-event day 2.1 → 1.6 s on the 2-core benchmark machine).
pub fn init() {
    #[cfg(target_os = "linux")]
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and only sets a flag of this process.
    unsafe {
        // Failure (an old kernel) leaves the default: nothing to report.
        let (on, unused): (libc::c_ulong, libc::c_ulong) = (1, 0);
        libc::prctl(libc::PR_SET_THP_DISABLE, on, unused, unused, unused);
    }
}
