//! How long this node's DHT requests take to be answered, smoothed (as TCP does, RFC 6298's
//! SRTT), and the soft timeout derived from it: a lookup stops waiting for a request after a
//! few round trips rather than after a fixed 600 ms, so one lost datagram in a lookup costs a
//! few round trips, not most of a second, while a slow network still gets the configured
//! bound.

use std::time::Duration;

/// The soft timeout never goes below this (scheduling noise on a busy host, loopback).
pub const MIN_SOFT_TIMEOUT: Duration = Duration::from_millis(100);

/// Round trips the soft timeout allows.
const SOFT_RTTS: u32 = 3;

/// The smoothed round-trip time of answered requests.
#[derive(Clone, Copy, Debug, Default)]
pub struct RttEstimate {
    srtt: Option<Duration>,
}

impl RttEstimate {
    /// One measured round trip (of a request sent once).
    pub fn sample(&mut self, rtt: Duration) {
        self.srtt = Some(match self.srtt {
            None => rtt,
            // srtt = 7/8 srtt + 1/8 rtt
            Some(s) => (s * 7 + rtt) / 8,
        });
    }

    /// The smoothed round trip, once something has been measured.
    #[cfg(test)]
    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// The soft timeout: `SOFT_RTTS` smoothed round trips, within
    /// [`MIN_SOFT_TIMEOUT`] ..= `max` (the configured soft timeout, also used before any
    /// measurement).
    pub fn soft_timeout(&self, max: Duration) -> Duration {
        match self.srtt {
            None => max,
            Some(s) => (s * SOFT_RTTS).clamp(MIN_SOFT_TIMEOUT.min(max), max),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_timeout_follows_the_round_trip_within_bounds() {
        let max = Duration::from_millis(600);
        let mut r = RttEstimate::default();
        assert_eq!(r.soft_timeout(max), max, "nothing measured yet");
        r.sample(Duration::from_millis(50));
        assert_eq!(r.soft_timeout(max), Duration::from_millis(150));
        // One slow answer moves it an eighth of the way.
        r.sample(Duration::from_millis(450));
        assert_eq!(r.srtt(), Some(Duration::from_millis(100)));
        assert_eq!(r.soft_timeout(max), Duration::from_millis(300));
        for _ in 0..50 {
            r.sample(Duration::from_secs(2));
        }
        assert_eq!(r.soft_timeout(max), max, "never above the configured bound");
        for _ in 0..100 {
            r.sample(Duration::from_micros(30));
        }
        assert_eq!(r.soft_timeout(max), MIN_SOFT_TIMEOUT, "loopback");
    }
}
