//! One shard of a [`Sim`](super::Sim): some of the nodes, with their datagrams in flight and
//! their wake-ups, run on their own over a window of virtual time.
//!
//! Node `i` lives in shard `i % shards`, slot `i / shards`. Within a window shorter than the
//! minimum one-way delay, no datagram sent in the window arrives in it, so each shard can
//! process its nodes' events alone (on its own thread, [`super::parallel`]); datagrams for
//! other shards wait in an outbox until the window ends, then in the receiving shard's inbox
//! until its next window starts, on its own thread.
//!
//! Why the report does not depend on the number of shards: every node sees its inputs in
//! one order, keyed by `(time, delivery before wake-up, sender, sender's count)` for
//! datagrams and `(time, node)` for wake-ups, and every random draw of the network (delay,
//! loss) comes from the sending node's own generator. What nodes share (counters, finished
//! lookups) is summed or keyed, so the interleaving of different nodes does not matter.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::{Duration, Instant};

use super::liars::Liars;
use super::net::{node_addr, node_index, NetConfig, NetCounters, SimError};
use crate::dht::{Dht, DhtEvent, QueryId, QueryResult, QueryStats};

pub(super) struct Node {
    pub(super) dht: Dht,
    /// The wake-up this node has in the timer heap; other heap entries for it are stale.
    pub(super) wake: Option<Instant>,
    /// Datagrams this node sent: with its index, orders deliveries at one instant whatever
    /// thread ran the sender.
    sent: u64,
    /// State of this node's network draws (SplitMix64): its datagrams' delay and loss.
    draws: u64,
}

impl Node {
    pub(super) fn new(dht: Dht, draw_seed: u64) -> Node {
        Node {
            dht,
            wake: None,
            sent: 0,
            draws: draw_seed,
        }
    }

    /// The next 64 random bits of this node's network draws (SplitMix64).
    fn draw(&mut self) -> u64 {
        self.draws = self.draws.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.draws;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Datagrams sent to the nodes of one other shard during a window, already in the form of
/// that shard's heap: `(deliver_at in nanoseconds since the start, from << 40 | from's count,
/// to, bytes)`. The first two are unique, so the order never depends on the bytes or on which
/// shard sent it. The receiving shard puts them in its heap at the start of its next window,
/// on its own thread: done by the driver between windows, that was serial work.
#[derive(Default)]
pub(super) struct Batch {
    items: Vec<(u64, u64, u32, Vec<u8>)>,
    /// The order of the earliest item: the receiving shard's next event may be one of them.
    min: Option<(u64, u64)>,
}

impl Batch {
    fn push(&mut self, t: u64, key: u64, to: u32, bytes: Vec<u8>) {
        if self.min.is_none_or(|m| (t, key) < m) {
            self.min = Some((t, key));
        }
        self.items.push((t, key, to, bytes));
    }

    /// Moves every item of `other` here (`other`'s buffer keeps its capacity).
    pub(super) fn append(&mut self, other: &mut Batch) {
        if let Some(m) = other.min.take() {
            if self.min.is_none_or(|s| m < s) {
                self.min = Some(m);
            }
        }
        self.items.append(&mut other.items);
    }

    fn len(&self) -> usize {
        self.items.len()
    }
}

/// Bits of [`Order`]'s second word that hold the sender's count (the sender's index, below
/// [`super::net::MAX_NODES`] = 2^24, is above them).
const COUNT_BITS: u32 = 40;

/// The order of a datagram in a shard's heap, packed: `(deliver_at in nanoseconds since the
/// start, from << 40 | from's count, slot of its destination and bytes)`. The first two
/// words order as `(deliver_at, from, count)` do and are unique, so the slot never decides.
/// Small entries with two-word keys: popping the heap of tuples with `Instant`s and the
/// bytes inside was about 4% of a simulation's CPU.
type Order = (u64, u64, u32);

/// Nanoseconds from `base` to `t` (never before it in a simulation), and back: exact, so
/// `at(base, nanos(base, t)) == t`.
fn nanos(base: Instant, t: Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(base).as_nanos()).unwrap_or(u64::MAX)
}

fn at(base: Instant, nanos: u64) -> Instant {
    base + Duration::from_nanos(nanos)
}

/// What every shard reads and nobody changes during a window.
pub(super) struct Ctx<'a> {
    pub(super) net: &'a NetConfig,
    pub(super) base: Instant,
    /// Liveness of every node, by index (kills happen between windows).
    pub(super) alive: &'a [bool],
    pub(super) shards: usize,
    pub(super) stall_limit: u64,
}

