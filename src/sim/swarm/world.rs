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

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::seq::index::sample;
use rand::SeedableRng;

use crate::bitset::BitSet;
use crate::content::manifest::Manifest;
use crate::id::Id;
use crate::proto::wire::{Message, PIECE_HEADER_LEN};
use crate::sim::net::{derive_seed, node_addr, node_index, SimError};
use crate::storage::job::StorageJob;
use crate::transfer::engine::{Action, ConnId, Engine, EngineConfig, WireAction};

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
enum Item {
    Frame(Message),
    Piece { chunk: u32, data: Arc<Vec<u8>> },
    Fin,
}

impl Item {
    fn size(&self) -> u64 {
        match self {
            Item::Frame(m) => m.encoded_len() as u64,
            Item::Piece { data, .. } => (PIECE_HEADER_LEN + data.len()) as u64,
            Item::Fin => 0,
        }
    }
}

type PipeId = usize;

#[derive(Debug)]
struct Pipe {
    from: usize,
    from_conn: ConnId,
    to: usize,
    to_conn: ConnId,
    latency: Duration,
    queue: VecDeque<Item>,
    /// Bytes of the head item already sent.
    head_sent: u64,
    /// Bytes queued and not yet sent.
    queued: u64,
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
    manifest: Arc<Manifest>,
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
        manifest: Arc<Manifest>,
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
        let n = manifest.lengths().chunk_count() as usize;
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

    // ----- events -------------------------------------------------------------------

    fn handle(&mut self, ev: Event) {
        let now = self.instant();
        self.out.frames += u64::from(matches!(ev, Event::Deliver { .. }));
        match ev {
            Event::Join(i) => {
                self.nodes[i].joined = true;
                let (m, content) = (self.manifest.clone(), self.content);
                if i == 0 {
                    self.nodes[0].engine.share(m, Some("swarm.bin".into()));
                } else {
                    self.out.joined[i - 1] = self.now;
                    self.nodes[i].engine.download(now, content, None, None);
                }
                self.joined.push(i);
                self.drain(i);
            }
            Event::ConnectDone { from, conn, to } => {
                if self.nodes[from].engine.conn_addr(conn).is_none() {
                    return; // it gave up meanwhile
                }
                let accepted = self.nodes[to].engine.accepted(now, node_addr(from));
                let there = self.add_pipe(from, conn, to, accepted);
                let back = self.add_pipe(to, accepted, from, conn);
                self.nodes[from].out.insert(conn, there);
                self.nodes[to].out.insert(accepted, back);
                self.nodes[from].engine.connected(now, conn);
                self.drain(from);
                self.drain(to);
            }
            Event::Deliver { pipe, item } => self.deliver(pipe, item),
            Event::Peers(i) => {
                let mut addrs = vec![node_addr(0)];
                let others: Vec<usize> = self
                    .joined
                    .iter()
                    .copied()
                    .filter(|&j| j != i && j != 0)
                    .collect();
                let k = self.cfg.peers_per_lookup.min(others.len());
                for x in sample(&mut self.rng, others.len(), k).into_iter() {
                    addrs.push(node_addr(others[x]));
                }
                let content = self.content;
                self.nodes[i].engine.add_peers(now, &content, &addrs);
                self.drain(i);
            }
            Event::Wake(i) => {
                if self.nodes[i].wake == Some(self.now) {
                    self.nodes[i].wake = None;
                    self.nodes[i].engine.handle_timeout(now);
                    self.drain(i);
                }
            }
        }
    }

    fn add_pipe(&mut self, from: usize, from_conn: ConnId, to: usize, to_conn: ConnId) -> PipeId {
        let latency = self.latency(from, to);
        self.pipes.push(Pipe {
            from,
            from_conn,
            to,
            to_conn,
            latency,
            queue: VecDeque::new(),
            head_sent: 0,
            queued: 0,
        });
        self.pipes.len() - 1
    }

