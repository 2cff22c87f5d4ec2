//! Bandwidth limits for the wire protocol: token buckets and a fair scheduler of socket
//! reads and writes. Pure state (time comes in as `now`); the reactor asks it how many bytes
//! a connection may read or write, does the I/O, and reports what it did.
//!
//! # Model
//! - Limits are on wire-protocol bytes (frames as sent and received; TCP/IP headers are not
//!   counted). DHT datagrams are never limited: lookups keep working when transfers saturate
//!   a limit. A limit of 0 means unlimited.
//! - Three levels, each a token bucket per direction: the whole node, each transfer (content
//!   ID), each connection. A read or write may use `min` of the three.
//! - Buckets hold at most 50 ms of their rate (at least 16 KiB), so over any window of `w`
//!   seconds at most `rate * w + burst` bytes pass: over 2 s, at most 2.5% above the limit.
//! - Fair: a limited connection does not read or write on its own readiness; it queues, and
//!   [`Bandwidth::next`] hands out grants in round-robin order, first over transfers, then
//!   over the connections of each transfer, each grant at most a small quantum. So two
//!   transfers share a limit evenly however many connections each has. Reads that stop
//!   because of a limit leave data in the kernel buffer: TCP flow control then slows the
//!   sender, no thread ever sleeps.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::meters::{FlowMeters, Meter, NODE_WINDOW};
use crate::id::Id;
use crate::node_core::view::Rates;

pub use crate::limits::{format_rate, parse_rate, Dir, Limits};

/// The limit `l` sets at `level` in direction `d`.
fn limit_at(l: &Limits, level: Level, d: Dir) -> u64 {
    match (level, d) {
        (Level::Node, Dir::Up) => l.up,
        (Level::Node, Dir::Down) => l.down,
        (Level::Transfer, Dir::Up) => l.transfer_up,
        (Level::Transfer, Dir::Down) => l.transfer_down,
        (Level::Peer, Dir::Up) => l.peer_up,
        (Level::Peer, Dir::Down) => l.peer_down,
    }
}

#[derive(Clone, Copy)]
enum Level {
    Node,
    Transfer,
    Peer,
}

/// The largest burst as a time at the bucket's rate.
const BURST_TIME: Duration = Duration::from_millis(50);
/// The smallest burst, so that tiny limits still move whole small frames.
const MIN_BURST: u64 = 16 * 1024;
/// The smallest grant worth a system call.
const MIN_GRANT: u64 = 1024;

/// A token bucket: `rate` bytes per second, holding at most `burst`.
#[derive(Clone, Debug)]
pub struct Bucket {
    rate: u64,
    burst: u64,
    tokens: u64,
    /// Time up to which tokens have been added (advanced only by whole tokens, so no
    /// fraction is lost between refills).
    filled_to: Instant,
}

