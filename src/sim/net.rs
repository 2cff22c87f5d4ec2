//! The simulation engine: nodes, a virtual clock, datagrams in flight and node timers.
//!
//! Call order: build a [`Sim`], add nodes with [`Sim::add_node`], give them commands
//! ([`Sim::bootstrap`], [`Sim::find_node`], [`Sim::get_providers`], [`Sim::announce`] or
//! [`Sim::command`]), then advance virtual time with [`Sim::run_until`], [`Sim::run_for`] or
//! [`Sim::run_until_finished`]. Finished lookups are collected by `(node, QueryId)` and read
//! with [`Sim::finished`] / [`Sim::take_finished`].
//!
//! Each step processes the earliest pending thing: a datagram delivery or a node wake-up
//! (deliveries first on a tie). Node wake-ups are kept lazily: after every input the node's
//! `poll_timeout` is re-read and, if it changed, a new heap entry is pushed; entries that no
//! longer match the node's current wake-up are stale and skipped. A step bound per virtual
//! instant turns a livelock (work that never lets time advance) into an error that names the
//! seed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::parallel::Helpers;
use super::shard::{Ctx, Node, Shard};
use crate::dht::{Dht, DhtConfig, ProofScheme, QueryId, QueryResult, QueryStats};
use crate::id::Id;

/// The UDP port every simulated node "listens" on (a label only).
pub const PORT: u16 = 4000;

/// Most nodes a [`Sim`] can hold: the index must fit the three low octets of `10.x.y.z`.
pub const MAX_NODES: usize = 1 << 24;

/// Default bound on steps processed without virtual time advancing (see [`SimError::Livelock`]).
/// Generous: with zero latency a whole lookup wave legitimately happens at one instant.
pub const DEFAULT_STALL_LIMIT: u64 = 20_000_000;

/// Most threads a [`Sim`] runs on.
pub const MAX_THREADS: usize = 8;

/// The simulated network.
#[derive(Clone, Debug, PartialEq)]
pub struct NetConfig {
    /// One-way delay of every datagram, before jitter.
    pub latency: Duration,
    /// Each datagram's delay is `latency` plus a uniform offset in `[-jitter, +jitter]`
    /// (never below zero).
    pub jitter: Duration,
    /// Probability that a datagram is lost, in `[0, 1]`.
    pub loss: f64,
    /// Seeds every random choice of the simulation.
    pub seed: u64,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            latency: Duration::from_millis(25),
            jitter: Duration::from_millis(10),
            loss: 0.0,
            seed: 1,
        }
    }
}

/// Why a simulation stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SimError {
    /// `steps` events were processed at virtual time `at` without time advancing: something
    /// keeps generating work at one instant.
    Livelock {
        /// The seed of the run, to replay it.
        seed: u64,
        /// Virtual time since the start of the run.
        at: Duration,
        /// Steps processed at that instant.
        steps: u64,
    },
    /// More nodes than [`MAX_NODES`].
    TooManyNodes {
        /// The limit.
        max: usize,
    },
    /// A [`NetConfig`] or scenario value is out of range.
    InvalidConfig(String),
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SimError::Livelock { seed, at, steps } => write!(
                f,
                "livelock: {steps} steps without virtual time advancing at t = {:.3} s \
                 (replay with --seed {seed})",
                at.as_secs_f64()
            ),
            SimError::TooManyNodes { max } => write!(f, "a simulation holds at most {max} nodes"),
            SimError::InvalidConfig(why) => write!(f, "invalid simulation config: {why}"),
        }
    }
}

impl std::error::Error for SimError {}

/// What happened to the datagrams of a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetCounters {
    /// Datagrams the nodes sent.
    pub sent: u64,
    /// Datagrams handed to their destination.
    pub delivered: u64,
    /// Datagrams dropped by the loss model.
    pub lost: u64,
    /// Datagrams dropped because the sender or the receiver is dead.
    pub dead_end: u64,
    /// Datagrams addressed to no simulated node.
    pub unroutable: u64,
    /// Node wake-ups processed (`handle_timeout` calls).
    pub wakeups: u64,
}

impl NetCounters {
    fn add(&mut self, o: &NetCounters) {
        self.sent += o.sent;
        self.delivered += o.delivered;
        self.lost += o.lost;
        self.dead_end += o.dead_end;
        self.unroutable += o.unroutable;
        self.wakeups += o.wakeups;
    }
}

