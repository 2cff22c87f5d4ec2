//! The whole-node simulator's machinery: nodes running the real [`NodeCore`], the network
//! between them (datagrams with latency, jitter and loss; TCP-like connections through
//! [`Links`]; NAT filtering), node crashes and restarts, the event heap and virtual time.
//!
//! **The driver's job, as the reactor does it.** Every input to a node is followed by
//! draining its outputs (the core's drain rule). Outputs become events: datagrams in flight,
//! connections being set up, frames queued on pipes, storage jobs run at once in memory
//! ([`MemStorage`]), API replies recorded. Nothing here decides protocol: a download, a
//! hole punch or a relay happens because the cores asked for it.
//!
//! **NAT.** A node behind a NAT ([`NatKind::Restricted`]) keeps its address (no port
//! translation) but filters like a port-restricted cone: a datagram or a connection from a
//! peer gets in only if the node sent to that peer (UDP) or connected to it (TCP) in the last
//! [`FILTER_LIFE`]. So a dial-back to it fails, it finds a rendezvous, and downloads from it
//! go through introductions, simultaneous opens (both sides' SYNs open their own filter for
//! the other's) and, failing those, relayed circuits, which the rendezvous's driver carries
//! frame by frame.
//!
//! **Time** is virtual: events in a heap ordered by `(time, sequence)`; node wake-ups kept
//! lazily (re-read `poll_timeout` after every input, skip stale entries); link ticks on a
//! fixed grid, skipped while no pipe has bytes queued. One `StdRng` seeded from the
//! scenario, and ordered containers wherever the order of iteration matters, so a seed
//! replays a run exactly.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

mod conns;
mod punch;

use super::links::{Item, Links, SockId};
use super::storage::MemStorage;
use crate::api::request::ApiRequest;
use crate::api::ReplyTo;
use crate::conn::ConnId;
use crate::dht::{Dht, DhtConfig};
use crate::id::Id;
use crate::limits::Limits;
use crate::nat::{Nat, NatConfig};
use crate::node_core::{Library, NatGlue, NodeCore, Output};
use crate::proto::wire::Message;
use crate::sim::net::{derive_seed, node_addr, node_index, SimError};
use crate::transfer::engine::EngineConfig;

/// How long a NAT lets replies in after the node sent to a peer.
pub const FILTER_LIFE: Duration = Duration::from_secs(120);
/// How long a connect to a node that drops the SYN takes to fail.
const SYN_TIMEOUT: Duration = Duration::from_secs(3);
/// Events processed at one virtual instant before the run is declared a livelock.
const STALL_LIMIT: u64 = 20_000_000;

/// How a node is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NatKind {
    /// A public address: anyone can send and connect to it.
    Public,
    /// Behind a port-restricted NAT (see the module docs).
    Restricted,
}

/// One node's fixed traits.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    /// Upload capacity, bytes per second.
    pub up: u64,
    /// Download capacity, bytes per second.
    pub down: u64,
    /// Half of the one-way latency to any other node (the other node adds its half).
    pub half_latency: Duration,
    /// How it is reached.
    pub nat: NatKind,
}

/// What the world is run with.
#[derive(Clone, Debug)]
pub struct WorldConfig {
    /// Random extra delay of each datagram, uniform in `0..jitter`.
    pub jitter: Duration,
    /// Probability that a datagram is lost.
    pub loss: f64,
    /// The link model's time step.
    pub tick: Duration,
    /// Seeds everything.
    pub seed: u64,
    /// The DHT's tunables (shorter timers than a real node's keep runs short).
    pub dht: DhtConfig,
    /// The transfer engine's tunables.
    pub engine: EngineConfig,
}