/// The datagrams in flight to a shard's nodes: a heap of small [`Order`]s, and their
/// destinations and bytes in slots beside it.
#[derive(Default)]
struct Flights {
    heap: BinaryHeap<Reverse<Order>>,
    /// The destination and bytes of each datagram in flight, by the slot its heap entry
    /// names; `free` lists the slots not in use.
    slots: Vec<(u32, Vec<u8>)>,
    free: Vec<u32>,
}

impl Flights {
    fn len(&self) -> usize {
        self.heap.len()
    }

    /// Puts in flight the datagram with order `(t, key)` ([`order_key`]).
    fn push(&mut self, t: u64, key: u64, to: u32, bytes: Vec<u8>) {
        let slot = match self.free.pop() {
            Some(k) => {
                self.slots[k as usize] = (to, bytes);
                k
            }
            None => {
                self.slots.push((to, bytes));
                (self.slots.len() - 1) as u32
            }
        };
        self.heap.push(Reverse((t, key, slot)));
    }

    /// The next datagram due: `(t, from, to, bytes)`.
    fn pop(&mut self) -> Option<(u64, u32, u32, Vec<u8>)> {
        let Reverse((t, key, slot)) = self.heap.pop()?;
        let (to, bytes) = std::mem::take(self.slots.get_mut(slot as usize)?);
        self.free.push(slot);
        Some((t, (key >> COUNT_BITS) as u32, to, bytes))
    }
}

/// The second word of a datagram's [`Order`]: its sender and the sender's count.
fn order_key(from: u32, count: u64) -> u64 {
    debug_assert!(count < 1 << COUNT_BITS);
    (u64::from(from) << COUNT_BITS) | count
}

/// Some of the nodes and their pending events. See the module docs.
pub(super) struct Shard {
    pub(super) nodes: Vec<Node>,
    base: Instant,
    in_flight: Flights,
    /// Wake-ups: `(time in nanoseconds since the start, node)`.
    timers: BinaryHeap<Reverse<(u64, u32)>>,
    /// Nodes that join at a time to come, earliest first: `(time in nanoseconds since the
    /// start, node, the node it bootstraps from)` ([`Shard::schedule_start`]).
    starts: VecDeque<(u64, u32, Option<u32>)>,
    /// Datagrams for nodes of other shards, sent during the current window, by shard.
    pub(super) outbox: Vec<Batch>,
    /// Datagrams other shards sent to this one's nodes, not yet in `in_flight`.
    pub(super) inbox: Batch,
    /// Lookups finished since the driver last collected them.
    pub(super) done: Vec<((usize, QueryId), (QueryResult, QueryStats))>,
    /// Counted since the driver last collected them.
    pub(super) counters: NetCounters,
    pub(super) external_addr_events: u64,
    pub(super) liars: Liars,
    /// Time of the last event processed.
    pub(super) now: Instant,
    steps_at_instant: u64,
}

/// The order of the next event of a shard: `(time, 0, from, count)` for a delivery,
/// `(time, 1, node, 0)` for a wake-up, `(time, 2, node, 0)` for a node's start, so
/// deliveries go first on a tie and a start last (as a join made by the driver after
/// running the network up to its time).
pub(super) type Key = (Instant, u8, u32, u64);

impl Shard {
    /// Shard `_` of `shards`.
    pub(super) fn new(base: Instant, shards: usize) -> Shard {
        Shard {
            nodes: Vec::new(),
            base,
            in_flight: Flights::default(),
            timers: BinaryHeap::new(),
            starts: VecDeque::new(),
            outbox: (0..shards).map(|_| Batch::default()).collect(),
            inbox: Batch::default(),
            done: Vec::new(),
            counters: NetCounters::default(),
            external_addr_events: 0,
            liars: Liars::default(),
            now: base,
            steps_at_instant: 0,
        }
    }

