//! Pacing our own requests to one address (dht.md section 13.1): a peer serves at most so
//! many requests a second from one source, so a burst of ours beyond that (every key
//! republished at once when our rendezvous changes, many downloads' lookups in a two-node
//! network) would be dropped by its limit and cost timeouts and retries. Instead, requests
//! past the burst wait for their turn here, spaced at the pace rate.
//!
//! The scheduler is the generic cell rate algorithm (GCRA): per address, a theoretical
//! arrival time `tat`, moved on by one interval per request. A request whose `tat` is
//! within the burst's tolerance of now goes at once; any other gets the slot `tat -
//! tolerance`, already its own, so a held request never has to ask again.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Addresses paced at once, at most (beyond: requests to new addresses are not paced).
const MAX_PACED: usize = 4096;
/// Sweeps of idle addresses start once the table holds this many.
const SWEEP_FROM: usize = 64;

/// The pace of our requests per destination address.
#[derive(Debug)]
pub(super) struct Pacer {
    /// Per address, when its next request would be due at the pace rate.
    tat: HashMap<SocketAddr, Instant>,
    /// One request's share of time (1 / rate).
    interval: Duration,
    /// How far ahead of now `tat` may be for a request to go at once: the burst.
    tolerance: Duration,
    /// The table's size after the last sweep: the next sweep waits until it doubled.
    swept_len: usize,
}

impl Pacer {
    /// `rate` requests a second to one address, `burst` at once (both at least 1).
    pub(super) fn new(rate: f64, burst: f64) -> Self {
        let rate = rate.max(1.0);
        let interval = Duration::from_secs_f64(1.0 / rate);
        Pacer {
            tat: HashMap::new(),
            interval,
            tolerance: interval.mul_f64((burst.max(1.0) - 1.0).max(0.0)),
            swept_len: 0,
        }
    }

    /// Takes the next slot of `to`: `None` if the request may go now, else the time it
    /// must wait for (its slot is taken either way).
    pub(super) fn slot(&mut self, to: SocketAddr, now: Instant) -> Option<Instant> {
        // A known address is looked up once (hashing an address is most of this).
        let tat = if let Some(t) = self.tat.get_mut(&to) {
            let tat = (*t).max(now);
            *t = tat + self.interval;
            tat
        } else {
            if self.tat.len() >= SWEEP_FROM.max(2 * self.swept_len).min(MAX_PACED) {
                self.sweep(now);
            }
            if self.tat.len() >= MAX_PACED {
                return None;
            }
            self.tat.insert(to, now + self.interval);
            now
        };
        if tat <= now + self.tolerance {
            None
        } else {
            Some(tat - self.tolerance)
        }
    }

    /// Forgets the addresses whose requests are all past (their next one goes at once).
    pub(super) fn sweep(&mut self, now: Instant) {
        self.tat.retain(|_, t| *t > now);
        super::shrink_sparse_map(&mut self.tat);
        self.swept_len = self.tat.len();
    }

    /// Addresses paced now.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.tat.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_goes_at_once_then_one_request_per_interval() {
        let t = super::super::tests::start();
        let a: SocketAddr = "192.0.2.1:1".parse().unwrap();
        let b: SocketAddr = "192.0.2.2:1".parse().unwrap();
        let mut p = Pacer::new(100.0, 5.0);
        for _ in 0..5 {
            assert_eq!(p.slot(a, t), None);
        }
        // The sixth waits one interval, the seventh two: each has its own slot.
        let i = Duration::from_millis(10);
        assert_eq!(p.slot(a, t), Some(t + i));
        assert_eq!(p.slot(a, t), Some(t + 2 * i));
        // Another address has its own burst.
        assert_eq!(p.slot(b, t), None);
        // Once the slots are past and the bucket refilled, a burst again.
        let later = t + Duration::from_secs(1);
        for _ in 0..5 {
            assert_eq!(p.slot(a, later), None);
        }
        assert!(p.slot(a, later).is_some());
    }

    #[test]
    fn a_steady_rate_below_the_pace_never_waits() {
        let t = super::super::tests::start();
        let a: SocketAddr = "192.0.2.1:1".parse().unwrap();
        let mut p = Pacer::new(100.0, 2.0);
        for k in 0..1000u32 {
            assert_eq!(p.slot(a, t + Duration::from_millis(11) * k), None, "{k}");
        }
    }

    #[test]
    fn the_table_is_bounded_and_swept() {
        let t = super::super::tests::start();
        let mut p = Pacer::new(100.0, 2.0);
        for k in 0..MAX_PACED as u16 {
            p.slot(SocketAddr::from(([192, 0, 2, 1], k)), t);
        }
        assert_eq!(p.len(), MAX_PACED);
        // Full of busy addresses: a new one is not paced (nor remembered).
        let x: SocketAddr = "192.0.2.9:9".parse().unwrap();
        assert_eq!(p.slot(x, t), None);
        assert_eq!(p.len(), MAX_PACED);
        // A second later all are idle: the next new address sweeps them away.
        p.slot(x, t + Duration::from_secs(1));
        assert_eq!(p.len(), 1);
    }
}