    fn deliver(&mut self, pipe: PipeId, item: Item) {
        let now = self.instant();
        let (to, conn) = (self.pipes[pipe].to, self.pipes[pipe].to_conn);
        if !self.nodes[to].out.contains_key(&conn) {
            return; // the receiver closed its side: the bytes fall on the floor
        }
        match item {
            Item::Frame(msg) => self.nodes[to].engine.frame(now, conn, msg),
            Item::Piece { chunk, data } => self.nodes[to].engine.frame(
                now,
                conn,
                Message::Piece {
                    chunk,
                    data: data.as_ref().clone(),
                },
            ),
            Item::Fin => {
                if let Some(back) = self.nodes[to].out.remove(&conn) {
                    self.clear_pipe(back);
                }
                self.nodes[to].engine.closed(now, conn);
            }
        }
        self.drain(to);
    }

    /// Runs node `i`'s actions until it has none, then re-reads its wake-up time.
    fn drain(&mut self, i: usize) {
        while let Some(a) = self.nodes[i].engine.poll_action() {
            self.act(i, a);
        }
        let wake = self.nodes[i]
            .engine
            .poll_timeout()
            .map(|t| t.saturating_duration_since(self.base).max(self.now));
        if wake != self.nodes[i].wake {
            self.nodes[i].wake = wake;
            if let Some(at) = wake {
                self.schedule(at, Event::Wake(i));
            }
        }
    }

    fn act(&mut self, i: usize, a: Action) {
        let now = self.instant();
        match a {
            Action::Wire(w) => self.wire(i, now, w),
            Action::Storage(job) => self.storage(i, now, job),
            Action::Finish { content } => {
                let ok = self.nodes[i].have.is_full();
                if ok && self.nodes[i].finished.is_none() {
                    self.nodes[i].finished = Some(self.now);
                    self.remaining = self.remaining.saturating_sub(1);
                }
                self.nodes[i].engine.finished(now, content, ok);
            }
            Action::FindPeers { .. } => {
                let at = self.now + self.cfg.dht_delay;
                self.schedule(at, Event::Peers(i));
            }
            Action::Announce { .. } => {}
            Action::Banned { .. } => self.out.bans += 1,
        }
    }

    fn wire(&mut self, i: usize, now: Instant, a: WireAction) {
        match a {
            WireAction::Connect { conn, addr } => match self.peer_index(&addr) {
                Some(j) => {
                    let rtt = self.latency(i, j) * 2;
                    self.schedule(
                        self.now + rtt,
                        Event::ConnectDone {
                            from: i,
                            conn,
                            to: j,
                        },
                    );
                }
                None => self.nodes[i].engine.closed(now, conn),
            },
            WireAction::Send { conn, msg } => self.push(i, conn, Item::Frame(msg)),
            WireAction::SendPiece { conn, chunk, data } => {
                self.push(i, conn, Item::Piece { chunk, data })
            }
            WireAction::Close { conn } => {
                if let Some(p) = self.nodes[i].out.remove(&conn) {
                    self.push_to(p, Item::Fin);
                }
            }
        }
    }

    /// Storage in memory: the data is one shared buffer per chunk.
    fn storage(&mut self, i: usize, now: Instant, job: StorageJob) {
        match job {
            StorageJob::ReadChunk { conn, chunk, .. } => {
                let data = if self.nodes[i].have.contains(chunk as usize) || i == 0 {
                    self.chunks.get(chunk as usize).cloned()
                } else {
                    None
                };
                self.nodes[i].engine.chunk_read(now, conn, chunk, data);
            }
            StorageJob::StoreChunk {
                content,
                chunk,
                from,
                data,
            } => {
                let ok = self.check(chunk, &data);
                if ok {
                    self.nodes[i].have.insert(chunk as usize);
                    if self.swarm_has.insert(chunk as usize) && self.swarm_has.is_full() {
                        self.out.swarm_complete_at = Some(self.now);
                    }
                } else {
                    self.out.bad_chunks += 1;
                }
                self.nodes[i]
                    .engine
                    .chunk_stored(now, content, chunk, from, Some(ok));
            }
            StorageJob::CheckChunk {
                content,
                chunk,
                from,
                data,
            } => {
                let ok = self.check(chunk, &data);
                self.nodes[i].engine.chunk_checked(now, content, from, ok);
            }
            StorageJob::OpenPartial { content, manifest } => {
                let n = manifest.lengths().chunk_count() as usize;
                self.nodes[i]
                    .engine
                    .partial_opened(now, content, Some(BitSet::new(n)));
            }
            // Not engine jobs: the node core's (finishing a file, sharing, persisting).
            StorageJob::Finish { .. }
            | StorageJob::Discard { .. }
            | StorageJob::Unshare { .. }
            | StorageJob::AddFile { .. }
            | StorageJob::SaveDownloads(_)
            | StorageJob::SaveState(_)
            | StorageJob::FlushAll => {}
        }
    }