impl Bucket {
    /// A full bucket for `rate` (0: unlimited).
    pub fn new(rate: u64, now: Instant) -> Self {
        let burst = burst_for(rate);
        Bucket {
            rate,
            burst,
            tokens: burst,
            filled_to: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        if self.rate == 0 {
            return;
        }
        let dt = now.saturating_duration_since(self.filled_to);
        let add = (dt.as_nanos() * u128::from(self.rate) / 1_000_000_000) as u64;
        if self.tokens.saturating_add(add) >= self.burst {
            self.tokens = self.burst;
            self.filled_to = now;
        } else if add > 0 {
            self.tokens += add;
            let used = Duration::from_nanos(
                (u128::from(add) * 1_000_000_000 / u128::from(self.rate)) as u64,
            );
            self.filled_to += used;
        }
    }

    /// Tokens available at `now` (`u64::MAX` when unlimited).
    pub fn available(&mut self, now: Instant) -> u64 {
        if self.rate == 0 {
            return u64::MAX;
        }
        self.refill(now);
        self.tokens
    }

    /// True if the bucket holds its whole burst at `now`: it then limits exactly as a new
    /// one would, so it can be dropped and made again when needed.
    pub fn is_full(&mut self, now: Instant) -> bool {
        self.available(now) >= self.burst
    }

    /// Uses `n` tokens (never below zero).
    pub fn take(&mut self, n: u64) {
        self.tokens = self.tokens.saturating_sub(n);
    }

    /// Changes the rate from `now` on, keeping no more than the new burst.
    pub fn set_rate(&mut self, rate: u64, now: Instant) {
        self.refill(now);
        self.rate = rate;
        self.burst = burst_for(rate);
        self.tokens = self.tokens.min(self.burst);
        self.filled_to = now;
    }

    /// How long until `want` tokens are there (zero if they are, or if unlimited).
    pub fn time_until(&mut self, want: u64, now: Instant) -> Duration {
        let have = self.available(now);
        if have >= want || self.rate == 0 {
            return Duration::ZERO;
        }
        let missing = want.min(self.burst) - have.min(want.min(self.burst));
        Duration::from_nanos((u128::from(missing) * 1_000_000_000 / u128::from(self.rate)) as u64)
            + Duration::from_micros(100)
    }
}

fn burst_for(rate: u64) -> u64 {
    let by_time = (u128::from(rate) * BURST_TIME.as_millis() / 1000) as u64;
    by_time.max(MIN_BURST)
}

/// A connection, as the reactor names it (its poll token).
pub type ConnKey = usize;

/// Who waits for bandwidth in one direction, in round-robin order.
#[derive(Default, Debug)]
struct Queue {
    /// Transfers with waiting connections (None: connections not yet in a transfer).
    transfers: VecDeque<Option<Id>>,
    conns: HashMap<Option<Id>, VecDeque<ConnKey>>,
    queued: HashMap<ConnKey, Option<Id>>,
}

/// What the reactor reports about a connection when asking for bandwidth.
#[derive(Clone, Copy, Debug)]
pub struct Grant {
    /// The connection.
    pub conn: ConnKey,
    /// Most bytes it may move now.
    pub bytes: u64,
}

/// Limits, buckets, meters and the fair queues.
#[derive(Debug)]
pub struct Bandwidth {
    limits: Limits,
    node: [Bucket; 2],
    transfers: HashMap<Id, [Bucket; 2]>,
    peers: HashMap<ConnKey, [Bucket; 2]>,
    queues: [Queue; 2],
    meters: [Meter; 2],
    /// Each transfer's and connection's rates.
    flows: FlowMeters,
}

impl Bandwidth {
    /// Starts with `limits`.
    pub fn new(limits: Limits, now: Instant) -> Self {
        Bandwidth {
            limits,
            node: [Bucket::new(limits.up, now), Bucket::new(limits.down, now)],
            transfers: HashMap::new(),
            peers: HashMap::new(),
            queues: [Queue::default(), Queue::default()],
            meters: [Meter::new(NODE_WINDOW, now), Meter::new(NODE_WINDOW, now)],
            flows: FlowMeters::default(),
        }
    }

    /// The limits in force.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// True if bytes in direction `d` go through [`Bandwidth::next`].
    pub fn limited(&self, d: Dir) -> bool {
        self.limits.any(d)
    }

    /// Changes the limits; obeyed from `now` on.
    pub fn set_limits(&mut self, limits: Limits, now: Instant) {
        self.limits = limits;
        self.node[0].set_rate(limits.up, now);
        self.node[1].set_rate(limits.down, now);
        for b in self.transfers.values_mut() {
            b[0].set_rate(limits.transfer_up, now);
            b[1].set_rate(limits.transfer_down, now);
        }
        for b in self.peers.values_mut() {
            b[0].set_rate(limits.peer_up, now);
            b[1].set_rate(limits.peer_down, now);
        }
    }

    /// Queues `conn` (of transfer `content`) for bytes in direction `d` (no-op if queued).
    pub fn wait(&mut self, d: Dir, conn: ConnKey, content: Option<Id>) {
        let q = &mut self.queues[d as usize];
        if q.queued.contains_key(&conn) {
            return;
        }
        q.queued.insert(conn, content);
        let list = q.conns.entry(content).or_default();
        if list.is_empty() {
            q.transfers.push_back(content);
        }
        list.push_back(conn);
    }

    /// True if someone waits in direction `d`.
    pub fn has_waiting(&self, d: Dir) -> bool {
        !self.queues[d as usize].queued.is_empty()
    }

