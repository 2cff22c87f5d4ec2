//! Rate meters: bytes per second over a recent window, for the whole node (`status`), each
//! transfer and each connection (`transfer_status`, `transfer_peers`). Counted where the
//! bytes cross the wire sockets (the reactor reports every read and write to
//! [`Bandwidth`](super::bandwidth::Bandwidth), which owns these meters), so a rate is what
//! moved, not a difference of two progress figures. Pure state: time comes in as `now`.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::conn::ConnId;
use crate::id::Id;
use crate::limits::Dir;
use crate::node_core::view::{Flow, Rates};

/// The window of the node's meters (`status`): about the last second.
pub const NODE_WINDOW: Duration = Duration::from_secs(1);

/// The window of each transfer's and connection's meter: long enough to span several
/// 256 KiB chunks at modest rates and to call a transfer stalled only when nothing moved
/// for that long (the rule of `get`'s bar, `cli/progress.rs`), short enough to follow a
/// limit changed live.
pub const FLOW_WINDOW: Duration = Duration::from_secs(5);

/// Byte counter and rate meter for one direction.
#[derive(Clone, Debug)]
pub struct Meter {
    total: u64,
    window: Duration,
    /// (instant, bytes counted by then), oldest first, one every quarter window.
    samples: VecDeque<(Instant, u64)>,
    /// When bytes were last counted.
    last_add: Option<Instant>,
}

impl Meter {
    /// A meter measuring over `window`, starting at `now`.
    pub fn new(window: Duration, now: Instant) -> Self {
        Meter {
            total: 0,
            window,
            samples: VecDeque::from([(now, 0)]),
            last_add: None,
        }
    }

    /// Counts `n` bytes at `now`.
    pub fn add(&mut self, n: u64, now: Instant) {
        self.total += n;
        if n > 0 {
            self.last_add = Some(now);
        }
        self.tick(now);
    }

    fn tick(&mut self, now: Instant) {
        if self
            .samples
            .back()
            .is_none_or(|(t, _)| now.saturating_duration_since(*t) >= self.window / 4)
        {
            self.samples.push_back((now, self.total));
        }
        while self.samples.len() > 2
            && self
                .samples
                .get(1)
                .is_some_and(|(t, _)| now.saturating_duration_since(*t) >= self.window)
        {
            self.samples.pop_front();
        }
    }

    /// Bytes per second over about the window; 0 when nothing was counted over a whole
    /// window (samples are taken only when bytes move or the rate is read, so the oldest
    /// one may be older than the window).
    pub fn rate(&mut self, now: Instant) -> u64 {
        self.tick(now);
        if self.quiet(now) {
            return 0;
        }
        match self.samples.front() {
            Some((t, b)) => {
                let dt = now.saturating_duration_since(*t).as_secs_f64();
                if dt < 0.05 {
                    0
                } else {
                    ((self.total - b) as f64 / dt) as u64
                }
            }
            None => 0,
        }
    }

    /// True if nothing was counted over the whole window before `now`.
    fn quiet(&self, now: Instant) -> bool {
        self.last_add
            .is_none_or(|t| now.saturating_duration_since(t) >= self.window)
    }
}

/// One connection's meters and the transfer it belongs to.
#[derive(Debug)]
struct ConnMeters {
    content: Option<Id>,
    dirs: [Meter; 2],
}

/// Each transfer's and each open connection's meters.
#[derive(Debug, Default)]
pub struct FlowMeters {
    conns: HashMap<u64, ConnMeters>,
    transfers: HashMap<Id, [Meter; 2]>,
}

fn pair(now: Instant) -> [Meter; 2] {
    [Meter::new(FLOW_WINDOW, now), Meter::new(FLOW_WINDOW, now)]
}

impl FlowMeters {
    /// Counts `n` bytes moved by connection `conn` (of `content`, once its handshake named
    /// it) in direction `d`.
    pub fn add(&mut self, d: Dir, conn: u64, content: Option<Id>, n: u64, now: Instant) {
        let c = self.conns.entry(conn).or_insert_with(|| ConnMeters {
            content,
            dirs: pair(now),
        });
        c.content = content.or(c.content);
        c.dirs[d as usize].add(n, now);
        if let Some(id) = c.content {
            self.transfers.entry(id).or_insert_with(|| pair(now))[d as usize].add(n, now);
        }
    }

    /// A connection closed: its meters go. A transfer's meters go once no connection of it
    /// is open and nothing moved over a whole window (so its rate falls to 0 first).
    pub fn forget(&mut self, conn: u64, now: Instant) {
        self.conns.remove(&conn);
        let conns = &self.conns;
        self.transfers.retain(|id, m| {
            conns.values().any(|c| c.content == Some(*id)) || !m.iter().all(|m| m.quiet(now))
        });
    }

    /// The rates now, for the core's replies.
    pub fn rates(&mut self, now: Instant) -> Rates {
        let flow = |m: &mut [Meter; 2]| Flow {
            up: m[Dir::Up as usize].rate(now),
            down: m[Dir::Down as usize].rate(now),
        };
        Rates {
            conns: self
                .conns
                .iter_mut()
                .map(|(k, c)| (ConnId::new(*k), flow(&mut c.dirs)))
                .collect(),
            transfers: self
                .transfers
                .iter_mut()
                .map(|(id, m)| (*id, flow(m)))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 1 MB/s for 3 s, then nothing: the rate is 1 MB/s, then 0 once a whole window passed.
    #[test]
    fn a_flow_rate_follows_what_moved_and_falls_to_zero() {
        let t0 = Instant::now();
        let mut f = FlowMeters::default();
        let id = Id([7; 32]);
        for i in 1..=30u64 {
            f.add(
                Dir::Down,
                5,
                Some(id),
                100_000,
                t0 + Duration::from_millis(100 * i),
            );
        }
        let r = f.rates(t0 + Duration::from_secs(3));
        let down = r.transfers[&id].down;
        assert!((900_000..=1_100_000).contains(&down), "{down}");
        assert_eq!(r.conns[&ConnId::new(5)].down, down);
        assert_eq!(r.transfers[&id].up, 0);
        let later = t0 + Duration::from_secs(3) + FLOW_WINDOW + Duration::from_secs(2);
        assert_eq!(f.rates(later).transfers[&id].down, 0);
        // The connection closes: its meter goes, the transfer's once quiet.
        f.forget(5, later);
        assert!(f.rates(later).conns.is_empty());
        assert!(f.rates(later).transfers.is_empty());
    }

    /// Bytes before the handshake named the content count for the connection only; a
    /// transfer counts every connection of it.
    #[test]
    fn a_transfer_sums_its_connections() {
        let t0 = Instant::now();
        let mut f = FlowMeters::default();
        let id = Id([1; 32]);
        f.add(Dir::Up, 1, None, 500, t0);
        for i in 1..=20u64 {
            let t = t0 + Duration::from_millis(100 * i);
            f.add(Dir::Up, 1, Some(id), 50_000, t);
            f.add(Dir::Up, 2, Some(id), 150_000, t);
        }
        let r = f.rates(t0 + Duration::from_secs(2));
        let (a, b, all) = (
            r.conns[&ConnId::new(1)].up,
            r.conns[&ConnId::new(2)].up,
            r.transfers[&id].up,
        );
        assert!(a > 0 && b > 2 * a, "{a} {b}");
        assert!(all.abs_diff(a + b) <= all / 50, "{all} vs {a} + {b}");
    }
}
