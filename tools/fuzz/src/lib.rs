//! What the fuzz targets share: an allocator that turns a huge allocation into a crash, and
//! the fuzzer-seeded piece sizes that split a stream the way a socket would.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;

/// Larger than any allocation a decoder makes on purpose (the largest is a whole manifest
/// being decoded: 32 MiB + 64 bytes, `MAX_MANIFEST_LEN`, and the fuzzer's inputs are far
/// smaller), so a request above it can only be sized by an unchecked length.
pub const MAX_ALLOCATION: usize = 64 << 20;

/// The system allocator, aborting (a crash libFuzzer records, with the input) on any single
/// allocation above [`MAX_ALLOCATION`]. libFuzzer's own `-malloc_limit_mb` needs a sanitizer's
/// malloc hooks, and `-rss_limit_mb` misses a large allocation that is never touched.
pub struct CappedAlloc;

impl CappedAlloc {
    fn check(size: usize) {
        if size > MAX_ALLOCATION {
            // No formatting: keep allocating nothing more on the way out.
            let _ =
                std::io::stderr().write_all(b"fuzz: allocation above MAX_ALLOCATION (64 MiB)\n");
            std::process::abort();
        }
    }
}

// SAFETY: every call is forwarded unchanged to `System`; the size check only adds an abort.
unsafe impl GlobalAlloc for CappedAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::check(layout.size());
        // SAFETY: the caller's contract for `layout` is System's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::check(layout.size());
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Self::check(new_size);
        // SAFETY: `ptr` came from `System` with this layout.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Piece sizes for splitting a stream, from a seed in the input, so the fuzzer controls
/// where reads and writes end (xorshift: cheap and deterministic).
pub struct Steps(u32);

impl Steps {
    /// A generator seeded with `seed` (xorshift needs a non-zero state).
    pub fn new(seed: [u8; 4]) -> Steps {
        Steps(u32::from_le_bytes(seed) | 1)
    }

    fn next(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 17;
        self.0 ^= self.0 << 5;
        self.0
    }

    /// A size of at least 1: often a few bytes (splits inside headers and escapes),
    /// sometimes up to 4 KiB, sometimes unbounded (everything available).
    pub fn step(&mut self) -> usize {
        let r = self.next();
        let k = (r >> 8) as usize;
        match r % 4 {
            0 => 1 + k % 4,
            1 => 1 + k % 64,
            2 => 1 + k % 4096,
            _ => usize::MAX,
        }
    }

    /// Whether a socket says WouldBlock now; the caller never blocks twice in a row, so
    /// every call makes progress.
    pub fn blocks(&mut self) -> bool {
        self.next().is_multiple_of(3)
    }
}
