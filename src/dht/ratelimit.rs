//! Per-source request rate limiting: a token bucket per source address, in a bounded table.
//!
//! A node answers requests, and answers can be larger than requests, so without a limit a
//! flood from one source (or a spoofed one) would make the node an amplifier. When the table
//! is full, idle entries are swept; if it is still full, requests from new sources are
//! refused until it drains, so memory stays bounded under any traffic. A refused source may
//! be told so ([`SourceLimiter::notify`]) at most once per interval: a flooder gets one
//! small answer a second, a busy honest peer learns to back off (dht.md section 13.1).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A source's bucket: its tokens, when they were counted, and when it was last told that it
/// is limited.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    last: Instant,
    told: Option<Instant>,
}

impl Bucket {
    /// Refills the bucket up to `now` and takes a token if there is one.
    fn take(&mut self, now: Instant, rate: f64, burst: f64) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * rate).min(burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Token buckets keyed by source address.
#[derive(Debug)]
pub struct SourceLimiter {
    buckets: HashMap<SocketAddr, Bucket>,
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
        let (rate, burst) = (self.rate, self.burst);
        // One lookup of the source for a known one (this runs for every request); a new
        // one may need a sweep first.
        if let Some(b) = self.buckets.get_mut(&src) {
            return b.take(now, rate, burst);
        }
        if self.buckets.len() >= self.max_sources {
            self.sweep(now);
            if self.buckets.len() >= self.max_sources {
                return false;
            }
        }
        let b = self.buckets.entry(src).or_insert(Bucket {
            tokens: burst,
            last: now,
            told: None,
        });
        b.take(now, rate, burst)
    }

    /// After [`SourceLimiter::allow`] refused `src`: true if it may be told so now, that is
    /// if it was not told within the last `every` (and is tracked). Then it counts as told.
    pub fn notify(&mut self, src: SocketAddr, now: Instant, every: Duration) -> bool {
        let Some(b) = self.buckets.get_mut(&src) else {
            return false;
        };
        if b.told
            .is_some_and(|t| now.saturating_duration_since(t) < every)
        {
            return false;
        }
        b.told = Some(now);
        true
    }

    /// Forgets sources whose bucket has refilled completely (they are idle).
    pub fn sweep(&mut self, now: Instant) {
        let (rate, burst) = (self.rate, self.burst);
        self.buckets.retain(|_, b| {
            let dt = now.saturating_duration_since(b.last).as_secs_f64();
            b.tokens + dt * rate < burst
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
    fn a_limited_source_is_told_once_per_interval() {
        let now = Instant::now();
        let mut l = SourceLimiter::new(10.0, 1.0, 100);
        let a: SocketAddr = "192.0.2.1:1".parse().unwrap();
        let every = Duration::from_secs(1);
        assert!(l.allow(a, now));
        assert!(!l.allow(a, now));
        assert!(l.notify(a, now, every));
        for ms in [0, 10, 500, 999] {
            assert!(!l.notify(a, now + Duration::from_millis(ms), every));
        }
        assert!(l.notify(a, now + every, every));
        // An untracked source (the table was full) is not told.
        assert!(!l.notify("192.0.2.2:2".parse().unwrap(), now, every));
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
