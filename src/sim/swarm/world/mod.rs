//! The swarm simulator's machinery: nodes running a transfer [`Engine`], TCP-like pipes
//! between them, the link model, the event heap and the virtual clock.
//!
//! **Pipes.** A connection is two pipes, one per direction, each a FIFO of frames (control
//! frames, PIECEs, and a final FIN once the sender closed). Bytes leave the head of a pipe
//! as its sender's link allows; a frame whose last byte has left arrives `latency` later
//! (the one-way latency of the two nodes), in order. A PIECE whose last byte has left is
//! reported to its sender as [`Engine::piece_sent`], like the reactor does when the socket
//! took it, so each connection has at most `max_pieces_pending` chunks in the pipe.
//!
//! **Links** (one time step of `tick`): every node may send `up × tick` bytes and receive
//! `down × tick` bytes. First each sender shares its upload budget among its pipes that
//! have bytes queued, max-min fair (water-filling: a pipe that needs less than an equal share
//! gets what it needs, the rest is shared among the others); then each receiver whose
//! incoming shares exceed its download budget cuts them down the same way. What a receiver
//! cuts is lost to the sender for that step (it is not offered to its other pipes): a
//! simplification that only matters for receivers with less download than one sender's
//! share, rare with the default capacities. This is per-connection fair queueing, which is
//! roughly what TCP flows sharing one access link get; slow start and loss are not modelled.
//!
//! **Everything else** is instant: a chunk read, hashed or stored is answered in the same
//! step (in memory: the data is one shared buffer per chunk, and a stored chunk is checked
//! against the manifest's hash or, in big runs, against a marker the sender wrote in it).
//! Connecting takes one round trip. A DHT lookup (`FindPeers`) takes `dht_delay` and answers
//! the seeder's address and `peers_per_lookup` random nodes that joined earlier.
//!
//! Time is virtual: an event heap ordered by `(time, sequence)`, node wake-ups kept lazily
//! (re-read `poll_timeout` after every input, skip stale entries), and link steps on a fixed
//! grid, skipped while no pipe has bytes queued. The only randomness is one `StdRng` seeded
//! from the scenario's seed, and every container the simulator iterates is ordered, so a
//! seed replays a run exactly.
//!
//! Here: the world's state, the run loop and the virtual clock; `events.rs` handles each
//! event and carries out the nodes' actions, `links.rs` holds the pipes and the link model.

mod events;
mod links;

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::bitset::BitSet;
use crate::content::ContentManifest;
use crate::id::Id;
use crate::sim::net::{derive_seed, SimError};
use crate::transfer::engine::{ConnId, Engine, EngineConfig};
use links::{Item, Pipe, PipeId};

/// Steps processed at one virtual instant before the run is declared a livelock.
const STALL_LIMIT: u64 = 50_000_000;

/// What one node is: its link and when it joins.
#[derive(Clone, Debug)]
pub(super) struct NodeSpec {
    /// Upload capacity, bytes per second.
    pub up: u64,
    /// Download capacity, bytes per second.
    pub down: u64,
    /// Half of the one-way latency to any other node (the other node adds its half).
    pub half_latency: Duration,
    /// When it starts downloading; `None` for the seeder (shares from the start).
    pub join: Option<Duration>,
}

/// The world's parameters, taken from the scenario.
#[derive(Clone, Debug)]
pub(super) struct WorldConfig {
    pub tick: Duration,
    pub dht_delay: Duration,
    pub peers_per_lookup: usize,
    pub verify: bool,
    pub max_time: Duration,
    pub seed: u64,
    pub engine: EngineConfig,
}

/// What a run measured (raw; `report.rs` makes it a report).
#[derive(Clone, Debug, Default)]
pub(super) struct Outcome {
    /// Per leecher (node 1..): when it joined and when it finished, since the start.
    pub joined: Vec<Duration>,
    pub finished: Vec<Option<Duration>>,
    /// PIECE bytes each node sent (node 0 is the seeder).
    pub uploaded: Vec<u64>,
    /// PIECEs of each chunk the seeder sent.
    pub seeder_sent: Vec<u32>,
    /// PIECEs the seeder sent before it had sent every chunk once.
    pub seeder_first_round: u64,
    /// When every chunk had reached some leecher.
    pub swarm_complete_at: Option<Duration>,
    /// Chunks that failed verification, bans, frames delivered.
    pub bad_chunks: u64,
    pub bans: u64,
    pub frames: u64,
    /// Virtual time covered.
    pub end: Duration,
    /// One sample per `SAMPLE` of virtual time.
    pub timeline: Vec<Sample>,
}

