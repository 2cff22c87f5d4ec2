//! Chunk buffers, reused.
//!
//! Every chunk received is read from its socket into a buffer, hashed and written on a
//! worker; every chunk served is read from disk into a buffer on a worker and written to a
//! socket by the reactor. With a fresh buffer each time, the allocator zeroed it first (the
//! socket read initialises the memory it is given, the disk read is given a zeroed `Vec`)
//! and often took its pages from the kernel again, with a fault per page: perf put that at
//! about a tenth of a downloader's CPU in an 8-leecher swarm on loopback. A buffer taken
//! from here already has its length; a read overwrites all of it, so nothing is zeroed.
//!
//! The pool holds at most [`MAX_POOLED_BYTES`], so it never adds much to a node's memory.

use parking_lot::Mutex;

/// The most bytes of capacity the pool keeps; buffers given beyond that are freed.
pub const MAX_POOLED_BYTES: usize = 32 << 20;

struct Pool {
    bufs: Vec<Vec<u8>>,
    bytes: usize,
}

static POOL: Mutex<Pool> = Mutex::new(Pool {
    bufs: Vec::new(),
    bytes: 0,
});

/// A buffer of exactly `len` bytes with unspecified contents (zeroes for a new one, or
/// whatever a previous user left). Only the part beyond the reused buffer's old length is
/// zeroed.
pub fn take(len: usize) -> Vec<u8> {
    let reused = {
        let mut p = POOL.lock();
        let b = p.bufs.pop();
        if let Some(b) = &b {
            p.bytes = p.bytes.saturating_sub(b.capacity());
        }
        b
    };
    match reused {
        Some(mut b) => {
            b.resize(len, 0);
            b
        }
        None => vec![0; len],
    }
}

/// Returns a buffer for reuse (or frees it when the pool is full).
pub fn give(buf: Vec<u8>) {
    if buf.capacity() == 0 || buf.capacity() > MAX_POOLED_BYTES {
        return;
    }
    let mut p = POOL.lock();
    if p.bytes + buf.capacity() <= MAX_POOLED_BYTES {
        p.bytes += buf.capacity();
        p.bufs.push(buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_with_the_asked_length_and_the_pool_stays_bounded() {
        let b = take(1000);
        assert_eq!(b.len(), 1000);
        give(b);
        let b = take(10);
        assert_eq!(b.len(), 10);
        let c = take(3000);
        assert_eq!(c.len(), 3000);
        give(b);
        give(c);
        // Far more than the cap given back: the pool keeps at most MAX_POOLED_BYTES.
        for _ in 0..64 {
            give(vec![0; 1 << 20]);
        }
        // One lock: other tests in this process use the pool too.
        let p = POOL.lock();
        assert!(p.bytes <= MAX_POOLED_BYTES);
        let sum: usize = p.bufs.iter().map(Vec::capacity).sum();
        assert_eq!(sum, p.bytes);
    }
}