    fn peer_index(&self, addr: &SocketAddr) -> Option<usize> {
        node_index(addr).filter(|j| *j < self.nodes.len())
    }

    fn check(&self, chunk: u32, data: &[u8]) -> bool {
        let l = self.manifest.lengths();
        let Some(c) = l.validate(chunk) else {
            return false;
        };
        if self.cfg.verify {
            return self.manifest.verify_chunk(c, data);
        }
        let mark = marker(chunk);
        let n = mark.len().min(data.len());
        data.len() == l.chunk_len(c) as usize && data[..n] == mark[..n]
    }

    // ----- links --------------------------------------------------------------------

    fn push(&mut self, i: usize, conn: ConnId, item: Item) {
        if let Some(&p) = self.nodes[i].out.get(&conn) {
            self.push_to(p, item);
        }
    }

    fn push_to(&mut self, p: PipeId, item: Item) {
        let pipe = &mut self.pipes[p];
        pipe.queued += item.size();
        pipe.queue.push_back(item);
        let from = pipe.from;
        self.nodes[from].busy.insert(p);
        self.busy_nodes.insert(from);
    }

    fn clear_pipe(&mut self, p: PipeId) {
        let pipe = &mut self.pipes[p];
        pipe.queue.clear();
        pipe.queued = 0;
        pipe.head_sent = 0;
        let from = pipe.from;
        self.nodes[from].busy.remove(&p);
        if self.nodes[from].busy.is_empty() {
            self.busy_nodes.remove(&from);
        }
    }

    /// One link step: share each sender's upload among its busy pipes, cut down what
    /// exceeds each receiver's download, move the bytes.
    fn link_step(&mut self) {
        let tick_us = self.cfg.tick.as_micros() as u64;
        let mut grants: Vec<(PipeId, u64)> = Vec::new();
        let senders: Vec<usize> = self.busy_nodes.iter().copied().collect();
        for s in senders {
            let node = &mut self.nodes[s];
            node.credit += node.spec.up * tick_us;
            let budget = node.credit / 1_000_000;
            node.credit %= 1_000_000;
            let wants: Vec<(PipeId, u64)> = node
                .busy
                .iter()
                .map(|&p| (p, self.pipes[p].queued))
                .collect();
            // Budget no pipe could use this step is not saved up.
            water_fill(budget, &wants, &mut grants);
        }
        // Receivers: cut what exceeds their download budget.
        let mut incoming: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (k, (p, _)) in grants.iter().enumerate() {
            incoming.entry(self.pipes[*p].to).or_default().push(k);
        }
        for (r, idx) in incoming {
            let node = &mut self.nodes[r];
            node.down_credit += node.spec.down * tick_us;
            let budget = node.down_credit / 1_000_000;
            node.down_credit %= 1_000_000;
            let total: u64 = idx.iter().map(|&k| grants[k].1).sum();
            if total <= budget {
                continue;
            }
            let wants: Vec<(PipeId, u64)> = idx.iter().map(|&k| (k, grants[k].1)).collect();
            let mut cut = Vec::new();
            water_fill(budget, &wants, &mut cut);
            for (k, g) in cut {
                grants[k].1 = g;
            }
        }
        let mut sent_pieces = Vec::new();
        for (p, bytes) in grants {
            self.transmit(p, bytes, &mut sent_pieces);
        }
        let now = self.instant();
        let mut touched = BTreeSet::new();
        for (node, conn) in sent_pieces {
            self.nodes[node].engine.piece_sent(now, conn);
            touched.insert(node);
        }
        for node in touched {
            self.drain(node);
        }
    }

