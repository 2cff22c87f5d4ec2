//! How often the reactor rebuilds the node's status view when it changes. The view costs
//! time in the library's size (a node sharing 100,000 files lists them all, and an add
//! changes it), so it is rebuilt at most once per ten times its last build took: at most a
//! tenth of the reactor's thread whatever the size, and at once for a small library (a
//! build of a few µs). A change that must wait is published when the poll wakes for it, or
//! sooner when a reader asks for it (`Shared::is_stale`: `status` after `add` always lists
//! the share).

use std::time::{Duration, Instant};

/// Builds quicker than this are not paced (a small library, even in a debug build).
pub const PACE_FROM: Duration = Duration::from_millis(2);

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

    /// The soonest a build may start (`now` or later). A build under [`PACE_FROM`] is
    /// repeated at once, so the dashboard's live events follow every change of a small
    /// node.
    pub fn soonest(&self) -> Instant {
        if self.build_time < PACE_FROM {
            return self.last_build;
        }
        self.last_build + self.build_time * 10
    }

    /// A build started at `started` just ended.
    pub fn built(&mut self, started: Instant) {
        self.last_build = started;
        self.build_time = started.elapsed();
    }
}