    /// The next connection to serve in direction `d` and how much it may move, in
    /// round-robin order over transfers and then connections; it leaves the queue (put it
    /// back with [`Bandwidth::wait`] if it used its whole grant). `None` when nobody waits or
    /// nobody can move a worthwhile amount now.
    pub fn next(&mut self, d: Dir, now: Instant) -> Option<Grant> {
        let node_avail = self.node[d as usize].available(now);
        // Small grants keep the round-robin fine-grained: a quarter of the node's burst.
        let quantum = if limit_at(&self.limits, Level::Node, d) > 0 {
            (self.node[d as usize].burst / 4).max(MIN_GRANT)
        } else {
            256 * 1024
        };
        // Serve only once a whole quantum is there: handing the front connection whatever
        // crumbs are left would send it to the back of the queue for a fraction of its
        // share, and the same connection would then always meet the refilled bucket first
        // (measured: 0.3 vs 1.7 MB per half second for two equally backlogged transfers).
        if node_avail < quantum && limit_at(&self.limits, Level::Node, d) > 0 {
            return None;
        }
        let rounds = self.queues[d as usize].queued.len();
        for _ in 0..rounds {
            let q = &mut self.queues[d as usize];
            let content = q.transfers.pop_front()?;
            let Some(list) = q.conns.get_mut(&content) else {
                continue;
            };
            let Some(conn) = list.pop_front() else {
                q.conns.remove(&content);
                continue;
            };
            if list.is_empty() {
                q.conns.remove(&content);
            } else {
                q.transfers.push_back(content);
            }
            q.queued.remove(&conn);
            let limits = self.limits;
            let t_avail = match content {
                Some(id) if limit_at(&limits, Level::Transfer, d) > 0 => {
                    self.transfers.entry(id).or_insert_with(|| {
                        [
                            Bucket::new(limits.transfer_up, now),
                            Bucket::new(limits.transfer_down, now),
                        ]
                    })[d as usize]
                        .available(now)
                }
                _ => u64::MAX,
            };
            let p_avail = if limit_at(&limits, Level::Peer, d) > 0 {
                self.peers.entry(conn).or_insert_with(|| {
                    [
                        Bucket::new(limits.peer_up, now),
                        Bucket::new(limits.peer_down, now),
                    ]
                })[d as usize]
                    .available(now)
            } else {
                u64::MAX
            };
            let bytes = node_avail.min(t_avail).min(p_avail).min(quantum);
            if bytes < MIN_GRANT.min(quantum) {
                // Held back by its own transfer's or connection's cap: try the others.
                self.wait(d, conn, content);
                continue;
            }
            return Some(Grant { conn, bytes });
        }
        None
    }

    /// Records that `conn` (of `content`) moved `n` bytes in direction `d`.
    pub fn used(&mut self, d: Dir, conn: ConnKey, content: Option<Id>, n: u64, now: Instant) {
        if n == 0 {
            return;
        }
        self.meters[d as usize].add(n, now);
        self.flows.add(d, conn as u64, content, n, now);
        self.node[d as usize].take(n);
        if let Some(b) = content.and_then(|id| self.transfers.get_mut(&id)) {
            b[d as usize].take(n);
        }
        if let Some(b) = self.peers.get_mut(&conn) {
            b[d as usize].take(n);
        }
    }

    /// When the queue in direction `d` can next be served (None if nobody waits).
    pub fn next_deadline(&mut self, now: Instant) -> Option<Instant> {
        let mut best: Option<Instant> = None;
        for d in [Dir::Up, Dir::Down] {
            if !self.has_waiting(d) {
                continue;
            }
            let want = (self.node[d as usize].burst / 4).max(MIN_GRANT);
            // Also wake regularly: a connection may be held back by its own cap only.
            let wait = self.node[d as usize]
                .time_until(want, now)
                .clamp(Duration::from_millis(1), Duration::from_millis(20));
            let t = now + wait;
            best = Some(best.map_or(t, |b| b.min(t)));
        }
        best
    }