    /// Datagrams in flight to this shard's nodes.
    pub(super) fn in_flight(&self) -> usize {
        self.in_flight.len() + self.inbox.len()
    }

    /// Pending deliveries, wake-ups (stale ones included) and starts.
    pub(super) fn pending(&self) -> usize {
        self.in_flight() + self.timers.len() + self.starts.len()
    }

    /// Node `i` (of this shard, just added) starts at `t` (no earlier than anything this
    /// shard ran, and no earlier than any start scheduled before): then, as in a join made
    /// by the driver, its outputs are drained, it bootstraps from `via` if given, and they
    /// are drained again. Nothing reaches it before: nobody knows its address.
    pub(super) fn schedule_start(&mut self, t: Instant, i: usize, via: Option<usize>) {
        let t = nanos(self.base, t.max(self.now));
        let t = self.starts.back().map_or(t, |&(last, _, _)| t.max(last));
        self.starts.push_back((t, i as u32, via.map(|v| v as u32)));
    }

    /// Puts the datagrams other shards sent into the heap.
    fn absorb(&mut self) {
        self.inbox.min = None;
        for (t, key, to, bytes) in self.inbox.items.drain(..) {
            self.in_flight.push(t, key, to, bytes);
        }
    }

    /// The order of the next event, if any, with its time in nanoseconds since the start.
    fn next(&self) -> Option<(u64, u8, u32, u64)> {
        let heap = self
            .in_flight
            .heap
            .peek()
            .map(|&Reverse((t, key, _))| (t, key));
        let dg = match (heap, self.inbox.min) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let dg = dg.map(|(t, key)| {
            let from = (key >> COUNT_BITS) as u32;
            (t, 0, from, key & ((1 << COUNT_BITS) - 1))
        });
        let timer = self.timers.peek().map(|&Reverse((t, i))| (t, 1, i, 0));
        let start = self.starts.front().map(|&(t, i, _)| (t, 2, i, 0));
        [dg, timer, start].into_iter().flatten().min()
    }

    /// The order of the next event, if any.
    pub(super) fn next_key(&self) -> Option<Key> {
        self.next()
            .map(|(t, kind, who, count)| (at(self.base, t), kind, who, count))
    }

    /// Processes every event due at or before `end`.
    pub(super) fn run_until(&mut self, end: Instant, ctx: &Ctx) -> Result<(), SimError> {
        self.absorb();
        let end = nanos(self.base, end);
        while self.next().is_some_and(|k| k.0 <= end) {
            self.process_next(ctx)?;
        }
        Ok(())
    }

    /// Processes the next event.
    pub(super) fn step(&mut self, ctx: &Ctx) -> Result<(), SimError> {
        self.absorb();
        self.process_next(ctx)
    }

    /// Processes the next event, the inbox already in the heap.
    fn process_next(&mut self, ctx: &Ctx) -> Result<(), SimError> {
        let Some(key) = self.next() else {
            return Ok(());
        };
        if key.1 == 2 {
            let Some((t, i, via)) = self.starts.pop_front() else {
                return Ok(());
            };
            self.advance_to(at(self.base, t), ctx)?;
            let i = i as usize;
            if !ctx.alive[i] {
                return Ok(());
            }
            let now = self.now;
            self.drain(i, now, ctx);
            if let (Some(via), Some(n)) = (via, self.nodes.get_mut(i / ctx.shards)) {
                n.dht.bootstrap_from(node_addr(via as usize), now);
                self.drain(i, now, ctx);
            }
        } else if key.1 == 0 {
            let Some((t, from, to, bytes)) = self.in_flight.pop() else {
                return Ok(());
            };
            self.advance_to(at(self.base, t), ctx)?;
            let (from, to) = (from as usize, to as usize);
            if !ctx.alive[from] || !ctx.alive[to] {
                self.counters.dead_end += 1;
                return Ok(());
            }
            self.counters.delivered += 1;
            self.liars.on_delivered(from, to, &bytes);
            let now = self.now;
            if let Some(n) = self.nodes.get_mut(to / ctx.shards) {
                n.dht.handle_datagram(now, node_addr(from), &bytes);
            }
            self.drain(to, now, ctx);
        } else {
            let Some(Reverse((t, i))) = self.timers.pop() else {
                return Ok(());
            };
            let at = at(self.base, t);
            let i = i as usize;
            let Some(n) = self.nodes.get_mut(i / ctx.shards) else {
                return Ok(());
            };
            if !ctx.alive[i] || n.wake != Some(at) {
                // Stale entry (the node's wake-up moved) or a dead node.
                return Ok(());
            }
            // Cleared so the drain below re-arms the timer even if the node asks for the
            // same instant again; the stall bound then catches a node that never sleeps.
            n.wake = None;
            self.advance_to(at, ctx)?;
            self.counters.wakeups += 1;
            let now = self.now;
            if let Some(n) = self.nodes.get_mut(i / ctx.shards) {
                n.dht.handle_timeout(now);
            }
            self.drain(i, now, ctx);
        }
        Ok(())
    }

