//! Per-source request rate limiting: a token bucket per source address, in a bounded table.
//!
//! A node answers requests, and answers can be larger than requests, so without a limit a
//! flood from one source (or a spoofed one) would make the node an amplifier. When the table
//! is full, idle entries are swept; if it is still full, requests from new sources are
//! refused until it drains, so memory stays bounded under any traffic.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

/// Token buckets keyed by source address.
#[derive(Debug)]
pub struct SourceLimiter {
    buckets: HashMap<SocketAddr, (f64, Instant)>,
    rate: f64,
    burst: f64,
    max_sources: usize,
}

impl SourceLimiter {
    /// `rate` requests per second sustained, `burst` at once, at most `max_sources` tracked.
    pub fn new(rate: f64, burst: f64, max_sources: usize) -> Self {
        SourceLimiter {
            buckets: HashMap::new(),
            rate,
            burst,
            max_sources,
        }
    }

    /// True if a request from `src` may be served now (and takes one token).
    pub fn allow(&mut self, src: SocketAddr, now: Instant) -> bool {
        if !self.buckets.contains_key(&src) && self.buckets.len() >= self.max_sources {
            self.sweep(now);
            if self.buckets.len() >= self.max_sources {
                return false;
            }
        }
        let (rate, burst) = (self.rate, self.burst);
        let (tokens, last) = self.buckets.entry(src).or_insert((burst, now));
        let dt = now.saturating_duration_since(*last).as_secs_f64();
        *tokens = (*tokens + dt * rate).min(burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Forgets sources whose bucket has refilled completely (they are idle).
    pub fn sweep(&mut self, now: Instant) {
        let (rate, burst) = (self.rate, self.burst);
        self.buckets.retain(|_, (tokens, last)| {
            let dt = now.saturating_duration_since(*last).as_secs_f64();
            *tokens + dt * rate < burst
        });
        // A burst of requesters leaves a large table behind: give it back (100,000
        // simulated nodes would otherwise hold thousands of empty slots each).
        super::shrink_sparse_map(&mut self.buckets);
    }

    /// Sources tracked.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// True when no source is tracked.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_rate() {
        let now = Instant::now();
        let mut l = SourceLimiter::new(10.0, 5.0, 100);
        let a: SocketAddr = "192.0.2.1:1".parse().unwrap();
        for _ in 0..5 {
            assert!(l.allow(a, now));
        }
        assert!(!l.allow(a, now));
        assert!(l.allow(a, now + Duration::from_millis(100)));
        assert!(!l.allow(a, now + Duration::from_millis(100)));
    }

    #[test]
    fn table_is_bounded() {
        let now = Instant::now();
        let mut l = SourceLimiter::new(1.0, 2.0, 3);
        for p in 0..3 {
            assert!(l.allow(SocketAddr::from(([192, 0, 2, 1], p)), now));
        }
        assert!(
            !l.allow("192.0.2.9:9".parse().unwrap(), now),
            "full of busy sources"
        );
        // After they go idle they are swept and a new source fits.
        assert!(l.allow("192.0.2.9:9".parse().unwrap(), now + Duration::from_secs(5)));
        assert!(l.len() <= 3);
    }
}