    /// Forgets a closed connection, and the buckets of transfers that no connection waits
    /// on and that are full (made again, full, when next needed): without this, a node with
    /// a per-transfer limit kept two buckets for every content it ever moved.
    pub fn forget(&mut self, conn: ConnKey, now: Instant) {
        self.peers.remove(&conn);
        self.flows.forget(conn as u64, now);
        let queues = &self.queues;
        self.transfers.retain(|id, b| {
            queues.iter().any(|q| q.conns.contains_key(&Some(*id)))
                || !b.iter_mut().all(|b| b.is_full(now))
        });
        for q in &mut self.queues {
            if let Some(content) = q.queued.remove(&conn) {
                if let Some(list) = q.conns.get_mut(&content) {
                    list.retain(|c| *c != conn);
                    if list.is_empty() {
                        q.conns.remove(&content);
                        q.transfers.retain(|t| *t != content);
                    }
                }
            }
        }
    }

    /// Current rates, bytes per second over about the last second: `(up, down)`.
    pub fn rates(&mut self, now: Instant) -> (u64, u64) {
        (self.meters[0].rate(now), self.meters[1].rate(now))
    }

    /// Counts bytes `conn` (of `content`) moved in an unlimited direction (for the meters
    /// only).
    pub fn count(&mut self, d: Dir, conn: ConnKey, content: Option<Id>, n: u64, now: Instant) {
        if n > 0 {
            self.meters[d as usize].add(n, now);
            self.flows.add(d, conn as u64, content, n, now);
        }
    }

    /// Each transfer's and open connection's rates, over about the last 5 s.
    pub fn flow_rates(&mut self, now: Instant) -> Rates {
        self.flows.rates(now)
    }
}

/// A reader or writer that moves at most `budget` bytes, then answers `WouldBlock` (so the
/// wire code stops as if the socket were drained), and counts what it moved.
pub struct Budgeted<'a, T> {
    inner: &'a mut T,
    left: u64,
    /// Bytes moved.
    pub moved: u64,
    /// True if it stopped because the budget ran out (the socket may have more).
    pub exhausted: bool,
}

impl<'a, T> Budgeted<'a, T> {
    /// Wraps `inner` with `budget` bytes (`u64::MAX`: only counting).
    pub fn new(inner: &'a mut T, budget: u64) -> Self {
        Budgeted {
            inner,
            left: budget,
            moved: 0,
            exhausted: false,
        }
    }

    fn cap(&mut self, len: usize) -> std::io::Result<usize> {
        if self.left == 0 {
            self.exhausted = true;
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        Ok(len.min(usize::try_from(self.left).unwrap_or(usize::MAX)))
    }

    fn moved(&mut self, n: usize) {
        self.left = self.left.saturating_sub(n as u64);
        self.moved += n as u64;
    }
}

/// Most buffers one [`Budgeted`] vectored read fills (a secure record's body, its tag and
/// the next record's length prefix take three).
const READV_MAX: usize = 4;

impl<T: std::io::Read> std::io::Read for Budgeted<'_, T> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let n = self.cap(buf.len())?;
        let got = self.inner.read(buf.get_mut(..n).unwrap_or_default())?;
        self.moved(got);
        Ok(got)
    }

    fn read_vectored(&mut self, bufs: &mut [std::io::IoSliceMut<'_>]) -> std::io::Result<usize> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if total == 0 {
            return Ok(0);
        }
        let mut left = self.cap(total)?;
        // The budget cuts the list: whole buffers while it lasts, then part of one. At most
        // READV_MAX of them (a read may always fill fewer), so no list is allocated per read.
        let mut cut: [std::io::IoSliceMut<'_>; READV_MAX] =
            std::array::from_fn(|_| std::io::IoSliceMut::new(&mut []));
        let mut n = 0;
        for (b, slot) in bufs.iter_mut().zip(cut.iter_mut()) {
            if left == 0 {
                break;
            }
            let take = b.len().min(left);
            *slot = std::io::IoSliceMut::new(b.get_mut(..take).unwrap_or_default());
            left -= take;
            n += 1;
        }
        let got = self
            .inner
            .read_vectored(cut.get_mut(..n).unwrap_or_default())?;
        self.moved(got);
        Ok(got)
    }
}