/// What a socket at a node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SockKind {
    /// A wire connection of the node's core.
    Wire(ConnId),
    /// A downloader's connection to a rendezvous, before RELAY_OK.
    Opener(ConnId),
    /// As a rendezvous: an opener held until its circuit comes.
    Held(ConnId),
    /// As a rendezvous: the framed part ended (RELAY arrived), the core decides what next.
    Ended(ConnId),
    /// As a rendezvous: one end of a circuit; what arrives goes out on the other socket.
    Circuit(SockId),
    /// A dial-back: it sends one PROBE and closes; what arrives is ignored.
    Dial,
}

struct Sock {
    node: usize,
    kind: SockKind,
    /// The pipe this socket sends on.
    out: u64,
    /// The socket at the other end.
    peer: SockId,
}

/// A running or stopped node.
struct SimNode {
    spec: NodeSpec,
    addr: SocketAddr,
    /// The node's identity key seed: its node ID is derived from it.
    secret: [u8; 32],
    id: Id,
    core: Option<NodeCore>,
    storage: MemStorage,
    /// Bumped at every crash and restart: events for an earlier life are stale.
    life: u32,
    /// The wake-up this node has in the heap.
    wake: Option<Instant>,
    /// The core's connections and their sockets.
    socks: BTreeMap<ConnId, SockId>,
    /// NAT filters: peers sent to (UDP) and connected to (TCP), and until when.
    udp_out: BTreeMap<SocketAddr, Instant>,
    tcp_out: BTreeMap<SocketAddr, Instant>,
    /// Downloader punches in progress.
    punches: BTreeMap<ConnId, SocketAddr>,
    /// API requests sent: seq -> content.
    asked: BTreeMap<u64, Id>,
    next_seq: u64,
    /// Datagrams and their bytes sent (DHT traffic).
    datagrams: u64,
    datagram_bytes: u64,
    /// PIECE bytes uploaded.
    uploaded: u64,
}

/// Things that happen, in time order.
enum Event {
    Wake(usize, u32),
    Datagram {
        to: usize,
        life: u32,
        from: SocketAddr,
        bytes: Vec<u8>,
    },
    /// An item arrives at a socket.
    Arrive {
        sock: SockId,
        item: Item,
    },
    /// A connect finishes (or fails): see [`Connect`].
    Connect(Connect),
    /// A punch's SYN reaches the other node.
    PunchSyn {
        from: usize,
        from_life: u32,
        to: usize,
        /// The downloader's connection (a provider's punch has none).
        conn: Option<ConnId>,
    },
    Tick,
    /// Scenario events, for the scenario to act on.
    Scenario(usize),
}

/// A connection being set up.
struct Connect {
    from: usize,
    from_life: u32,
    to: usize,
    purpose: Purpose,
    /// Sent first on the new connection (PROBE, RELAY).
    hello: Option<Message>,
}

/// What a connection is for, on the connecting side.
#[derive(Clone, Copy)]
enum Purpose {
    Wire(ConnId),
    DialBack,
    RelayOpen(ConnId),
    /// As a provider joining a circuit: an incoming connection from `peer`.
    RelayJoin(SocketAddr),
}

/// What a run measured, raw (the scenario makes a report of it).
#[derive(Default)]
pub struct Tally {
    /// API replies: (node, content, when, success, message).
    pub replies: Vec<(usize, Id, Duration, bool, String)>,
    /// Files finished: (node, content, when, bytes).
    pub finished: Vec<(usize, Id, Duration, Arc<Vec<u8>>)>,
    /// Datagrams lost to the loss model, and dropped by a NAT or a dead node.
    pub lost: u64,
    pub filtered: u64,
    /// Connections set up, refused (dead or filtered).
    pub connects: u64,
    pub refused: u64,
    /// Punches that made a connection, circuits started.
    pub punched: u64,
    pub circuits: u64,
    /// Items that arrived where nothing could take them.
    pub stray: u64,
}

