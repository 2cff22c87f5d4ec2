//! Network emulation on the node's own send path: added one-way delay, jitter and loss for
//! DHT datagrams. This kernel has no `netem`, so a node can emulate a wide-area network on
//! loopback itself (`peershare run --emulate-latency 25ms --emulate-loss 1%`), letting tests
//! and learners watch the protocol cope with delay and loss.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Datagrams held at most; beyond this the emulated link drops (as a full router queue would).
const MAX_QUEUED: usize = 16_384;

/// A held datagram: release time, sequence number (keeps equal times in order), destination
/// and payload.
type Held = Reverse<(Instant, u64, SocketAddr, Vec<u8>)>;

/// Delays and drops outgoing datagrams.
#[derive(Debug)]
pub struct SendEmulator {
    latency: Duration,
    jitter: Duration,
    loss: f64,
    rng: StdRng,
    queue: BinaryHeap<Held>,
    seq: u64,
    /// Datagrams dropped by emulated loss or a full queue.
    pub dropped: u64,
}

impl SendEmulator {
    /// An emulator; all zero means datagrams pass straight through.
    pub fn new(latency: Duration, jitter: Duration, loss: f64, seed: u64) -> Self {
        SendEmulator {
            latency,
            jitter,
            loss: loss.clamp(0.0, 1.0),
            rng: StdRng::seed_from_u64(seed),
            queue: BinaryHeap::new(),
            seq: 0,
            dropped: 0,
        }
    }

    /// True when the emulator changes nothing.
    pub fn is_passthrough(&self) -> bool {
        self.latency.is_zero() && self.jitter.is_zero() && self.loss == 0.0
    }

    /// Offers a datagram. Returns it back when it may go out now; otherwise it is queued
    /// (or dropped) and comes out of [`SendEmulator::due`] later.
    pub fn submit(
        &mut self,
        now: Instant,
        dest: SocketAddr,
        payload: Vec<u8>,
    ) -> Option<(SocketAddr, Vec<u8>)> {
        if self.is_passthrough() {
            return Some((dest, payload));
        }
        if self.loss > 0.0 && self.rng.gen_bool(self.loss) {
            self.dropped += 1;
            return None;
        }
        let extra = if self.jitter.is_zero() {
            Duration::ZERO
        } else {
            self.jitter.mul_f64(self.rng.gen::<f64>())
        };
        let at = now + self.latency + extra;
        if at <= now {
            return Some((dest, payload));
        }
        if self.queue.len() >= MAX_QUEUED {
            self.dropped += 1;
            return None;
        }
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq, dest, payload)));
        None
    }

    /// The next datagram whose time has come.
    pub fn due(&mut self, now: Instant) -> Option<(SocketAddr, Vec<u8>)> {
        match self.queue.peek() {
            Some(Reverse((at, ..))) if *at <= now => {
                self.queue.pop().map(|Reverse((_, _, d, p))| (d, p))
            }
            _ => None,
        }
    }

    /// When the next queued datagram is due.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.queue.peek().map(|Reverse((at, ..))| *at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_in_order_and_drops_at_the_given_rate() {
        let t0 = Instant::now();
        let d: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let mut e = SendEmulator::new(Duration::from_millis(25), Duration::ZERO, 0.0, 1);
        assert!(e.submit(t0, d, vec![1]).is_none());
        assert!(e
            .submit(t0 + Duration::from_millis(1), d, vec![2])
            .is_none());
        assert!(e.due(t0 + Duration::from_millis(24)).is_none());
        assert_eq!(e.due(t0 + Duration::from_millis(25)).unwrap().1, vec![1]);
        assert!(e.due(t0 + Duration::from_millis(25)).is_none());
        assert_eq!(e.due(t0 + Duration::from_millis(26)).unwrap().1, vec![2]);

        let mut lossy = SendEmulator::new(Duration::ZERO, Duration::ZERO, 0.1, 7);
        let passed = (0..10_000)
            .filter(|_| lossy.submit(t0, d, vec![0]).is_some())
            .count();
        assert!((8_800..9_200).contains(&passed), "{passed}");
        assert_eq!(lossy.dropped as usize, 10_000 - passed);

        let mut plain = SendEmulator::new(Duration::ZERO, Duration::ZERO, 0.0, 1);
        assert!(plain.is_passthrough());
        assert!(plain.submit(t0, d, vec![3]).is_some());
    }
}