impl<T: std::io::Write> std::io::Write for Budgeted<'_, T> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        let n = self.cap(buf.len())?;
        let put = self.inner.write(buf.get(..n).unwrap_or_default())?;
        self.moved(put);
        Ok(put)
    }

    fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if total == 0 {
            return Ok(0);
        }
        let mut left = self.cap(total)?;
        let mut cut = Vec::with_capacity(bufs.len());
        for b in bufs {
            if left == 0 {
                break;
            }
            let take = b.len().min(left);
            cut.push(std::io::IoSlice::new(b.get(..take).unwrap_or_default()));
            left -= take;
        }
        let put = self.inner.write_vectored(&cut)?;
        self.moved(put);
        Ok(put)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_with_units() {
        assert_eq!(parse_rate("10MB/s").unwrap(), 10_000_000);
        assert_eq!(parse_rate("10MB").unwrap(), 10_000_000);
        assert_eq!(parse_rate("5MiB/s").unwrap(), 5 * 1024 * 1024);
        assert_eq!(parse_rate("500KB/s").unwrap(), 500_000);
        assert_eq!(parse_rate("1.5KiB").unwrap(), 1536);
        assert_eq!(parse_rate("1000B/s").unwrap(), 1000);
        assert_eq!(parse_rate("1000").unwrap(), 1000);
        assert_eq!(parse_rate("0").unwrap(), 0);
        assert_eq!(parse_rate("unlimited").unwrap(), 0);
        assert!(parse_rate("10 parsecs").is_err());
        assert!(parse_rate("MB").is_err());
        assert!(parse_rate("-5MB").is_err());
        assert!(parse_rate("1e30").is_err());
        // As people write them: any case, K/M/G alone, bits.
        assert_eq!(parse_rate("5mb").unwrap(), 5_000_000);
        assert_eq!(parse_rate("5M").unwrap(), 5_000_000);
        assert_eq!(parse_rate("5 mib/s").unwrap(), 5 * 1024 * 1024);
        assert_eq!(parse_rate("500k").unwrap(), 500_000);
        assert_eq!(parse_rate("40mbit").unwrap(), 5_000_000);
        assert_eq!(parse_rate("40 Mbit/s").unwrap(), 5_000_000);
        assert_eq!(parse_rate("40Mbps").unwrap(), 5_000_000);
        assert_eq!(parse_rate("8kbps").unwrap(), 1000);
        assert_eq!(parse_rate("1Gbit").unwrap(), 125_000_000);
        assert_eq!(parse_rate("10MBps").unwrap(), 10_000_000);
        assert_eq!(parse_rate("1000b").unwrap(), 1000);
        assert!(parse_rate("5 mibibytes").is_err());
        assert!(parse_rate("5xb").is_err());
    }

    /// Over any window, a bucket lets through at most rate * window + burst.
    #[test]
    fn bucket_never_exceeds_rate_plus_burst() {
        let t0 = Instant::now();
        let rate = 1_000_000;
        let mut b = Bucket::new(rate, t0);
        let mut sent = Vec::new();
        let mut t = t0;
        for i in 0..4000u64 {
            t += Duration::from_micros(997 + (i * 7919) % 300);
            let n = b.available(t).min(7000);
            b.take(n);
            sent.push((t, n));
        }
        for (i, (start, _)) in sent.iter().enumerate() {
            let end = *start + Duration::from_secs(2);
            let total: u64 = sent[i..]
                .iter()
                .take_while(|(t, _)| *t < end)
                .map(|x| x.1)
                .sum();
            assert!(total <= 2 * rate + b.burst, "{total} in 2 s");
        }
        // And it is not far below the rate either.
        let all: u64 = sent.iter().map(|x| x.1).sum();
        let secs = t.duration_since(t0).as_secs_f64();
        assert!(all as f64 >= 0.97 * rate as f64 * secs, "{all} in {secs} s");
    }

    /// Two transfers, one with 1 connection and one with 8, share the node's limit evenly.
    #[test]
    fn transfers_share_evenly_whatever_their_connections() {
        let t0 = Instant::now();
        let mut bw = Bandwidth::new(
            Limits {
                down: 1_000_000,
                ..Limits::default()
            },
            t0,
        );
        let a = Some(Id([1; 32]));
        let b = Some(Id([2; 32]));
        let mut got: HashMap<Option<Id>, u64> = HashMap::new();
        let owner = |c: ConnKey| if c == 0 { a } else { b };
        for c in 0..9 {
            bw.wait(Dir::Down, c, owner(c));
        }
        let mut t = t0;
        for _ in 0..5000 {
            t += Duration::from_millis(1);
            while let Some(g) = bw.next(Dir::Down, t) {
                // Every connection always has more data: it uses its grant and waits again.
                bw.used(Dir::Down, g.conn, owner(g.conn), g.bytes, t);
                *got.entry(owner(g.conn)).or_default() += g.bytes;
                bw.wait(Dir::Down, g.conn, owner(g.conn));
            }
        }
        let (x, y) = (got[&a] as f64, got[&b] as f64);
        assert!((x - y).abs() / ((x + y) / 2.0) < 0.05, "{x} vs {y}");
        assert!(x + y <= 5.0 * 1_000_000.0 + 50_000.0);
    }

    /// A per-connection cap holds one connection back without starving the others.
    #[test]
    fn a_capped_connection_does_not_block_others() {
        let t0 = Instant::now();
        let mut bw = Bandwidth::new(
            Limits {
                up: 10_000_000,
                peer_up: 100_000,
                ..Limits::default()
            },
            t0,
        );
        let mut per = [0u64; 3];
        let mut t = t0;
        for c in 0..3 {
            bw.wait(Dir::Up, c, None);
        }
        for _ in 0..2000 {
            t += Duration::from_millis(1);
            while let Some(g) = bw.next(Dir::Up, t) {
                bw.used(Dir::Up, g.conn, None, g.bytes, t);
                per[g.conn] += g.bytes;
                bw.wait(Dir::Up, g.conn, None);
            }
        }
        for p in per {
            // 2 s at 100 KB/s each, plus one burst.
            assert!(p <= 200_000 + MIN_BURST, "{p}");
            assert!(p >= 180_000, "{p}");
        }
    }

    /// A per-transfer limit keeps buckets only for transfers that moved bytes lately: once
    /// a transfer's connections are gone and its buckets have refilled, they are dropped.
    #[test]
    fn transfer_buckets_do_not_outlive_their_transfers() {
        let t0 = Instant::now();
        let mut bw = Bandwidth::new(
            Limits {
                transfer_down: 1_000_000,
                ..Limits::default()
            },
            t0,
        );
        let mut t = t0;
        for c in 0..1000usize {
            let id = Id([
                (c % 256) as u8,
                (c / 256) as u8,
                1,
                1,
                1,
                1,
                1,
                1,
                1,
                1,
                1,
                1,
                1,
                1,
                1,
                1,
                1,
                1,
                1,
                1,
                1,
                1,
                1,
                1,
                1,
                1,
                1,
                1,
                1,
                1,
                1,
                1,
            ]);
            bw.wait(Dir::Down, c, Some(id));
            let g = bw.next(Dir::Down, t).expect("a grant");
            bw.used(Dir::Down, g.conn, Some(id), g.bytes, t);
            t += Duration::from_millis(10);
            bw.forget(c, t);
        }
        assert!(
            bw.transfers.len() <= 20,
            "{} transfers kept",
            bw.transfers.len()
        );
        t += Duration::from_secs(1);
        bw.forget(usize::MAX, t);
        assert!(
            bw.transfers.is_empty(),
            "{} transfers kept",
            bw.transfers.len()
        );
    }

    #[test]
    fn a_live_change_applies_at_once() {
        let t0 = Instant::now();
        let mut bw = Bandwidth::new(
            Limits {
                up: 5_000_000,
                ..Limits::default()
            },
            t0,
        );
        let mut t = t0;
        let run = |bw: &mut Bandwidth, t: &mut Instant, ms: u64| {
            let mut n = 0;
            for _ in 0..ms {
                *t += Duration::from_millis(1);
                bw.wait(Dir::Up, 0, None);
                while let Some(g) = bw.next(Dir::Up, *t) {
                    bw.used(Dir::Up, 0, None, g.bytes, *t);
                    n += g.bytes;
                    bw.wait(Dir::Up, 0, None);
                }
            }
            n
        };
        run(&mut bw, &mut t, 1000);
        bw.set_limits(
            Limits {
                up: 1_000_000,
                ..Limits::default()
            },
            t,
        );
        let n = run(&mut bw, &mut t, 1000);
        assert!(n <= 1_000_000 + 50_000, "{n}");
        assert!(n >= 900_000, "{n}");
    }
}
