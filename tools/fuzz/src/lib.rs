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

/// Addresses the node-level targets (`dht_node`, `nat_node`) send from and answer to.
pub const PEERS: [&str; 6] = [
    "192.0.2.1:4001",
    "192.0.2.2:4001",
    "198.51.100.7:5000",
    "203.0.113.9:4001",
    "[2001:db8::1]:4001",
    "[2001:db8::2]:4002",
];

/// A fuzzer's script for the node-level targets, read a byte at a time (zeros once it
/// runs out).
pub struct Script<'a>(pub &'a [u8]);

impl Script<'_> {
    /// True once every byte is read.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// One byte.
    pub fn u8(&mut self) -> u8 {
        let (&b, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        b
    }
    /// Eight bytes, big-endian.
    pub fn u64(&mut self) -> u64 {
        let mut b = [0; 8];
        for x in &mut b {
            *x = self.u8();
        }
        u64::from_be_bytes(b)
    }
    /// Up to `n` bytes (fewer at the end).
    pub fn bytes(&mut self, n: usize) -> &[u8] {
        let (a, b) = self.0.split_at(n.min(self.0.len()));
        self.0 = b;
        a
    }
    /// A datagram length up to one byte past `MAX_DATAGRAM` (two bytes of script).
    pub fn datagram_len(&mut self) -> usize {
        usize::from(u16::from_be_bytes([self.u8(), self.u8()]))
            % (peershare::proto::dht::MAX_DATAGRAM + 2)
    }
    /// A datagram: [`Script::datagram_len`], then that many bytes.
    pub fn datagram(&mut self) -> Vec<u8> {
        let n = self.datagram_len();
        self.bytes(n).to_vec()
    }
    /// One of [`PEERS`], chosen by one byte.
    pub fn peer(&mut self) -> std::net::SocketAddr {
        let i = self.u8();
        peer(i)
    }
}

/// [`PEERS`] entry `i` (modulo their number).
pub fn peer(i: u8) -> std::net::SocketAddr {
    PEERS[usize::from(i) % PEERS.len()]
        .parse()
        .expect("a valid address")
}