/// How long a [`Sample`] covers.
pub(super) const SAMPLE: Duration = Duration::from_secs(10);

/// The swarm over one stretch of virtual time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sample {
    /// End of the stretch, since the start.
    pub at: Duration,
    /// PIECE bytes sent during it, by everyone / by the seeder.
    pub uploaded: u64,
    /// PIECE bytes the seeder sent during it.
    pub seeder: u64,
    /// Upload capacity of the nodes that had joined by its end, over the stretch.
    pub capacity: u64,
    /// Leechers joined / finished by its end.
    pub joined: usize,
    /// Leechers finished by its end.
    pub finished: usize,
}

#[derive(Debug)]
enum Event {
    Join(usize),
    ConnectDone {
        from: usize,
        conn: ConnId,
        to: usize,
    },
    Deliver {
        pipe: PipeId,
        item: Item,
    },
    Peers(usize),
    Wake(usize),
}

#[derive(Debug)]
struct Scheduled {
    at: Duration,
    seq: u64,
    ev: Event,
}

impl PartialEq for Scheduled {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, o: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

struct Node {
    engine: Engine,
    spec: NodeSpec,
    /// Engine connection -> the pipe it sends on. Gone once either side closed.
    out: BTreeMap<ConnId, PipeId>,
    /// Pipes of this node with bytes queued.
    busy: BTreeSet<PipeId>,
    have: BitSet,
    joined: bool,
    wake: Option<Duration>,
    /// Sub-byte remainder of the upload budget, in byte-microseconds.
    credit: u64,
    down_credit: u64,
    uploaded: u64,
    finished: Option<Duration>,
}

/// The simulated swarm: node 0 shares the content, the others download it.
pub(super) struct World {
    cfg: WorldConfig,
    base: Instant,
    now: Duration,
    nodes: Vec<Node>,
    pipes: Vec<Pipe>,
    busy_nodes: BTreeSet<usize>,
    heap: BinaryHeap<Reverse<Scheduled>>,
    seq: u64,
    rng: StdRng,
    manifest: Arc<ContentManifest>,
    content: Id,
    chunks: Vec<Arc<Vec<u8>>>,
    joined: Vec<usize>,
    out: Outcome,
    swarm_has: BitSet,
    remaining: usize,
    /// Chunks the seeder has not sent yet.
    seeder_unsent: usize,
    /// The sample being filled.
    sample: Sample,
    steps_at_now: u64,
}

/// The bytes of chunk `i`: a marker (the index, twice) then a cheap pattern.
pub(super) fn chunk_bytes(i: u32, len: usize) -> Vec<u8> {
    let mut d: Vec<u8> = (0..len)
        .map(|k| (k as u32).wrapping_mul(31).wrapping_add(i) as u8)
        .collect();
    let mark = marker(i);
    let n = mark.len().min(len);
    d[..n].copy_from_slice(&mark[..n]);
    d
}

fn marker(i: u32) -> [u8; 8] {
    let b = i.to_be_bytes();
    [b[0], b[1], b[2], b[3], b[0], b[1], b[2], b[3]]
}

impl World {
    pub(super) fn new(
        cfg: WorldConfig,
        manifest: Arc<ContentManifest>,
        chunks: Vec<Arc<Vec<u8>>>,
        specs: Vec<NodeSpec>,
    ) -> Result<World, SimError> {
        if specs.len() >= crate::sim::net::MAX_NODES {
            return Err(SimError::TooManyNodes {
                max: crate::sim::net::MAX_NODES,
            });
        }
        if cfg.tick.is_zero() {
            return Err(SimError::InvalidConfig("tick must be positive".into()));
        }
        let n = manifest.chunk_count() as usize;
        // The base instant is a label for the engines' clocks; nothing reads it again.
        let base = Instant::now();
        let nodes = specs
            .into_iter()
            .enumerate()
            .map(|(i, spec)| {
                let id = Id::hash_of(&derive_seed(cfg.seed, i as u64, 1).to_be_bytes());
                Node {
                    engine: Engine::new(
                        id,
                        crate::sim::net::PORT,
                        cfg.engine.clone(),
                        derive_seed(cfg.seed, i as u64, 2),
                    ),
                    spec,
                    out: BTreeMap::new(),
                    busy: BTreeSet::new(),
                    have: BitSet::new(n),
                    joined: false,
                    wake: None,
                    credit: 0,
                    down_credit: 0,
                    uploaded: 0,
                    finished: None,
                }
            })
            .collect::<Vec<_>>();
        let leechers = nodes.len().saturating_sub(1);
        let rng = StdRng::seed_from_u64(derive_seed(cfg.seed, u64::MAX, 3));
        let content = manifest.content_id();
        let mut w = World {
            cfg,
            base,
            now: Duration::ZERO,
            nodes,
            pipes: Vec::new(),
            busy_nodes: BTreeSet::new(),
            heap: BinaryHeap::new(),
            seq: 0,
            rng,
            manifest,
            content,
            chunks,
            joined: Vec::new(),
            out: Outcome {
                joined: vec![Duration::ZERO; leechers],
                finished: vec![None; leechers],
                seeder_sent: vec![0; n],
                ..Outcome::default()
            },
            swarm_has: BitSet::new(n),
            remaining: leechers,
            seeder_unsent: n,
            sample: Sample {
                at: SAMPLE,
                ..Sample::default()
            },
            steps_at_now: 0,
        };
        for i in 0..w.nodes.len() {
            let at = w.nodes[i].spec.join.unwrap_or(Duration::ZERO);
            w.schedule(at, Event::Join(i));
        }
        Ok(w)
    }