    /// Sends `bytes` of pipe `p`'s queue; finished frames go on their way.
    fn transmit(&mut self, p: PipeId, mut bytes: u64, sent_pieces: &mut Vec<(usize, ConnId)>) {
        let mut done = Vec::new();
        {
            let pipe = &mut self.pipes[p];
            while let Some(head) = pipe.queue.front() {
                let rest = head.size() - pipe.head_sent;
                if rest > bytes {
                    pipe.head_sent += bytes;
                    pipe.queued -= bytes;
                    break;
                }
                bytes -= rest;
                pipe.queued -= rest;
                pipe.head_sent = 0;
                if let Some(item) = pipe.queue.pop_front() {
                    done.push(item);
                }
            }
        }
        let (from, from_conn, latency) = (
            self.pipes[p].from,
            self.pipes[p].from_conn,
            self.pipes[p].latency,
        );
        if self.pipes[p].queue.is_empty() {
            self.nodes[from].busy.remove(&p);
            if self.nodes[from].busy.is_empty() {
                self.busy_nodes.remove(&from);
            }
        }
        for item in done {
            if let Item::Piece { chunk, data } = &item {
                self.nodes[from].uploaded += data.len() as u64;
                self.sample.uploaded += data.len() as u64;
                if from == 0 {
                    self.sample.seeder += data.len() as u64;
                }
                sent_pieces.push((from, from_conn));
                if from == 0 {
                    self.seeder_sent(*chunk);
                }
            }
            let at = self.now + latency;
            self.schedule(at, Event::Deliver { pipe: p, item });
        }
    }

    fn seeder_sent(&mut self, chunk: u32) {
        let Some(n) = self.out.seeder_sent.get_mut(chunk as usize) else {
            return;
        };
        *n += 1;
        if self.seeder_unsent > 0 {
            // Counts the PIECEs up to the one that completes the first round.
            self.out.seeder_first_round += 1;
            if *n == 1 {
                self.seeder_unsent -= 1;
            }
        }
    }
}

/// Max-min fair shares of `budget` among `wants` (key, bytes wanted), appended to `out` as
/// (key, bytes granted). Returns the bytes granted in all.
fn water_fill(budget: u64, wants: &[(usize, u64)], out: &mut Vec<(usize, u64)>) -> u64 {
    let mut order: Vec<usize> = (0..wants.len()).collect();
    order.sort_by_key(|&k| (wants[k].1, wants[k].0));
    let mut left = budget;
    let mut granted = vec![0u64; wants.len()];
    for (n, &k) in order.iter().enumerate() {
        let share = left / (order.len() - n) as u64;
        let g = wants[k].1.min(share);
        granted[k] = g;
        left -= g;
    }
    // Integer division leaves a few bytes: give them to the pipes in order.
    for &k in &order {
        if left == 0 {
            break;
        }
        let more = (wants[k].1 - granted[k]).min(left);
        granted[k] += more;
        left -= more;
    }
    for (k, &(key, _)) in wants.iter().enumerate() {
        out.push((key, granted[k]));
    }
    budget - left
}

#[cfg(test)]
mod tests {
    use super::water_fill;

    #[test]
    fn water_filling_is_max_min_fair() {
        let mut out = Vec::new();
        let used = water_fill(100, &[(1, 10), (2, 1000), (3, 1000)], &mut out);
        assert_eq!(out, vec![(1, 10), (2, 45), (3, 45)]);
        assert_eq!(used, 100);
        out.clear();
        assert_eq!(water_fill(100, &[(1, 10), (2, 20)], &mut out), 30);
        assert_eq!(out, vec![(1, 10), (2, 20)]);
        out.clear();
        water_fill(10, &[(1, 100), (2, 100), (3, 100)], &mut out);
        assert_eq!(out.iter().map(|x| x.1).sum::<u64>(), 10);
    }
}