/// The address of node `i`: `10.x.y.z:4000` with `x.y.z` the index in base 256.
pub fn node_addr(i: usize) -> SocketAddr {
    // Indexes are bounded by MAX_NODES, so only the three low bytes are ever non-zero.
    let [_, x, y, z] = (i as u32).to_be_bytes();
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(10, x, y, z), PORT))
}

/// The index of the node at `addr`, if `addr` has the shape [`node_addr`] produces.
pub fn node_index(addr: &SocketAddr) -> Option<usize> {
    match addr {
        SocketAddr::V4(v4) if v4.port() == PORT => {
            let [a, x, y, z] = v4.ip().octets();
            (a == 10).then(|| u32::from_be_bytes([0, x, y, z]) as usize)
        }
        _ => None,
    }
}

/// A seed for stream `stream` of node `index`, derived from the sim seed (SplitMix64
/// finalizer: nearby inputs give unrelated outputs).
pub fn derive_seed(seed: u64, index: u64, stream: u64) -> u64 {
    let mut z = seed
        ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ stream.wrapping_mul(0xd1b5_4a32_d192_ed03);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A simulated network of DHT nodes. See the module docs for the call order.
pub struct Sim {
    config: NetConfig,
    dht_config: DhtConfig,
    base: Instant,
    now: Instant,
    rng: StdRng,
    /// Node `i` is in shard `i % shards.len()` (`sim::shard`).
    shards: Vec<Shard>,
    /// Liveness of every node, by index.
    alive: Vec<bool>,
    /// Threads that run the shards in a window.
    threads: usize,
    /// The threads beside the caller's (`sim::parallel`).
    helpers: Option<Helpers>,
    done: BTreeMap<(usize, QueryId), (QueryResult, QueryStats)>,
    /// Queries finished since the last call of `run_until_finished` looked.
    newly_done: Vec<(usize, QueryId)>,
    external_addr_events: u64,
    counters: NetCounters,
    lies: u64,
    stall_limit: u64,
    /// How the nodes added from now on sign and check PROOFs.
    proof_scheme: ProofScheme,
}

impl fmt::Debug for Sim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sim")
            .field("config", &self.config)
            .field("elapsed", &self.elapsed())
            .field("nodes", &self.len())
            .field("in_flight", &self.in_flight())
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl Sim {
    /// An empty network. Every node added later runs `dht_config`. It runs on one thread
    /// unless told otherwise ([`Sim::set_threads`]): on a machine whose cores other jobs
    /// keep busy, the per-window handover made 2 threads slower (see README).
    pub fn new(config: NetConfig, dht_config: DhtConfig) -> Result<Sim, SimError> {
        if !(0.0..=1.0).contains(&config.loss) {
            return Err(SimError::InvalidConfig(format!(
                "loss must be in [0, 1], got {}",
                config.loss
            )));
        }
        // The base is the only reading of the real clock: `Instant` has no public
        // constructor. Every decision depends on offsets from it, never on its value.
        let base = Instant::now();
        let mut sim = Sim {
            rng: StdRng::seed_from_u64(config.seed),
            config,
            dht_config,
            base,
            now: base,
            shards: Vec::new(),
            alive: Vec::new(),
            threads: 1,
            helpers: None,
            done: BTreeMap::new(),
            newly_done: Vec::new(),
            external_addr_events: 0,
            counters: NetCounters::default(),
            lies: 0,
            stall_limit: DEFAULT_STALL_LIMIT,
            proof_scheme: ProofScheme::SimHash,
        };
        sim.set_threads(1);
        Ok(sim)
    }

    /// Runs the nodes on `threads` threads (0: one per core, up to [`MAX_THREADS`]). The
    /// report is the same whatever the number (`sim::shard`); only the wall time changes.
    /// Takes effect only before the first node is added.
    pub fn set_threads(&mut self, threads: usize) {
        if !self.alive.is_empty() {
            return;
        }
        let threads = if threads == 0 {
            super::parallel::cores()
        } else {
            threads
        };
        self.threads = threads.clamp(1, MAX_THREADS);
        // Without a minimum delay there are no windows to run side by side.
        let shards = if self.lookahead().is_zero() || self.threads == 1 {
            1
        } else {
            self.threads
        };
        self.helpers = if shards > 1 {
            Helpers::new(self.threads)
        } else {
            None
        };
        self.shards = (0..shards).map(|_| Shard::new(self.base, shards)).collect();
    }

    /// The minimum one-way delay: within a window this long no datagram sent arrives.
    fn lookahead(&self) -> Duration {
        self.config.latency.saturating_sub(self.config.jitter)
    }

    /// Changes the livelock bound (steps without virtual time advancing).
    pub fn set_stall_limit(&mut self, steps: u64) {
        self.stall_limit = steps.max(1);
    }

    /// How the nodes added from now on sign and check PROOFs (dht.md section 6.1). The
    /// default is [`ProofScheme::SimHash`]: the same datagrams and checks as Ed25519 save
    /// the 64 signature bytes, so the same run (same report) at a fraction of the CPU; give
    /// [`ProofScheme::Ed25519`] to run the real signatures.
    pub fn set_proof_scheme(&mut self, scheme: ProofScheme) {
        self.proof_scheme = scheme;
    }

    /// Makes room for `n` more nodes at once (a network of known size: no doubling of the
    /// node array, which at 100,000 nodes would copy and waste hundreds of MB).
    pub fn reserve_nodes(&mut self, n: usize) {
        let per_shard = n.div_ceil(self.shards.len());
        for s in &mut self.shards {
            s.nodes.reserve_exact(per_shard);
        }
        self.alive.reserve_exact(n);
    }

    // ----- accessors ----------------------------------------------------------------

    /// The network configuration.
    pub fn config(&self) -> &NetConfig {
        &self.config
    }

    /// The seed of this run.
    pub fn seed(&self) -> u64 {
        self.config.seed
    }

    /// The current virtual time.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Virtual time since the simulation started.
    pub fn elapsed(&self) -> Duration {
        self.now.saturating_duration_since(self.base)
    }

    /// The instant `d` of virtual time after the start.
    pub fn at(&self, d: Duration) -> Instant {
        self.base + d
    }

    /// The simulation's RNG, for scenario choices: using one generator for them keeps a
    /// whole run a function of one seed.
    pub fn rng(&mut self) -> &mut StdRng {
        &mut self.rng
    }

    /// Number of nodes ever added (dead ones included).
    pub fn len(&self) -> usize {
        self.alive.len()
    }

    /// True when no node was added.
    pub fn is_empty(&self) -> bool {
        self.alive.is_empty()
    }

    fn shard_of(&self, i: usize) -> Option<&Shard> {
        self.shards.get(i % self.shards.len())
    }

    /// Node `i`'s DHT (dead nodes included, frozen at their death), if it exists.
    pub fn node(&self, i: usize) -> Option<&Dht> {
        let s = self.shard_of(i)?;
        s.nodes.get(i / self.shards.len()).map(|n| &n.dht)
    }

    /// True if node `i` exists and is alive.
    pub fn is_alive(&self, i: usize) -> bool {
        self.alive.get(i).copied().unwrap_or(false)
    }

    /// Indexes of the live nodes, ascending.
    pub fn live_nodes(&self) -> Vec<usize> {
        (0..self.len()).filter(|&i| self.is_alive(i)).collect()
    }

    /// Datagram counters so far.
    pub fn counters(&self) -> &NetCounters {
        &self.counters
    }

    /// `ExternalAddress` events the nodes reported so far.
    pub fn external_addr_events(&self) -> u64 {
        self.external_addr_events
    }

    /// Datagrams in flight.
    pub fn in_flight(&self) -> usize {
        self.shards.iter().map(Shard::in_flight).sum()
    }

    /// The result of a finished lookup, if it finished.
    pub fn finished(&self, node: usize, q: QueryId) -> Option<&(QueryResult, QueryStats)> {
        self.done.get(&(node, q))
    }

    /// Removes and returns the result of a finished lookup.
    pub fn take_finished(&mut self, node: usize, q: QueryId) -> Option<(QueryResult, QueryStats)> {
        self.done.remove(&(node, q))
    }

    // ----- nodes and commands -------------------------------------------------------

    /// Adds a node now, at [`node_addr`]`(index)`, with an ID and a DHT seed derived from the
    /// sim seed and the index. Returns its index.
    pub fn add_node(&mut self) -> Result<usize, SimError> {
        let i = self.push_node(self.now)?;
        self.drain(i);
        Ok(i)
    }

    /// Adds a node that starts at `at` (no earlier than now, nor than a start scheduled
    /// before) and bootstraps from node `via` if given: the same as running the network up
    /// to `at`, then [`Sim::add_node`] and [`Sim::bootstrap`], but inside the windows that run
    /// the network (which a join made between windows would cut short: at 100,000 nodes a
    /// join every 8 ms came before every 15 ms window ended). Returns the new node's index.
    pub fn join_at(&mut self, at: Instant, via: Option<usize>) -> Result<usize, SimError> {
        let at = at.max(self.now);
        let i = self.push_node(at)?;
        let n = self.shards.len();
        if let Some(s) = self.shards.get_mut(i % n) {
            s.schedule_start(at, i, via);
        }
        Ok(i)
    }

    /// Adds the next node, alive, its DHT made at `now` (its identity and generators come
    /// from the seed and its index), without draining it. Returns its index.
    fn push_node(&mut self, now: Instant) -> Result<usize, SimError> {
        let i = self.len();
        if i >= MAX_NODES {
            return Err(SimError::TooManyNodes { max: MAX_NODES });
        }
        let seed = self.config.seed;
        let mut id_rng = StdRng::seed_from_u64(derive_seed(seed, i as u64, 0));
        let identity = crate::identity::Identity::from_secret(&id_rng.gen());
        let mut dht = Dht::new(
            identity,
            self.dht_config.clone(),
            derive_seed(seed, i as u64, 1),
            now,
        );
        dht.set_proof_scheme(self.proof_scheme);
        let k = i % self.shards.len();
        if let Some(s) = self.shards.get_mut(k) {
            s.nodes.push(Node::new(dht, derive_seed(seed, i as u64, 2)));
        }
        self.alive.push(true);
        Ok(i)
    }

    /// Runs `f` on node `i`'s DHT now, then drains its outputs (the drain rule). `None` if
    /// the node does not exist or is dead.
    pub fn command<R>(&mut self, i: usize, f: impl FnOnce(&mut Dht, Instant) -> R) -> Option<R> {
        if !self.is_alive(i) {
            return None;
        }
        let (now, n) = (self.now, self.shards.len());
        let node = self.shards.get_mut(i % n)?.nodes.get_mut(i / n)?;
        let r = f(&mut node.dht, now);
        self.drain(i);
        Some(r)
    }

    /// Makes node `i` a liar: from now on every NODES or PROVIDERS answer it sends names
    /// made-up contacts next to what was asked and made-up providers (`sim::liars`).
    pub fn make_liar(&mut self, i: usize) {
        let seed = derive_seed(self.config.seed, i as u64, 7);
        let n = self.shards.len();
        if let Some(s) = self.shards.get_mut(i % n) {
            s.liars.add(i, seed);
        }
    }

    /// Whether node `i` lies.
    pub fn is_liar(&self, i: usize) -> bool {
        self.shard_of(i).is_some_and(|s| s.liars.is_liar(i))
    }

    /// Answers the liars have rewritten so far.
    pub fn lies_told(&self) -> u64 {
        self.lies
    }

    /// Node `i` bootstraps from node `j`'s address. False if `i` is dead or missing.
    pub fn bootstrap(&mut self, i: usize, j: usize) -> bool {
        let addr = node_addr(j);
        self.command(i, |d, now| d.bootstrap_from(addr, now))
            .is_some()
    }

    /// Node `i` looks up the nodes closest to `target`.
    pub fn find_node(&mut self, i: usize, target: Id) -> Option<QueryId> {
        self.command(i, |d, now| d.find_node(target, now)).flatten()
    }

    /// Node `i` looks up the providers of `key`.
    pub fn get_providers(&mut self, i: usize, key: Id) -> Option<QueryId> {
        self.command(i, |d, now| d.get_providers(key, now))
            .flatten()
    }

    /// Node `i` announces that it provides `key` (on its DHT port, so the provider address
    /// is [`node_addr`]`(i)`).
    pub fn announce(&mut self, i: usize, key: Id) -> Option<QueryId> {
        self.command(i, |d, now| d.announce(key, 0, now)).flatten()
    }

    /// Node `i` dies silently: from now on nothing reaches it, nothing leaves it, and its
    /// timers never fire.
    pub fn kill(&mut self, i: usize) {
        if let Some(a) = self.alive.get_mut(i) {
            *a = false;
        }
    }

    // ----- time ---------------------------------------------------------------------

    /// When the next step would happen.
    pub fn next_event(&self) -> Option<Instant> {
        self.shards
            .iter()
            .filter_map(Shard::next_key)
            .min()
            .map(|k| k.0)
    }

    /// Processes the earliest pending delivery or wake-up (of all shards, in the order
    /// `sim::shard` describes). Returns false if nothing was pending.
    pub fn step(&mut self) -> Result<bool, SimError> {
        let next = (self.shards.iter().enumerate())
            .filter_map(|(k, s)| s.next_key().map(|key| (key, k)))
            .min();
        let Some((_, k)) = next else {
            return Ok(false);
        };
        let ctx = ctx(
            &self.config,
            self.base,
            &self.alive,
            self.shards.len(),
            self.stall_limit,
        );
        if let Some(s) = self.shards.get_mut(k) {
            s.step(&ctx)?;
        }
        self.collect();
        Ok(true)
    }

    /// Processes everything due up to `t`, then sets the clock to `t` (if later).
    pub fn run_until(&mut self, t: Instant) -> Result<(), SimError> {
        while self.next_event().is_some_and(|e| e <= t) {
            self.window(t)?;
        }
        if t > self.now {
            self.now = t;
        }
        Ok(())
    }

    /// [`Sim::run_until`] `now + d`.
    pub fn run_for(&mut self, d: Duration) -> Result<(), SimError> {
        self.run_until(self.now + d)
    }

    /// Runs until every lookup in `watch` has finished, or until `deadline`. Returns the
    /// lookups still unfinished. It stops at the end of a window of virtual time (at most
    /// the minimum one-way delay long), the same whatever the number of threads.
    pub fn run_until_finished(
        &mut self,
        watch: &[(usize, QueryId)],
        deadline: Instant,
    ) -> Result<Vec<(usize, QueryId)>, SimError> {
        let mut pending: BTreeSet<(usize, QueryId)> = watch
            .iter()
            .copied()
            .filter(|(i, q)| !self.done.contains_key(&(*i, *q)))
            .collect();
        self.newly_done.clear();
        while !pending.is_empty() && self.next_event().is_some_and(|e| e <= deadline) {
            self.window(deadline)?;
            for k in self.newly_done.drain(..) {
                pending.remove(&k);
            }
        }
        Ok(pending.into_iter().collect())
    }

    /// Runs one window: from the next event, for the minimum one-way delay (not past `t`),
    /// every shard on its own, then hands each shard the datagrams the others sent it.
    /// Without a minimum delay a window is one step.
    fn window(&mut self, t: Instant) -> Result<(), SimError> {
        let Some(start) = self.next_event() else {
            return Ok(());
        };
        let lookahead = self.lookahead();
        if lookahead.is_zero() {
            return self.step().map(|_| ());
        }
        // Inclusive: a datagram sent at `start` or later arrives at `start + lookahead`.
        let end = (start + lookahead - Duration::from_nanos(1)).min(t);
        let ctx = ctx(
            &self.config,
            self.base,
            &self.alive,
            self.shards.len(),
            self.stall_limit,
        );
        super::parallel::run_window(&mut self.shards, end, &ctx, self.helpers.as_ref())?;
        self.collect();
        Ok(())
    }

    /// After shards ran: delivers the datagrams between shards and gathers what the shards
    /// counted and finished, in shard order.
    fn collect(&mut self) {
        let n = self.shards.len();
        for k in 0..n {
            let Some(s) = self.shards.get_mut(k) else {
                continue;
            };
            let mut outbox = std::mem::take(&mut s.outbox);
            let done = std::mem::take(&mut s.done);
            let c = std::mem::take(&mut s.counters);
            self.external_addr_events += std::mem::take(&mut s.external_addr_events);
            self.lies += std::mem::take(&mut s.liars.lies);
            if s.now > self.now {
                self.now = s.now;
            }
            self.counters.add(&c);
            for (key, result) in done {
                self.done.insert(key, result);
                self.newly_done.push(key);
            }
            for (j, batch) in outbox.iter_mut().enumerate() {
                if let Some(to) = self.shards.get_mut(j) {
                    to.inbox.append(batch);
                }
            }
            if let Some(s) = self.shards.get_mut(k) {
                s.outbox = outbox;
            }
        }
    }

    /// After an input to node `i` outside a window: its outputs, gathered at once.
    fn drain(&mut self, i: usize) {
        let ctx = ctx(
            &self.config,
            self.base,
            &self.alive,
            self.shards.len(),
            self.stall_limit,
        );
        let now = self.now;
        if let Some(s) = self.shards.get_mut(i % ctx.shards) {
            s.drain(i, now, &ctx);
        }
        self.collect();
    }
}

fn ctx<'a>(
    net: &'a NetConfig,
    base: Instant,
    alive: &'a [bool],
    shards: usize,
    stall_limit: u64,
) -> Ctx<'a> {
    Ctx {
        net,
        base,
        alive,
        shards,
        stall_limit,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip() {
        for i in [0, 1, 255, 256, 65_535, 65_536, MAX_NODES - 1] {
            assert_eq!(node_index(&node_addr(i)), Some(i));
        }
        assert_eq!(node_index(&"10.0.0.1:9".parse().unwrap()), None);
        assert_eq!(node_index(&"11.0.0.1:4000".parse().unwrap()), None);
    }

    #[test]
    fn datagrams_arrive_within_latency_bounds() {
        let net = NetConfig {
            latency: Duration::from_millis(25),
            jitter: Duration::from_millis(10),
            ..NetConfig::default()
        };
        let mut sim = Sim::new(net, DhtConfig::default()).unwrap();
        let a = sim.add_node().unwrap();
        let b = sim.add_node().unwrap();
        assert!(sim.bootstrap(b, a));
        // The PING is in flight; its PONG comes back one round trip later.
        let t0 = sim.now();
        let sent = sim.counters().sent;
        assert_eq!(sent, 1);
        while sim.counters().delivered < 2 {
            assert!(sim.step().unwrap());
        }
        let rtt = sim.now() - t0;
        assert!(rtt >= Duration::from_millis(30) && rtt <= Duration::from_millis(70));
        // Then the PROVE and its PROOF (dht.md section 6.1): in the table a round trip later.
        for _ in 0..100 {
            if sim.node(b).unwrap().routing_table().len() == 1 {
                break;
            }
            assert!(sim.step().unwrap());
        }
        assert_eq!(sim.node(b).unwrap().routing_table().len(), 1);
        assert!(
            sim.now() - t0 <= Duration::from_millis(140),
            "two round trips"
        );
    }

    #[test]
    fn dead_nodes_neither_send_nor_receive() {
        let mut sim = Sim::new(NetConfig::default(), DhtConfig::default()).unwrap();
        let a = sim.add_node().unwrap();
        let b = sim.add_node().unwrap();
        sim.kill(a);
        assert!(sim.bootstrap(b, a));
        sim.run_for(Duration::from_secs(10)).unwrap();
        assert!(sim.node(b).unwrap().routing_table().is_empty());
        assert_eq!(sim.counters().delivered, 0);
        assert!(sim.counters().dead_end >= 1);
        assert!(
            sim.find_node(a, Id::ZERO).is_none(),
            "a dead node takes no command"
        );
    }

    #[test]
    fn zero_latency_loop_is_reported_with_the_seed() {
        let net = NetConfig {
            latency: Duration::ZERO,
            jitter: Duration::ZERO,
            seed: 77,
            ..NetConfig::default()
        };
        let mut sim = Sim::new(net, DhtConfig::default()).unwrap();
        let a = sim.add_node().unwrap();
        let b = sim.add_node().unwrap();
        assert!(sim.bootstrap(b, a));
        sim.set_stall_limit(1);
        match sim.run_for(Duration::from_secs(1)) {
            Err(e @ SimError::Livelock { seed: 77, .. }) => {
                assert!(e.to_string().contains("--seed 77"))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_loss_is_refused() {
        let net = NetConfig {
            loss: 1.5,
            ..NetConfig::default()
        };
        assert!(matches!(
            Sim::new(net, DhtConfig::default()),
            Err(SimError::InvalidConfig(_))
        ));
    }
}
