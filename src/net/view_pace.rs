//! How often the reactor rebuilds the node's status view when it changes. The view costs
//! time in the library's size (a node sharing 100,000 files lists them all, and an add
//! changes it), so it is rebuilt at most once per ten times its last build took: at most a
//! tenth of the reactor's thread whatever the size, and at once for a small library (a
//! build of a few µs). A change that must wait is published when the poll wakes for it.

use std::time::{Duration, Instant};

/// The pace (module docs).
#[derive(Debug)]
pub struct ViewPace {
    last_build: Instant,
    build_time: Duration,
}

impl ViewPace {
    /// No build yet.
    pub fn new(now: Instant) -> ViewPace {
        ViewPace {
            last_build: now,
            build_time: Duration::ZERO,
        }
    }

    /// The soonest a build may start (`now` or later).
    pub fn soonest(&self) -> Instant {
        self.last_build + self.build_time * 10
    }

    /// A build started at `started` just ended.
    pub fn built(&mut self, started: Instant) {
        self.last_build = started;
        self.build_time = started.elapsed();
    }
}
