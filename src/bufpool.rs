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
//! The pool must hold what a busy node has in flight: with 256 KiB chunks, a downloader
//! serving 7 peers while fetching from 8 has far more than 32 chunks out at once, and a pool
//! of 8 MiB sent the rest back to the kernel after each burst: in a 1->8 swarm, clearing
//! fresh pages was 7% of the nodes' CPU, gone with a pool that kept them (peak RSS about the
//! same: the buffers exist while in flight anyway). So the pool is large ([`MAX_POOLED_BYTES`])
//! but gives back what goes unused: [`trim_unused`], called every second, frees the buffers
//! that stayed in the pool since the call before, so an idle node holds none.

use parking_lot::Mutex;

/// The most bytes of capacity the pool keeps; buffers given beyond that are freed.
pub const MAX_POOLED_BYTES: usize = 128 << 20;
/// The most buffers it keeps, whatever their size (the list of them must stay small too:
/// a stream of tiny PIECEs must not grow it to millions of entries).
pub const MAX_POOLED_BUFFERS: usize = 1024;
/// Smaller buffers are not kept: the allocator serves them from its heap without faulting
/// in fresh pages, so pooling them saves nothing.
pub const MIN_POOLED_CAPACITY: usize = 16 << 10;

struct Pool {
    /// Most recently given last; the first ones have waited longest.
    bufs: Vec<Vec<u8>>,
    bytes: usize,
    /// The fewest bytes the pool held since the last [`trim_unused`]: that much was not used.
    idle: usize,
}

impl Pool {
    const fn new() -> Pool {
        Pool {
            bufs: Vec::new(),
            bytes: 0,
            idle: 0,
        }
    }

    fn pop(&mut self) -> Option<Vec<u8>> {
        let b = self.bufs.pop()?;
        self.bytes = self.bytes.saturating_sub(b.capacity());
        self.idle = self.idle.min(self.bytes);
        Some(b)
    }

    /// Keeps `buf` if it fits under the cap; else hands it back to be freed.
    fn push(&mut self, buf: Vec<u8>) -> Option<Vec<u8>> {
        if buf.capacity() < MIN_POOLED_CAPACITY
            || self.bufs.len() >= MAX_POOLED_BUFFERS
            || self.bytes + buf.capacity() > MAX_POOLED_BYTES
        {
            return Some(buf);
        }
        self.bytes += buf.capacity();
        self.bufs.push(buf);
        None
    }

    /// Takes out the buffers unused for a whole period (see [`trim_unused`]).
    fn trim(&mut self) -> Vec<Vec<u8>> {
        let (mut n, mut count) = (0, 0);
        for b in &self.bufs {
            if n + b.capacity() > self.idle {
                break;
            }
            n += b.capacity();
            count += 1;
        }
        self.bytes -= n;
        self.idle = self.bytes;
        self.bufs.drain(..count).collect()
    }
}

static POOL: Mutex<Pool> = Mutex::new(Pool::new());

/// A buffer of exactly `len` bytes with unspecified contents (zeroes for a new one, or
/// whatever a previous user left). Only the part beyond the reused buffer's old length is
/// zeroed.
pub fn take(len: usize) -> Vec<u8> {
    let reused = POOL.lock().pop();
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
    let refused = POOL.lock().push(buf);
    drop(refused); // freed outside the lock
}

/// Frees the buffers that nobody took since the previous call (the longest-waiting ones, as
/// many bytes as the pool never went below), and starts a new period. Returns the bytes
/// freed.
pub fn trim_unused() -> usize {
    let freed = POOL.lock().trim();
    freed.iter().map(Vec::capacity).sum()
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

    #[test]
    fn buffers_unused_for_a_whole_period_are_freed() {
        const B: usize = MIN_POOLED_CAPACITY;
        let mut p = Pool::new();
        assert!(p.push(vec![0; B]).is_none());
        assert!(p.push(vec![0; B]).is_none());
        // Given during this period: not unused for a whole one yet, so kept.
        assert!(p.trim().is_empty());
        // One taken and given back during the next period: the pool went down to one
        // buffer's bytes, so one buffer (the longest waiting) was unused throughout and goes.
        let b = p.pop().unwrap();
        assert!(p.push(b).is_none());
        assert_eq!(p.trim().len(), 1);
        assert_eq!((p.bufs.len(), p.bytes), (1, B));
        // Idle for a whole period: the last one goes too.
        assert_eq!(p.trim().len(), 1);
        assert_eq!((p.bufs.len(), p.bytes, p.idle), (0, 0, 0));
        // Over the cap: handed back.
        assert!(p.push(vec![0; MAX_POOLED_BYTES + 1]).is_some());
    }

    #[test]
    fn tiny_buffers_are_not_kept_and_the_count_is_bounded() {
        let mut p = Pool::new();
        assert!(p.push(vec![0; 1]).is_some());
        assert!(p.push(Vec::new()).is_some());
        for _ in 0..MAX_POOLED_BUFFERS {
            assert!(p.push(vec![0; MIN_POOLED_CAPACITY]).is_none());
        }
        assert!(p.push(vec![0; MIN_POOLED_CAPACITY]).is_some());
        assert_eq!(p.bufs.len(), MAX_POOLED_BUFFERS);
    }
}
