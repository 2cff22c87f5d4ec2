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

    /// When the poll must wake for a build that has to wait for the pace, given the wake-up
    /// planned so far (`planned`: the periodic refresh). A planned time already past must not
    /// stay: the poll would not sleep at all until the pace allows the build (the reactor
    /// span in a busy loop of zero-timeout polls, a core's worth of CPU).
    pub fn wake_at(&self, planned: Instant, now: Instant) -> Instant {
        let soonest = self.soonest();
        if planned > now {
            planned.min(soonest)
        } else {
            soonest
        }
    }

    /// A build started at `started` just ended.
    pub fn built(&mut self, started: Instant) {
        self.last_build = started;
        self.build_time = started.elapsed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paced(now: Instant) -> ViewPace {
        // A 5 ms build that ended just now: the next may start 50 ms after it started.
        ViewPace {
            last_build: now,
            build_time: Duration::from_millis(5),
        }
    }

    #[test]
    fn a_quick_build_is_never_paced() {
        let now = Instant::now();
        let p = ViewPace {
            last_build: now,
            build_time: Duration::from_micros(300),
        };
        assert_eq!(p.soonest(), now);
    }

    #[test]
    fn a_past_wake_up_gives_way_to_the_pace() {
        let now = Instant::now();
        let p = paced(now);
        let past = now - Duration::from_millis(1);
        // The regression: the past instant was kept and the poll never slept.
        assert_eq!(p.wake_at(past, now), now + Duration::from_millis(50));
        assert_eq!(p.wake_at(now, now), now + Duration::from_millis(50));
    }

    #[test]
    fn a_planned_wake_up_sooner_than_the_pace_stays() {
        let now = Instant::now();
        let p = paced(now);
        let soon = now + Duration::from_millis(10);
        assert_eq!(p.wake_at(soon, now), soon);
        let late = now + Duration::from_millis(500);
        assert_eq!(p.wake_at(late, now), now + Duration::from_millis(50));
    }
}
