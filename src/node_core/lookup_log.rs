//! The DHT lookups this node ran, for `/metrics` (a latency histogram, counts by kind) and
//! the learners' page (the last ones, with their requests hop by hop): http.md sections 5
//! and 7. Fed with each lookup's statistics as it ends. Bounded: [`RECENT`] lookups of at
//! most [`crate::dht::trace::MAX_TRACED`] requests each.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use crate::dht::trace::LookupTrace;
use crate::dht::QueryStats;

/// Upper bounds (seconds) of the latency histogram's buckets (the last is `+Inf`).
pub const BUCKETS: [f64; 9] = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// How many recent lookups are kept.
pub const RECENT: usize = 20;

/// One lookup that ended.
#[derive(Clone, Debug, PartialEq)]
pub struct LookupRecord {
    /// What it was for: `api` (a client's), `providers` (a download's), `announce`,
    /// `republish`.
    pub kind: &'static str,
    /// How long it took, in seconds.
    pub secs: f64,
    /// Sequential hops to the answer, if there was one.
    pub hops: Option<u32>,
    /// Requests answered.
    pub answers: u32,
    /// Requests that failed or timed out.
    pub failures: u32,
    /// Its number among the lookups recorded (1 for the first): names it while it is shown.
    pub seq: u64,
    /// When it ended.
    pub ended: Instant,
    /// Its requests one by one.
    pub trace: LookupTrace,
}

/// Lookups so far.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LookupLog {
    /// Lookups per bucket of [`BUCKETS`] (not cumulative), the last for longer ones.
    pub buckets: [u64; BUCKETS.len() + 1],
    /// Their total duration, in seconds.
    pub sum_secs: f64,
    /// Lookups by kind: `[api, providers, announce, republish]`.
    pub by_kind: [u64; 4],
    /// The last ones, newest last (shared: the status view is a copy made each second).
    pub recent: VecDeque<Arc<LookupRecord>>,
}

/// The kinds, in [`LookupLog::by_kind`]'s order.
pub const KINDS: [&str; 4] = ["api", "providers", "announce", "republish"];

impl LookupLog {
    /// A lookup of kind `kind` (one of [`KINDS`]) ended at `now` with `stats`.
    pub fn record(&mut self, kind: usize, stats: &QueryStats, now: Instant) {
        let secs = stats.duration.as_secs_f64();
        let b = BUCKETS
            .iter()
            .position(|le| secs <= *le)
            .unwrap_or(BUCKETS.len());
        if let Some(n) = self.buckets.get_mut(b) {
            *n += 1;
        }
        self.sum_secs += secs;
        if let Some(n) = self.by_kind.get_mut(kind) {
            *n += 1;
        }
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(Arc::new(LookupRecord {
            kind: KINDS.get(kind).copied().unwrap_or("other"),
            secs,
            hops: stats.hops,
            answers: stats.answers,
            failures: stats.failures,
            seq: self.buckets.iter().sum(),
            ended: now,
            trace: stats.trace.clone(),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn lookups_fall_in_their_bucket_and_the_last_are_kept() {
        let mut log = LookupLog::default();
        for ms in [5u64, 60, 60, 20_000] {
            let stats = QueryStats {
                duration: Duration::from_millis(ms),
                answers: 3,
                failures: 1,
                hops: Some(2),
                first_provider: None,
                ..QueryStats::default()
            };
            log.record(1, &stats, Instant::now());
        }
        assert_eq!(log.buckets[0], 1);
        assert_eq!(log.buckets[2], 2);
        assert_eq!(log.buckets[BUCKETS.len()], 1);
        assert_eq!(log.by_kind, [0, 4, 0, 0]);
        assert_eq!(log.recent.len(), 4);
        for _ in 0..30 {
            log.record(0, &QueryStats::default(), Instant::now());
        }
        assert_eq!(log.recent.len(), RECENT);
        assert_eq!(log.recent.back().unwrap().kind, "api");
    }
}