    /// Runs until every leecher finished or `max_time` passed.
    pub(super) fn run(mut self) -> Result<Outcome, SimError> {
        let tick = self.cfg.tick;
        let mut next_tick = tick;
        while self.remaining > 0 {
            let next_event = self.heap.peek().map(|Reverse(s)| s.at);
            let next_link = if self.busy_nodes.is_empty() {
                None
            } else {
                if next_tick < self.now {
                    // Idle links skipped steps: back on the grid.
                    let steps = self.now.as_nanos().div_ceil(tick.as_nanos());
                    next_tick = tick * u32::try_from(steps).unwrap_or(u32::MAX);
                }
                Some(next_tick)
            };
            let link = match (next_event, next_link) {
                (None, None) => break,
                (Some(e), Some(l)) => l < e,
                (None, Some(_)) => true,
                (Some(_), None) => false,
            };
            let at = if link {
                next_tick
            } else {
                next_event.unwrap_or(next_tick)
            };
            if at > self.cfg.max_time {
                break;
            }
            self.advance(at)?;
            if link {
                self.link_step();
                next_tick += tick;
            } else if let Some(Reverse(s)) = self.heap.pop() {
                self.handle(s.ev);
            }
        }
        self.out.end = self.now;
        if self.sample.uploaded > 0 {
            self.close_sample();
        }
        for (i, n) in self.nodes.iter().enumerate() {
            self.out.uploaded.push(n.uploaded);
            if i > 0 {
                self.out.finished[i - 1] = n.finished;
            }
        }
        Ok(self.out)
    }

    fn advance(&mut self, at: Duration) -> Result<(), SimError> {
        while at > self.sample.at {
            self.close_sample();
        }
        if at > self.now {
            self.now = at;
            self.steps_at_now = 0;
        } else {
            self.steps_at_now += 1;
            if self.steps_at_now > STALL_LIMIT {
                return Err(SimError::Livelock {
                    seed: self.cfg.seed,
                    at: self.now,
                    steps: self.steps_at_now,
                });
            }
        }
        Ok(())
    }

    fn close_sample(&mut self) {
        let at = self.sample.at;
        let joined: Vec<&Node> = self.nodes.iter().filter(|n| n.joined).collect();
        let up: u64 = joined.iter().map(|n| n.spec.up).sum();
        let done = self.nodes.iter().filter(|n| n.finished.is_some()).count();
        let next = Sample {
            at: at + SAMPLE,
            ..Sample::default()
        };
        let mut s = std::mem::replace(&mut self.sample, next);
        s.capacity = up * SAMPLE.as_secs();
        s.joined = joined.len().saturating_sub(1);
        s.finished = done;
        self.out.timeline.push(s);
    }

    fn instant(&self) -> Instant {
        self.base + self.now
    }

    fn schedule(&mut self, at: Duration, ev: Event) {
        self.seq += 1;
        self.heap.push(Reverse(Scheduled {
            at,
            seq: self.seq,
            ev,
        }));
    }

    fn latency(&self, a: usize, b: usize) -> Duration {
        self.nodes[a].spec.half_latency + self.nodes[b].spec.half_latency
    }
}
