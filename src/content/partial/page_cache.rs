//! The `.part` and the kernel's page cache: starting write-back early, and dropping pages
//! already on disk that the download will not read again (best effort, Linux calls).

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// How many written bytes accumulate before
/// [`PartialFile::store`](super::PartialFile::store) asks the kernel to start writing them
/// back. Without it, a download smaller than the dirty-page threshold (10% of RAM by
/// default) stays entirely in memory and the `fsync` at the end has to write all of it at
/// once; with it, the disk works while the network does.
pub(super) const WRITEBACK_EVERY: u64 = 8 << 20;

/// How far behind the end of the verified prefix (the chunks verified from the start of the
/// file, without a gap) the `.part`'s cached pages are kept. Chunks
/// verified this recently are the ones other downloaders ask for next (they have just been
/// announced), so serving them should not go to disk. Measured, 100 MiB to 8 leechers at
/// once: 32 and 64 MiB alike (1.08-1.11 s medians over 5 rounds each, in one hour); single
/// runs of 3-7 rounds of any setting spread from 1.07 to 2.1 s with this VM's fresh-page
/// faults. 1 GiB to one leecher gains the same ~1 s with 32 or 64 MiB. The larger value
/// sends fewer old-chunk requests to disk.
pub(super) const KEEP_CACHED_BEHIND: u64 = 64 << 20;

/// The smallest span a [`CacheRelease`] releases from the page cache at once (one
/// `sync_file_range` and one `fadvise` per span).
pub(super) const RELEASE_STEP: u64 = 8 << 20;

/// Asks the kernel to start writing `file`'s dirty pages to disk, without waiting for it, so
/// the `fsync` before the final rename finds little left to do. Best effort: on failure the
/// `fsync` simply does all the work.
pub(super) fn start_writeback(file: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: sync_file_range takes a descriptor and plain integers and touches no memory of
    // ours; `file` keeps the descriptor open for the duration of the call.
    let r = unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
    if r != 0 {
        log::debug!("sync_file_range: {}", io::Error::last_os_error());
    }
}

/// `offset` and `len` as the kernel's signed file offsets (None past `i64::MAX`).
fn file_range(offset: u64, len: u64) -> Option<(libc::off64_t, libc::off64_t)> {
    Some((offset.try_into().ok()?, len.try_into().ok()?))
}

/// Bytes `start..end` of a download's `.part`, to write to disk and drop from the page cache,
/// handed out by [`PartialFile::take_cache_release`](super::PartialFile::take_cache_release)
/// so that a worker waits for the disk outside the download's lock.
///
/// Why drop them: nothing reads them again during the download except a peer asking for an
/// old chunk (then the read goes to disk), and keeping a whole download cached costs twice:
/// it pushes out the user's other cached files, and each page the kernel hands out for the
/// next write is a fresh one. On virtual machines whose hypervisor takes back free guest
/// memory (free page reporting), a fresh page costs a host fault: this machine's kernel copy
/// into the page cache ran 5x slower, ~1.5 s of CPU per GiB. Pages released here are reused
/// by the next writes at once.
pub struct CacheRelease {
    pub(super) file: Arc<File>,
    pub(super) start: u64,
    pub(super) end: u64,
    /// The download's mark of what is released, shared with its readers.
    pub(super) released: Arc<AtomicU64>,
}

impl CacheRelease {
    /// Writes the region to disk (waiting for it) and drops it from the page cache. Best
    /// effort: on failure the pages only stay cached.
    pub fn run(self) {
        if release_cached(&self.file, self.start, self.end - self.start) {
            self.released.fetch_max(self.end, Ordering::Relaxed);
        }
    }
}

impl std::fmt::Debug for CacheRelease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CacheRelease({}..{})", self.start, self.end)
    }
}

/// Writes bytes `offset..offset + len` of `file` to disk, waiting for them, then drops them
/// from the page cache ([`CacheRelease`] says why). Returns false if either step failed (the
/// pages then stay cached; nothing is lost).
pub(super) fn release_cached(file: &File, offset: u64, len: u64) -> bool {
    use std::os::fd::AsRawFd;
    let Some((off, n)) = file_range(offset, len) else {
        return false;
    };
    let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE
        | libc::SYNC_FILE_RANGE_WRITE
        | libc::SYNC_FILE_RANGE_WAIT_AFTER;
    // SAFETY: takes a descriptor and plain integers and touches no memory of ours; `file`
    // keeps the descriptor open for the duration of the call.
    let r = unsafe { libc::sync_file_range(file.as_raw_fd(), off, n, flags) };
    if r != 0 {
        log::debug!("sync_file_range (release): {}", io::Error::last_os_error());
        return false;
    }
    drop_cached(file, offset, len)
}

/// Drops the clean cached pages of bytes `offset..offset + len` of `file` (dirty ones stay).
/// Returns false if the kernel refused.
pub(super) fn drop_cached(file: &File, offset: u64, len: u64) -> bool {
    use std::os::fd::AsRawFd;
    let Some((off, n)) = file_range(offset, len) else {
        return false;
    };
    // SAFETY: takes a descriptor and plain integers and touches no memory of ours; `file`
    // keeps the descriptor open for the duration of the call.
    let r = unsafe { libc::posix_fadvise(file.as_raw_fd(), off, n, libc::POSIX_FADV_DONTNEED) };
    if r != 0 {
        log::debug!("posix_fadvise: {}", io::Error::from_raw_os_error(r));
        return false;
    }
    true
}