/// The simulated world (see the module docs).
pub struct World {
    cfg: WorldConfig,
    base: Instant,
    now: Instant,
    rng: StdRng,
    nodes: Vec<SimNode>,
    socks: BTreeMap<SockId, Sock>,
    next_sock: SockId,
    links: Links,
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
    events: BTreeMap<u64, Event>,
    seq: u64,
    tick_scheduled: bool,
    steps_at_instant: u64,
    last_instant: Instant,
    /// Scenario events that came due, for the caller to handle.
    due: VecDeque<usize>,
    /// The bootstrap node's address.
    bootstrap: SocketAddr,
    /// Measurements.
    pub tally: Tally,
}

impl World {
    /// A world of `specs.len()` nodes, none running yet.
    pub fn new(cfg: WorldConfig, specs: Vec<NodeSpec>) -> World {
        // The only reading of the real clock: `Instant` has no public constructor. Every
        // decision uses offsets from it.
        let base = Instant::now();
        let rng = StdRng::seed_from_u64(derive_seed(cfg.seed, u64::MAX, 7));
        let nodes = specs
            .into_iter()
            .enumerate()
            .map(|(i, spec)| {
                let mut id_rng = StdRng::seed_from_u64(derive_seed(cfg.seed, i as u64, 1));
                let secret: [u8; 32] = id_rng.gen();
                SimNode {
                    spec,
                    addr: node_addr(i),
                    secret,
                    id: crate::identity::Identity::from_secret(&secret).node_id(),
                    core: None,
                    storage: MemStorage::default(),
                    life: 0,
                    wake: None,
                    socks: BTreeMap::new(),
                    udp_out: BTreeMap::new(),
                    tcp_out: BTreeMap::new(),
                    punches: BTreeMap::new(),
                    asked: BTreeMap::new(),
                    next_seq: 0,
                    datagrams: 0,
                    datagram_bytes: 0,
                    uploaded: 0,
                }
            })
            .collect();
        World {
            cfg,
            base,
            now: base,
            rng,
            nodes,
            socks: BTreeMap::new(),
            next_sock: 1,
            links: Links::default(),
            heap: BinaryHeap::new(),
            events: BTreeMap::new(),
            seq: 0,
            tick_scheduled: false,
            steps_at_instant: 0,
            last_instant: base,
            due: VecDeque::new(),
            bootstrap: node_addr(0),
            tally: Tally::default(),
        }
    }

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now.saturating_duration_since(self.base)
    }

    /// Node `i`'s storage (to share content before it starts).
    pub fn storage_mut(&mut self, i: usize) -> &mut MemStorage {
        &mut self.nodes[i].storage
    }

    /// Whether node `i`'s DHT knows of a provider record for `key` (debugging).
    pub fn knows_key(&self, i: usize, key: &Id) -> bool {
        self.nodes[i]
            .core
            .as_ref()
            .is_some_and(|c| c.dht().known_keys().contains(key) && !c.dht().is_providing(key))
    }

    /// A line about node `i` (debugging).
    pub fn debug_node(&self, i: usize) -> String {
        match &self.nodes[i].core {
            None => "down".into(),
            Some(c) => {
                let v = c.status_view(self.now, Default::default());
                format!(
                    "id {} life {} table {} provided {} ext {:?} stats {:?} nat {}",
                    &self.nodes[i].id.to_hex()[..8],
                    self.nodes[i].life,
                    v.routing_table.len(),
                    v.provided.len(),
                    v.external,
                    v.stats,
                    v.nat
                )
            }
        }
    }

    /// How node `i` is reached.
    pub fn nat_kind(&self, i: usize) -> NatKind {
        self.nodes[i].spec.nat
    }

    /// Node `i`'s DHT traffic (datagrams, bytes) and PIECE bytes uploaded.
    pub fn traffic(&self, i: usize) -> (u64, u64, u64) {
        let n = &self.nodes[i];
        (n.datagrams, n.datagram_bytes, n.uploaded)
    }

    /// NAT set-ups the running nodes counted: direct, punched, relayed.
    pub fn setups(&self) -> [u64; 3] {
        let mut s = [0u64; 3];
        for n in &self.nodes {
            if let Some(core) = &n.core {
                let v = core.status_view(self.now, Default::default()).nat;
                for (i, k) in ["direct", "punched", "relayed"].iter().enumerate() {
                    s[i] += v["setups"][k].as_u64().unwrap_or(0);
                }
            }
        }
        s
    }

    /// Schedules scenario event `tag` at `at` (it comes back from [`World::run_until`]).
    pub fn schedule_scenario(&mut self, at: Duration, tag: usize) {
        self.schedule(self.base + at, Event::Scenario(tag));
    }

    // ----- node lifecycle -----------------------------------------------------------

    /// Starts (or restarts after a crash) node `i`, from what its storage kept.
    pub fn start(&mut self, i: usize) {
        let now = self.now;
        let life = self.nodes[i].life + 1;
        let n = &mut self.nodes[i];
        n.life = life;
        let seed = |s: u64| derive_seed(self.cfg.seed, i as u64, 100 + s + u64::from(life) * 16);
        let identity = crate::identity::Identity::from_secret(&n.secret);
        let mut dht = Dht::new(identity, self.cfg.dht.clone(), seed(1), now);
        let saved: Vec<_> = n
            .storage
            .saved_state()
            .map(|s| s.contacts.clone())
            .unwrap_or_default();
        for c in &saved {
            dht.add_contact(*c, now);
        }
        if let Some(st) = n.storage.saved_state() {
            for key in &st.provided {
                let _ = dht.announce(*key, 0, now);
            }
        }
        if saved.is_empty() {
            if n.addr != self.bootstrap {
                dht.bootstrap_from(self.bootstrap, now);
            }
        } else {
            dht.rejoin(now);
        }
        let library = Library::new(
            n.storage.inventory(),
            std::path::PathBuf::from(format!("/sim/{i}/files")),
            n.id,
            n.addr.port(),
            self.cfg.engine.clone(),
            seed(2),
            now,
        );
        let nat = NatGlue::new(
            Nat::new(n.addr.port(), NatConfig::default(), seed(3)),
            n.id,
            n.addr,
            now,
        );
        let mut core = NodeCore::new(dht, library, nat, n.addr, n.addr, Limits::default(), now);
        core.start(now, None);
        n.core = Some(core);
        self.settle(i);
    }

    /// Kills node `i` (a crash: no goodbye). Its connections are reset: the other ends
    /// learn it one latency later.
    pub fn kill(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        if n.core.take().is_none() {
            return;
        }
        n.life += 1;
        n.wake = None;
        n.socks.clear();
        n.punches.clear();
        n.asked.clear();
        let mine: Vec<SockId> = self
            .socks
            .iter()
            .filter(|(_, s)| s.node == i)
            .map(|(id, _)| *id)
            .collect();
        for s in mine {
            self.reset(s);
        }
    }

    /// Closes socket `s` at once (its queued output is lost) and sends a FIN to the other
    /// end, which arrives one latency later.
    fn reset(&mut self, s: SockId) {
        let Some(sock) = self.socks.remove(&s) else {
            return;
        };
        self.links.drop_pipe(sock.out);
        if let Some(peer) = self.socks.get(&sock.peer) {
            let at = self.now + self.latency(sock.node, peer.node);
            self.schedule(
                at,
                Event::Arrive {
                    sock: sock.peer,
                    item: Item::Fin,
                },
            );
        }
    }

    /// Asks node `i` for `content` (`local_request_file`). Returns false if it is down.
    pub fn request(&mut self, i: usize, content: Id) -> bool {
        let now = self.now;
        let n = &mut self.nodes[i];
        let Some(core) = n.core.as_mut() else {
            return false;
        };
        let seq = n.next_seq;
        n.next_seq += 1;
        n.asked.insert(seq, content);
        let to = ReplyTo {
            conn: i as u64,
            seq,
        };
        core.handle_api(
            now,
            to,
            ApiRequest::RequestFile {
                content_hash: content,
                output_dir: None,
                peers: Vec::new(),
                only: None,
            },
        );
        self.settle(i);
        true
    }

    // ----- the event loop -----------------------------------------------------------

    /// Runs until `until` (virtual time since the start) or until a scenario event comes
    /// due (returned).
    pub fn run_until(&mut self, until: Duration) -> Result<Option<usize>, SimError> {
        let end = self.base + until;
        loop {
            if let Some(tag) = self.due.pop_front() {
                return Ok(Some(tag));
            }
            let Some(Reverse((at, seq))) = self.heap.peek().copied() else {
                self.now = end;
                return Ok(None);
            };
            if at > end {
                self.now = end;
                return Ok(None);
            }
            self.heap.pop();
            let Some(ev) = self.events.remove(&seq) else {
                continue;
            };
            if at > self.last_instant {
                self.last_instant = at;
                self.steps_at_instant = 0;
            }
            self.steps_at_instant += 1;
            if self.steps_at_instant > STALL_LIMIT {
                return Err(SimError::Livelock {
                    seed: self.cfg.seed,
                    at: at.saturating_duration_since(self.base),
                    steps: self.steps_at_instant,
                });
            }
            self.now = self.now.max(at);
            self.handle(ev);
        }
    }

    fn handle(&mut self, ev: Event) {
        match ev {
            Event::Wake(i, life) => {
                let n = &mut self.nodes[i];
                if n.life != life || n.wake.is_none_or(|w| w > self.now) {
                    return;
                }
                n.wake = None;
                if let Some(core) = n.core.as_mut() {
                    core.handle_timeout(self.now);
                }
                self.settle(i);
            }
            Event::Datagram {
                to,
                life,
                from,
                bytes,
            } => {
                let now = self.now;
                let n = &mut self.nodes[to];
                if n.life != life || n.core.is_none() {
                    self.tally.filtered += 1;
                    return;
                }
                if n.spec.nat == NatKind::Restricted
                    && n.udp_out.get(&from).is_none_or(|t| *t < now)
                {
                    self.tally.filtered += 1;
                    return;
                }
                if let Some(core) = n.core.as_mut() {
                    core.handle_datagram(now, from, &bytes);
                }
                self.settle(to);
            }
            Event::Arrive { sock, item } => self.arrive(sock, item),
            Event::Connect(c) => self.connect_done(c),
            Event::PunchSyn {
                from,
                from_life,
                to,
                conn,
            } => self.punch_syn(from, from_life, to, conn),
            Event::Tick => self.tick(),
            Event::Scenario(tag) => self.due.push_back(tag),
        }
    }

    fn schedule(&mut self, at: Instant, ev: Event) {
        self.seq += 1;
        self.events.insert(self.seq, ev);
        self.heap.push(Reverse((at, self.seq)));
    }

    fn latency(&self, a: usize, b: usize) -> Duration {
        self.nodes[a].spec.half_latency + self.nodes[b].spec.half_latency
    }

    /// After an input to node `i`: carry out its outputs until it has none (the drain
    /// rule), then re-read its wake-up.
    fn settle(&mut self, i: usize) {
        loop {
            let Some(o) = self.nodes[i].core.as_mut().and_then(NodeCore::poll_output) else {
                break;
            };
            self.output(i, o);
        }
        let life = self.nodes[i].life;
        let next = self.nodes[i].core.as_ref().and_then(NodeCore::poll_timeout);
        if next != self.nodes[i].wake {
            self.nodes[i].wake = next;
            if let Some(at) = next {
                self.schedule(at.max(self.now), Event::Wake(i, life));
            }
        }
        if self.links.busy() && !self.tick_scheduled {
            self.tick_scheduled = true;
            let at = self.now + self.cfg.tick;
            self.schedule(at, Event::Tick);
        }
    }

    fn output(&mut self, i: usize, o: Output) {
        let now = self.now;
        match o {
            Output::Datagram(t) => self.send_datagram(i, t.dest, t.payload),
            Output::Wire(w) => self.wire(i, w),
            Output::Nat(io) => self.nat(i, io),
            Output::Storage(job) => {
                let done = self.nodes[i].storage.run(job);
                for (content, bytes) in self.nodes[i].storage.take_finished() {
                    self.tally
                        .finished
                        .push((i, content, self.elapsed(), bytes));
                }
                if let (Some(done), Some(core)) = (done, self.nodes[i].core.as_mut()) {
                    core.handle_storage(now, done);
                }
            }
            Output::Reply { to, bytes } => {
                let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
                let ok = v["status"] == "success";
                let msg = v["message"].as_str().unwrap_or_default().to_owned();
                if let Some(content) = self.nodes[i].asked.remove(&to.seq) {
                    self.tally
                        .replies
                        .push((i, content, self.elapsed(), ok, msg));
                }
            }
            Output::Ledger { to, .. } => {
                // No ledger here: nothing in a scenario registers content.
                let _ = to;
            }
            // The simulated nodes run without LAN discovery (never enabled here).
            Output::Lan(_) | Output::Limits(_) | Output::RunHook(_) | Output::ViewChanged => {}
        }
    }

    fn send_datagram(&mut self, i: usize, dest: SocketAddr, payload: Vec<u8>) {
        let now = self.now;
        let n = &mut self.nodes[i];
        n.datagrams += 1;
        n.datagram_bytes += payload.len() as u64;
        n.udp_out.insert(dest, now + FILTER_LIFE);
        let Some(to) = node_index(&dest).filter(|j| *j < self.nodes.len()) else {
            self.tally.lost += 1;
            return;
        };
        if self.cfg.loss > 0.0 && self.rng.gen_bool(self.cfg.loss.clamp(0.0, 1.0)) {
            self.tally.lost += 1;
            return;
        }
        let jitter = if self.cfg.jitter.is_zero() {
            Duration::ZERO
        } else {
            self.cfg.jitter.mul_f64(self.rng.gen::<f64>())
        };
        let at = now + self.latency(i, to) + jitter;
        let from = self.nodes[i].addr;
        let life = self.nodes[to].life;
        self.schedule(
            at,
            Event::Datagram {
                to,
                life,
                from,
                bytes: payload,
            },
        );
    }

    // ----- links ----------------------------------------------------------------------

    fn tick(&mut self) {
        self.tick_scheduled = false;
        let now = self.now;
        let nodes = &self.nodes;
        let sent = self.links.tick(
            self.cfg.tick,
            &|i| nodes.get(i).map_or(0, |n| n.spec.up),
            &|i| nodes.get(i).map_or(0, |n| n.spec.down),
        );
        let mut touched = Vec::new();
        for s in sent {
            let (from, from_sock) = s.from;
            if let Item::Piece { .. } = s.item {
                let kind = self.socks.get(&from_sock).map(|x| x.kind);
                if let (Some(SockKind::Wire(conn)), Some(core)) =
                    (kind, self.nodes[from].core.as_mut())
                {
                    core.handle_piece_sent(now, conn);
                    touched.push(from);
                }
            }
            if let Item::Fin = s.item {
                // This end is done once its FIN has left.
                self.socks.remove(&from_sock);
                self.links.drop_pipe(s.pipe);
            }
            self.schedule(
                now + s.after,
                Event::Arrive {
                    sock: s.to.1,
                    item: s.item,
                },
            );
        }
        touched.sort_unstable();
        touched.dedup();
        for i in touched {
            self.settle(i);
        }
        if self.links.busy() && !self.tick_scheduled {
            self.tick_scheduled = true;
            let at = now + self.cfg.tick;
            self.schedule(at, Event::Tick);
        }
    }
}
