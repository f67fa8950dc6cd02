//! Allocator settings for a long-running exporter on glibc.
//!
//! glibc raises its mmap threshold to the size of the largest block freed so far (up to
//! 32 MiB). After one oversized device answer (read up to an exporter's body limit and
//! dropped), every later allocation below that size comes from the heap, which is rarely
//! given back: the exporter then keeps tens of MiB resident for good. A fixed threshold of
//! 128 KiB (glibc's starting value) keeps large blocks in their own mappings, returned to the
//! kernel when freed. musl (the static builds in the images) already works that way.

/// Fixes the mmap threshold (see the module docs); does nothing off glibc.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: mallopt only changes allocator parameters; it is called once at start, before
    // any other thread exists, with a parameter and value glibc documents.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }
}
