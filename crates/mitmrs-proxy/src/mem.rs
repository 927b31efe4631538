//! Memory hints for large body buffers.
//!
//! A buffered 100 MiB body is read into one fresh allocation; touching it page by
//! page costs ~26,000 page faults, each a trap (M5: most of the proxy's CPU).
//! `madvise(MADV_POPULATE_WRITE)` (Linux 5.14) faults a whole range in one call:
//! stime per 100 MiB body 17-18 → 10-13 ticks. Transparent huge pages
//! (`MADV_HUGEPAGE`) were tried: fewer faults, but with THP defrag in `madvise`
//! mode some requests stalled 3× longer in compaction, so they are not used.
//! Only a hint: where refused or unsupported, pages fault in as usual.

/// Ranges smaller than this are left to fault in normally.
pub const POPULATE_MIN: usize = 1 << 20;

/// Faults in `buf` (spare capacity about to be filled) ahead of use.
#[cfg(target_os = "linux")]
pub fn populate(buf: &mut [std::mem::MaybeUninit<u8>]) {
    const PAGE: usize = 4096;
    /// MADV_POPULATE_WRITE; not in every libc release.
    const POPULATE_WRITE: libc::c_int = 23;
    if buf.len() < POPULATE_MIN {
        return;
    }
    let start = buf.as_mut_ptr() as usize;
    let end = start + buf.len();
    let aligned = (start + PAGE - 1) & !(PAGE - 1);
    let len = (end - aligned) & !(PAGE - 1);
    // SAFETY: the range lies inside a live allocation this process owns, rounded
    // inwards to whole pages; populating writes no contents that are later read
    // (the bytes are uninitialised spare capacity).
    unsafe {
        libc::madvise(aligned as *mut libc::c_void, len, POPULATE_WRITE);
    }
}

#[cfg(not(target_os = "linux"))]
pub fn populate(_buf: &mut [std::mem::MaybeUninit<u8>]) {}