    fn advance_to(&mut self, at: Instant, ctx: &Ctx) -> Result<(), SimError> {
        if at > self.now {
            self.now = at;
            self.steps_at_instant = 0;
        }
        self.steps_at_instant += 1;
        if self.steps_at_instant > ctx.stall_limit {
            return Err(SimError::Livelock {
                seed: ctx.net.seed,
                at: self.now.saturating_duration_since(ctx.base),
                steps: self.steps_at_instant,
            });
        }
        Ok(())
    }

    /// After an input to node `i` (of this shard) at `now`: send its datagrams, record its
    /// events, re-arm its timer (the drain rule).
    pub(super) fn drain(&mut self, i: usize, now: Instant, ctx: &Ctx) {
        let Some(n) = self.nodes.get_mut(i / ctx.shards) else {
            return;
        };
        while let Some(t) = n.dht.poll_transmit() {
            self.counters.sent += 1;
            let to = match node_index(&t.dest) {
                Some(to) if to < ctx.alive.len() => to,
                _ => {
                    self.counters.unroutable += 1;
                    continue;
                }
            };
            if ctx.net.loss > 0.0 && unit(n.draw()) < ctx.net.loss {
                self.counters.lost += 1;
                continue;
            }
            let delay = delay(ctx.net, n);
            n.sent += 1;
            let payload = self.liars.rewrite(i, to, t.payload);
            let t = nanos(self.base, now + delay);
            let key = order_key(i as u32, n.sent);
            let shard = to % ctx.shards;
            if shard == i % ctx.shards {
                self.in_flight.push(t, key, to as u32, payload);
            } else if let Some(b) = self.outbox.get_mut(shard) {
                b.push(t, key, to as u32, payload);
            }
        }
        while let Some(e) = n.dht.poll_event() {
            match e {
                DhtEvent::QueryDone { id, result, stats } => {
                    self.done.push(((i, id), (result, stats)));
                }
                DhtEvent::ExternalAddress(_) => self.external_addr_events += 1,
                // The scenarios measure lookups by their end (QueryDone).
                DhtEvent::ProvidersFound { .. } => {}
                // The simulator has no NAT layer: such datagrams are dropped.
                DhtEvent::Nat { .. } => {}
            }
        }
        let wake = n.dht.poll_timeout().map(|t| t.max(now));
        if wake.is_some() && wake != n.wake {
            n.wake = wake;
            if let Some(t) = wake {
                self.timers.push(Reverse((nanos(self.base, t), i as u32)));
            }
        }
    }
}

/// 64 random bits as a fraction in `[0, 1)` (the top 53 bits, as `rand` does).
fn unit(bits: u64) -> f64 {
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// `latency` plus a uniform offset in `[-jitter, +jitter]`, at least zero, from `n`'s draws.
fn delay(net: &NetConfig, n: &mut Node) -> Duration {
    let latency = net.latency.as_nanos() as i128;
    let jitter = net.jitter.as_nanos() as i128;
    let offset = if jitter > 0 {
        // The modulo's bias is below 2^-40 for any jitter under 16 s.
        (u128::from(n.draw()) % (2 * jitter as u128 + 1)) as i128 - jitter
    } else {
        0
    };
    let nanos = (latency + offset).max(0);
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}
