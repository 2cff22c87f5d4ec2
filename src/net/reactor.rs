//! The event loop: one mio `Poll` owns the DHT's UDP socket, the wire protocol's TCP listener
//! and the local API's listener and connections.
//!
//! Each turn: wait for readiness or the next deadline; drain every ready socket until
//! `WouldBlock` (readiness is only a hint); feed datagrams and timeouts into the sans-IO
//! [`Dht`] and drain its outputs; hand API requests to the worker pool and pick their results
//! up from the completion channel (the pool wakes the loop through the `Waker`). The loop
//! never blocks on anything but `poll`, and one misbehaving connection only ever closes that
//! connection.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use mio::net::{TcpListener, TcpStream, UdpSocket};
use mio::{Events, Interest, Poll, Token, Waker};

use crate::api::framing::{ApiConnection, Frame};
use crate::api::request::ApiRequest;
use crate::api::{auth, reply, ReplyTo};
use crate::dht::{Dht, DhtEvent, QueryId, QueryResult};
use crate::id::Id;
use crate::ledger::Ledger;
use crate::net::bandwidth::{Bandwidth, Budgeted, Dir, Limits};
use crate::net::emulate::SendEmulator;
use crate::net::jobs::{Backlog, Completion, Job, JobContext};
use crate::net::socket::dest_for;
use crate::net::trace::Tracer;
use crate::net::wire_conn::WireConn;
use crate::node::commands::{self, Ctx, Pending};
use crate::node::library::{Library, Reply};
use crate::node::shared::{BandwidthView, Shared, StatusView};
use crate::node::state::NodeState;
use crate::storage::{DiskStorage, StorageJob};
use crate::transfer::engine::{Action as EngineAction, ConnId, WireAction};
use crate::workers::{Completer, WorkerPool};

#[path = "reactor_nat.rs"]
mod nat_glue;

const UDP: Token = Token(0);
const WIRE: Token = Token(1);
const API: Token = Token(2);
/// The token of the loop's waker.
pub const WAKER: Token = Token(3);
const FIRST_CONN: usize = 16;
/// Most API connections open at once; more are accepted and closed at once.
const MAX_API_CONNS: usize = 1024;
const SAVE_EVERY: Duration = Duration::from_secs(60);
const VIEW_EVERY: Duration = Duration::from_millis(500);

struct ApiConn {
    stream: TcpStream,
    peer: SocketAddr,
    framer: ApiConnection,
    next_seq: u64,
    next_flush: u64,
    /// Replies finished out of order, held until their turn.
    ready: BTreeMap<u64, Vec<u8>>,
    eof: bool,
    writable_interest: bool,
    /// After a fatal error: our side is shut down and input is discarded until the client
    /// closes, the deadline passes or the byte budget runs out. Closing with unread input
    /// would make the kernel send RST, which can destroy the error reply in flight.
    draining: Option<(Instant, usize)>,
    /// Since when the client owes the rest of a request (see `api_request_timeout`).
    waiting_since: Option<Instant>,
    /// Last time bytes came in or a reply went out (the oldest idle one makes room).
    last_active: Instant,
}

/// How long and how much a lingering close waits for the client to finish sending.
const DRAIN_FOR: Duration = Duration::from_secs(2);
const DRAIN_BYTES: usize = 8 << 20;

/// One wire-protocol connection.
struct WireSock {
    stream: TcpStream,
    conn: ConnId,
    io: WireConn,
    connecting: bool,
    closing: bool,
    writable_interest: bool,
}

/// The sockets and core state the loop drives.
pub struct Reactor {
    poll: Poll,
    udp: UdpSocket,
    wire: TcpListener,
    api: TcpListener,
    local: SocketAddr,
    /// What this node calls itself in API replies until peers agree on its public address:
    /// `local`, or for a wildcard bind the address the kernel routes from.
    advertised: SocketAddr,
    conns: HashMap<Token, ApiConn>,
    /// API connections refused since start: input that is not a request (HTTP, garbage,
    /// broken JSON framing), or a request not finished in time.
    api_refused: u64,
    next_token: usize,
    dht: Dht,
    emulator: SendEmulator,
    workers: WorkerPool,
    completions: Receiver<Completion>,
    pending: HashMap<QueryId, Pending>,
    library: Library,
    /// What workers need to run jobs.
    jobs: Arc<JobContext>,
    /// Jobs waiting for room in the worker pool.
    backlog: Backlog,
    wire_socks: HashMap<Token, WireSock>,
    wire_tokens: HashMap<ConnId, Token>,
    /// DHT lookups started for a download's peers.
    peer_queries: HashMap<QueryId, Id>,
    next_expire: Instant,
    shared: Arc<Shared>,
    shutdown: Arc<AtomicBool>,
    api_token: Option<Arc<str>>,
    api_request_timeout: Duration,
    tracer: Tracer,
    bw: Bandwidth,
    next_save: Instant,
    next_view: Instant,
    view_dirty: bool,
    /// NAT traversal (`reactor_nat.rs`).
    nat: nat_glue::NatIo,
}

/// What the reactor is built from.
pub struct ReactorParts {
    /// A `Poll` whose waker is already registered under [`WAKER`].
    pub poll: Poll,
    /// The waker.
    pub waker: Arc<Waker>,
    /// DHT socket.
    pub udp: UdpSocket,
    /// Wire listener.
    pub wire: TcpListener,
    /// API listener.
    pub api: TcpListener,
    /// Address of `udp` and `wire`.
    pub local: SocketAddr,
    /// The DHT core.
    pub dht: Dht,
    /// Send-path emulation.
    pub emulator: SendEmulator,
    /// Worker threads.
    pub workers: WorkerPool,
    /// Shares and downloads.
    pub library: Library,
    /// The files behind them.
    pub storage: Arc<DiskStorage>,
    /// State shared with workers.
    pub shared: Arc<Shared>,
    /// Set by the signal handler.
    pub shutdown: Arc<AtomicBool>,
    /// For persistence.
    pub data_dir: std::path::PathBuf,
    /// The token API clients outside loopback must send (`api::auth`).
    pub api_token: Option<Arc<str>>,
    /// How long a client may take to finish a request it has started (a slow or stuck
    /// client must not hold a connection slot forever); then it gets an error reply and is
    /// closed.
    pub api_request_timeout: Duration,
    /// The ledger behind the chain commands (run on workers: it fsyncs).
    pub ledger: Arc<dyn Ledger>,
    /// `--trace`: print every datagram and frame, decoded.
    pub trace: bool,
    /// Bandwidth limits at start.
    pub limits: Limits,
    /// The NAT-traversal core.
    pub nat: crate::nat::Nat,
}

impl Reactor {
    /// Registers the sockets and builds the loop.
    pub fn new(mut p: ReactorParts) -> io::Result<Self> {
        let reg = p.poll.registry();
        reg.register(&mut p.udp, UDP, Interest::READABLE)?;
        reg.register(&mut p.wire, WIRE, Interest::READABLE)?;
        reg.register(&mut p.api, API, Interest::READABLE)?;
        let (completer, completions) = Completer::new(p.waker.clone());
        let now = Instant::now();
        Ok(Reactor {
            poll: p.poll,
            udp: p.udp,
            wire: p.wire,
            api: p.api,
            local: p.local,
            advertised: crate::net::socket::advertised_addr(p.local),
            conns: HashMap::new(),
            api_refused: 0,
            next_token: FIRST_CONN,
            dht: p.dht,
            emulator: p.emulator,
            workers: p.workers,
            jobs: Arc::new(JobContext {
                storage: p.storage,
                shared: p.shared.clone(),
                ledger: p.ledger,
                completer,
                data_dir: p.data_dir,
            }),
            backlog: Backlog::default(),
            completions,
            pending: HashMap::new(),
            library: p.library,
            wire_socks: HashMap::new(),
            wire_tokens: HashMap::new(),
            peer_queries: HashMap::new(),
            next_expire: now,
            shared: p.shared,
            shutdown: p.shutdown,
            api_token: p.api_token,
            api_request_timeout: p.api_request_timeout,
            tracer: Tracer::new(p.trace),
            bw: Bandwidth::new(p.limits, now),
            next_save: now + SAVE_EVERY,
            next_view: now,
            view_dirty: true,
            nat: nat_glue::NatIo::new(p.nat),
        })
    }

    /// Mutable access to the DHT before the loop starts (bootstrap, persisted contacts).
    pub fn dht_mut(&mut self) -> &mut Dht {
        &mut self.dht
    }

    /// Runs until the shutdown flag is set, then saves state.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        self.nat_start_mapping(Instant::now());
        self.flush_dht(Instant::now());
        self.drive_engine(Instant::now());
        while !self.shutdown.load(Ordering::Relaxed) {
            let now = Instant::now();
            let timeout = self
                .next_deadline()
                .map(|d| d.saturating_duration_since(now));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let now = Instant::now();
            for ev in events.iter() {
                match ev.token() {
                    UDP => self.read_udp(now),
                    WIRE => self.accept_wire(),
                    API => self.accept_api(),
                    WAKER => {}
                    t if self.nat.owns(t) => self.nat_ready(t, now),
                    t if self.wire_socks.contains_key(&t) => {
                        self.wire_ready(t, ev.is_readable(), ev.is_writable(), now)
                    }
                    t => self.conn_ready(t, ev.is_readable(), ev.is_writable()),
                }
            }
            self.drain_completions(now);
            if self.dht.poll_timeout().is_some_and(|t| t <= now) {
                self.dht.handle_timeout(now);
            }
            if self.library.engine.poll_timeout().is_some_and(|t| t <= now) {
                self.library.engine.handle_timeout(now);
            }
            self.flush_dht(now);
            self.nat_timeouts(now);
            self.drive_engine(now);
            self.housekeeping(now);
            self.serve_bandwidth(now);
        }
        // The router's port mappings go first: they point at a node that is going away.
        self.nat_stop_mapping();
        self.pump_jobs();
        self.library_outputs();
        // Whatever waits for a worker (saving the download list, a last chunk) runs here,
        // then every download's progress is made durable.
        self.backlog.run_all_here(&self.jobs);
        self.jobs.run(Job::Storage(StorageJob::FlushAll));
        self.jobs.run(Job::SaveState(self.node_state()));
        Ok(())
    }

    fn next_deadline(&mut self) -> Option<Instant> {
        let bandwidth = self.bw.next_deadline(Instant::now());
        [
            bandwidth,
            self.dht.poll_timeout(),
            self.library.engine.poll_timeout(),
            self.emulator.next_deadline(),
            self.nat.next_deadline(),
            Some(self.next_save),
            Some(self.next_view),
            Some(self.next_expire),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    // ----- DHT ----------------------------------------------------------------------

    fn read_udp(&mut self, now: Instant) {
        // Larger than MAX_DATAGRAM so oversized datagrams are seen (and rejected) whole.
        let mut buf = [0u8; 2048];
        loop {
            match self.udp.recv_from(&mut buf) {
                Ok((n, from)) => {
                    let bytes = buf.get(..n).unwrap_or(&[]);
                    self.tracer.datagram(false, from, bytes);
                    self.dht.handle_datagram(now, from, bytes);
                    self.flush_dht(now);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // ICMP errors (port unreachable) surface here on Linux; they concern one
                // peer and the DHT's timeouts handle them.
                Err(e) => log::debug!("udp receive: {e}"),
            }
        }
    }

    /// Drains the DHT's outputs: datagrams go out (through the emulator), events are
    /// dispatched. The str0m rule: after every input, drain until empty.
    fn flush_dht(&mut self, now: Instant) {
        while let Some(t) = self.dht.poll_transmit() {
            if let Some((dest, payload)) = self.emulator.submit(now, t.dest, t.payload) {
                self.send_udp(dest, &payload);
            }
        }
        while let Some((dest, payload)) = self.emulator.due(now) {
            self.send_udp(dest, &payload);
        }
        while let Some(ev) = self.dht.poll_event() {
            self.view_dirty = true;
            match ev {
                DhtEvent::QueryDone { id, result, stats } => {
                    log::debug!("dht: query {id:?} done in {:?}: {stats:?}", stats.duration);
                    if let Some(p) = self.pending.remove(&id) {
                        let bytes = commands::reply_for(&p, &result, &self.dht, self.self_addr());
                        self.deliver_to(p.to, bytes);
                    } else if let Some(content) = self.peer_queries.remove(&id) {
                        if let QueryResult::Providers { providers, .. } = &result {
                            log::debug!(
                                "download {content}: the DHT knows {} providers",
                                providers.len()
                            );
                            self.library.engine.add_peers(now, &content, providers);
                        }
                    } else if let QueryResult::Announced { stored_at, asked } = result {
                        log::debug!("dht: republished a key at {stored_at}/{asked} nodes");
                    }
                }
                DhtEvent::ExternalAddress(a) => {
                    log::info!("peers see this node at {a}");
                    self.nat_external(now);
                }
                DhtEvent::Nat { from, datagram } => self.nat_datagram(now, from, datagram),
            }
        }
    }

    fn send_udp(&mut self, dest: SocketAddr, payload: &[u8]) {
        let to = dest_for(&self.local, dest);
        self.tracer.datagram(true, dest, payload);
        match self.udp.send_to(payload, to) {
            Ok(_) => {}
            // A full socket buffer drops the datagram, as the network would; the DHT retries.
            Err(e) => log::debug!("udp send to {dest}: {e}"),
        }
    }

    /// Accepts every pending connection on the wire (`wire: true`) or API listener, each
    /// registered for reading under a fresh token. Readiness is edge-triggered, so this
    /// drains the listener; an accept error (EMFILE and the like) only ends this round.
    fn accept_pending(&mut self, wire: bool) -> Vec<(TcpStream, SocketAddr, Token)> {
        let what = if wire { "wire" } else { "api" };
        let mut out = Vec::new();
        loop {
            let listener = if wire { &self.wire } else { &self.api };
            match listener.accept() {
                Ok((mut stream, peer)) => {
                    let token = self.alloc_token();
                    if let Err(e) =
                        self.poll
                            .registry()
                            .register(&mut stream, token, Interest::READABLE)
                    {
                        log::warn!("{what}: cannot register {peer}: {e}");
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    out.push((stream, peer, token));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::warn!("{what}: accept failed: {e}");
                    break;
                }
            }
        }
        out
    }

    // ----- wire protocol ------------------------------------------------------------

    fn accept_wire(&mut self) {
        let now = Instant::now();
        for (stream, peer, token) in self.accept_pending(true) {
            // A punched connection may arrive here (nat.md): then it is our own.
            let punched = self.nat_accepted(crate::proto::codec::canonical_addr(peer), now);
            let conn = punched.unwrap_or_else(|| {
                self.library
                    .engine
                    .accepted(now, crate::proto::codec::canonical_addr(peer))
            });
            self.track_wire(token, conn, stream, false);
            if let Some(conn) = punched {
                self.library.engine.connected(now, conn);
                self.drive_engine(now);
            }
            self.wire_ready(token, true, false, now);
        }
    }

    /// Starts tracking a registered wire socket as connection `conn`. `connecting`: a
    /// non-blocking connect still in progress (registered for WRITABLE to learn the outcome).
    fn track_wire(&mut self, token: Token, conn: ConnId, stream: TcpStream, connecting: bool) {
        self.wire_tokens.insert(conn, token);
        self.wire_socks.insert(
            token,
            WireSock {
                stream,
                conn,
                io: WireConn::new(),
                connecting,
                closing: false,
                writable_interest: connecting,
            },
        );
    }

    // ----- API connections ----------------------------------------------------------

    fn accept_api(&mut self) {
        for (mut stream, peer, token) in self.accept_pending(false) {
            if self.conns.len() >= MAX_API_CONNS {
                self.evict_idle_api_conn();
            }
            if self.conns.len() >= MAX_API_CONNS {
                log::warn!("api: refusing {peer}: {MAX_API_CONNS} connections open, none idle");
                let _ = stream.write(&reply::error("too many API connections"));
                let _ = self.poll.registry().deregister(&mut stream);
                continue;
            }
            self.conns.insert(
                token,
                ApiConn {
                    stream,
                    peer,
                    framer: ApiConnection::new(),
                    next_seq: 0,
                    next_flush: 0,
                    ready: BTreeMap::new(),
                    eof: false,
                    writable_interest: false,
                    draining: None,
                    waiting_since: None,
                    last_active: Instant::now(),
                },
            );
            // Data may already be waiting: edge-triggered readiness won't tell us twice.
            self.conn_ready(token, true, false);
        }
    }

    fn conn_ready(&mut self, token: Token, readable: bool, writable: bool) {
        if readable {
            self.read_conn(token);
        }
        if writable || readable {
            self.write_conn(token);
        }
    }

    fn read_conn(&mut self, token: Token) {
        let mut frames = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        {
            let Some(c) = self.conns.get_mut(&token) else {
                return;
            };
            if let Some((_, discarded)) = c.draining.as_mut() {
                loop {
                    match c.stream.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) if *discarded + n < DRAIN_BYTES => *discarded += n,
                        Ok(_) => break,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(_) => break,
                    }
                }
                self.close_conn(token);
                return;
            }
            while !c.eof && c.framer.wants_read() {
                match c.stream.read(&mut buf) {
                    Ok(0) => {
                        c.eof = true;
                        frames.extend(c.framer.on_eof());
                    }
                    Ok(n) => {
                        c.last_active = Instant::now();
                        frames.extend(c.framer.on_bytes(buf.get(..n).unwrap_or(&[])));
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        log::debug!("api: {}: read error: {e}", c.peer);
                        self.close_conn(token);
                        return;
                    }
                }
            }
            // The deadline runs from the first byte of a request to its last.
            c.waiting_since = if c.framer.mid_request() {
                Some(c.waiting_since.unwrap_or(c.last_active))
            } else {
                None
            };
        }
        self.answer_frames(token, frames);
    }

    /// Gives every frame its place in the reply order and answers or dispatches it.
    fn answer_frames(&mut self, token: Token, frames: Vec<Frame>) {
        for f in frames {
            let seq = match self.conns.get_mut(&token) {
                Some(c) => {
                    c.next_seq += 1;
                    c.next_seq - 1
                }
                None => return,
            };
            match f {
                Frame::Request(bytes) => self.dispatch(token, seq, bytes),
                Frame::Malformed { reason } => {
                    self.api_refused += 1;
                    self.deliver(token, seq, reply::error(&reason))
                }
                Frame::Http { reason } => {
                    self.api_refused += 1;
                    if let Some(c) = self.conns.get(&token) {
                        log::info!("api: {}: refused an HTTP request", c.peer);
                    }
                    self.deliver(token, seq, reply::http_refusal(&reason))
                }
            }
        }
    }

    /// Sends a request to a worker to be parsed (and, for read-only commands, answered from
    /// the shared view without coming back through the loop).
    fn dispatch(&mut self, token: Token, seq: u64, bytes: Vec<u8>) {
        let to = reply_to(token, seq);
        let needs_token = match (&self.api_token, self.conns.get(&token)) {
            (Some(t), Some(c)) if auth::required_for(c.peer.ip()) => Some(t.clone()),
            _ => None,
        };
        if !self.backlog.api_room() {
            self.deliver(
                token,
                seq,
                reply::error("node busy: too many requests queued, try again"),
            );
            return;
        }
        self.backlog.push(Job::Api {
            to,
            bytes,
            token: needs_token,
        });
        self.backlog.submit(&self.workers, &self.jobs);
    }

    /// Runs `local_register_file_on_chain` on a worker (it appends and fsyncs), once the
    /// loop has said whether this node has the content.
    fn register_on_worker(&mut self, to: ReplyTo, req: ApiRequest) {
        let known = match &req {
            ApiRequest::RegisterOnChain { file_hash, .. } => self.library.knows(file_hash),
            _ => false,
        };
        self.backlog.push(Job::Register { to, req, known });
        self.backlog.submit(&self.workers, &self.jobs);
    }

    /// Moves the library's storage jobs to the backlog and hands the backlog to the pool.
    fn pump_jobs(&mut self) {
        while let Some(job) = self.library.poll_job() {
            self.backlog.push(Job::Storage(job));
        }
        self.backlog.submit(&self.workers, &self.jobs);
    }

    /// Delivers the library's replies and stops announcing what it withdrew.
    fn library_outputs(&mut self) {
        let replies = self.library.take_replies();
        self.deliver_replies(replies);
        for id in self.library.take_withdrawn() {
            self.dht.stop_providing(&id);
        }
    }

    fn drain_completions(&mut self, now: Instant) {
        while let Ok(c) = self.completions.try_recv() {
            match c {
                Completion::Reply { to, bytes } => self.deliver_to(to, bytes),
                Completion::Storage(done) => {
                    self.library.on_storage_done(now, done);
                    self.library_outputs();
                    self.drive_engine(now);
                    self.view_dirty = true;
                }
                Completion::Parsed { to, result } => match result {
                    Err(e) => self.deliver_to(to, reply::error(&e.message)),
                    Ok(req @ ApiRequest::RegisterOnChain { .. }) => {
                        self.register_on_worker(to, req)
                    }
                    Ok(ApiRequest::SetLimits { changes }) => {
                        let mut l = self.bw.limits();
                        let slots = [
                            &mut l.up,
                            &mut l.down,
                            &mut l.transfer_up,
                            &mut l.transfer_down,
                            &mut l.peer_up,
                            &mut l.peer_down,
                        ];
                        for (slot, change) in slots.into_iter().zip(changes) {
                            if let Some(v) = change {
                                *slot = v;
                            }
                        }
                        self.bw.set_limits(l, now);
                        log::info!("bandwidth limits now {l:?}");
                        self.view_dirty = true;
                        // Connections queued under a limit that is now gone go back to
                        // reading and writing on their own readiness.
                        self.serve_bandwidth(now);
                        self.deliver_to(
                            to,
                            reply::success(
                                match serde_json::json!({
                                    "message": "limits set",
                                    "limits": commands::limits_json(&l),
                                }) {
                                    serde_json::Value::Object(m) => m,
                                    _ => serde_json::Map::new(),
                                },
                            ),
                        );
                    }
                    Ok(req) => {
                        let self_addr = self.self_addr();
                        let ctx = Ctx {
                            dht: &mut self.dht,
                            library: &mut self.library,
                            self_addr,
                        };
                        match commands::execute(req, ctx, now, to) {
                            commands::Outcome::Reply(bytes) => self.deliver_to(to, bytes),
                            commands::Outcome::Wait(qid, p) => {
                                self.pending.insert(qid, p);
                            }
                            commands::Outcome::Deferred => {}
                        }
                        self.library_outputs();
                        self.view_dirty = true;
                        self.flush_dht(now);
                        self.drive_engine(now);
                    }
                },
            }
        }
    }

    /// This node's address as given to API clients: the public one once peers agree on it.
    fn self_addr(&self) -> SocketAddr {
        self.dht.external_addr().unwrap_or(self.advertised)
    }

    /// Delivers a reply to where it is going.
    fn deliver_to(&mut self, to: ReplyTo, bytes: Vec<u8>) {
        self.deliver(Token(to.conn as usize), to.seq, bytes);
    }

    /// Puts a reply in its place in the connection's order and writes what is ready.
    fn deliver(&mut self, token: Token, seq: u64, bytes: Vec<u8>) {
        let Some(c) = self.conns.get_mut(&token) else {
            return; // the client went away; nothing to do
        };
        c.ready.insert(seq, bytes);
        while let Some(b) = c.ready.remove(&c.next_flush) {
            c.framer.queue_reply(&b);
            c.next_flush += 1;
        }
        self.write_conn(token);
        // Replies may have lifted the framer's back-pressure: read what waits.
        if self
            .conns
            .get(&token)
            .is_some_and(|c| !c.eof && c.framer.wants_read())
        {
            self.read_conn(token);
        }
    }

    fn write_conn(&mut self, token: Token) {
        let Some(c) = self.conns.get_mut(&token) else {
            return;
        };
        loop {
            let out = c.framer.pending_output();
            if out.is_empty() {
                break;
            }
            match c.stream.write(out) {
                Ok(0) => {
                    self.close_conn(token);
                    return;
                }
                Ok(n) => {
                    c.framer.consume_output(n);
                    c.last_active = Instant::now();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::debug!("api: {}: write error: {e}", c.peer);
                    self.close_conn(token);
                    return;
                }
            }
        }
        let want_write = !c.framer.pending_output().is_empty();
        if c.framer.wants_close() && !want_write && c.draining.is_none() {
            if c.eof {
                self.close_conn(token);
                return;
            }
            // Lingering close: the reply is out; stop sending, discard what still comes.
            let _ = c.stream.shutdown(std::net::Shutdown::Write);
            c.draining = Some((Instant::now() + DRAIN_FOR, 0));
            self.read_conn(token);
            return;
        }
        if want_write != c.writable_interest {
            let interest = if want_write {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            if let Err(e) = self
                .poll
                .registry()
                .reregister(&mut c.stream, token, interest)
            {
                log::debug!("api: reregister: {e}");
            }
            c.writable_interest = want_write;
        }
    }

    /// Closes the API connection that has been idle longest (nothing in progress, nothing
    /// owed), to admit a new client when all slots are taken.
    fn evict_idle_api_conn(&mut self) {
        let oldest = self
            .conns
            .iter()
            .filter(|(_, c)| c.draining.is_none() && c.framer.is_idle() && c.ready.is_empty())
            .min_by_key(|(_, c)| c.last_active)
            .map(|(t, c)| (*t, c.peer));
        if let Some((t, peer)) = oldest {
            log::info!("api: closing idle connection from {peer} to make room");
            self.close_conn(t);
        }
    }

    /// Answers and closes connections whose client started a request and did not finish it
    /// within `api_request_timeout`.
    fn expire_slow_requests(&mut self, now: Instant) {
        let limit = self.api_request_timeout;
        let slow: Vec<Token> = self
            .conns
            .iter()
            .filter(|(_, c)| {
                c.waiting_since
                    .is_some_and(|t| now.saturating_duration_since(t) >= limit)
            })
            .map(|(t, _)| *t)
            .collect();
        for t in slow {
            let Some(c) = self.conns.get_mut(&t) else {
                continue;
            };
            c.waiting_since = None;
            let reason = format!("request not finished within {limit:?}");
            log::info!("api: {}: {reason}", c.peer);
            let frames: Vec<Frame> = c.framer.abandon(&reason).into_iter().collect();
            self.answer_frames(t, frames);
            self.write_conn(t);
        }
    }

    fn close_conn(&mut self, token: Token) {
        if let Some(mut c) = self.conns.remove(&token) {
            let _ = self.poll.registry().deregister(&mut c.stream);
        }
        // Lookups still running for this connection finish unobserved.
        self.pending.retain(|_, p| p.to.conn != token.0 as u64);
    }

    // ----- housekeeping -------------------------------------------------------------

    fn housekeeping(&mut self, now: Instant) {
        if now >= self.next_expire {
            self.next_expire = now + Duration::from_secs(1);
            self.library.expire_waits(now);
            self.library_outputs();
            self.expire_slow_requests(now);
        }
        let expired: Vec<Token> = self
            .conns
            .iter()
            .filter(|(_, c)| c.draining.is_some_and(|(until, _)| until <= now))
            .map(|(t, _)| *t)
            .collect();
        for t in expired {
            self.close_conn(t);
        }
        if now >= self.next_view || self.view_dirty {
            self.publish_view();
            self.next_view = now + VIEW_EVERY;
            self.view_dirty = false;
        }
        if now >= self.next_save {
            self.save_state();
            self.next_save = now + SAVE_EVERY;
        }
    }

    fn publish_view(&mut self) {
        let now = Instant::now();
        let (up_rate, down_rate) = self.bw.rates(now);
        let bandwidth = BandwidthView {
            limits: self.bw.limits(),
            up_rate,
            down_rate,
        };
        let rt = self.dht.routing_table();
        let routing_table = rt
            .iter()
            .map(|e| {
                let bucket = rt.bucket_index(&e.contact.id).unwrap_or(0);
                (
                    e.contact,
                    bucket,
                    now.saturating_duration_since(e.last_seen).as_secs(),
                )
            })
            .collect();
        let view = StatusView {
            node_id: self.dht.id(),
            listen: self.local,
            external: self.dht.external_addr(),
            routing_table,
            provider_records: self.dht.provider_records(),
            provided: self.dht.provided_keys(),
            known_keys: {
                let mut k = self.dht.known_keys();
                k.extend(self.library.shared_ids());
                k.sort_unstable();
                k.dedup();
                k
            },
            stats: self.dht.stats().clone(),
            emulated_drops: self.emulator.dropped,
            api_connections: self.conns.len(),
            api_refused: self.api_refused,
            running_queries: self.dht.running_queries(),
            bandwidth,
            nat: self.nat.status_json(),
        };
        self.shared.publish(view);
    }

    fn node_state(&self) -> NodeState {
        NodeState {
            node_id: Some(self.dht.id()),
            contacts: self.dht.routing_table().iter().map(|e| e.contact).collect(),
            provided: self.dht.provided_keys(),
        }
    }

    /// Persists the routing table and provided keys, on a worker (disk I/O stays off the
    /// loop).
    fn save_state(&mut self) {
        self.backlog.push(Job::SaveState(self.node_state()));
        self.backlog.submit(&self.workers, &self.jobs);
    }

    fn alloc_token(&mut self) -> Token {
        let t = Token(self.next_token);
        self.next_token = self.next_token.wrapping_add(1).max(FIRST_CONN);
        t
    }

    fn deliver_replies(&mut self, replies: Vec<Reply>) {
        for r in replies {
            self.deliver_to(r.to, r.bytes);
        }
    }

    // ----- transfers ----------------------------------------------------------------

    /// Carries out the engine's actions: socket work here, file work on workers, peer
    /// lookups and announces in the DHT.
    fn drive_engine(&mut self, now: Instant) {
        let mut dirty: Vec<Token> = Vec::new();
        let mut dht_used = false;
        while let Some(a) = self.library.engine.poll_action() {
            match a {
                EngineAction::Wire(w) => match w {
                    WireAction::Connect { conn, addr } => self.wire_connect(now, conn, addr),
                    WireAction::Send { conn, msg } => {
                        if self.tracer.enabled() {
                            // A closing connection is already gone from the engine.
                            let peer = self.library.engine.conn_addr(conn).or_else(|| {
                                let t = self.wire_tokens.get(&conn)?;
                                self.wire_socks.get(t)?.stream.peer_addr().ok()
                            });
                            self.tracer.frame(true, peer, &msg);
                        }
                        if let Some(t) = self.wire_tokens.get(&conn).copied() {
                            if let Some(ws) = self.wire_socks.get_mut(&t) {
                                ws.io.queue(&msg);
                                dirty.push(t);
                            }
                        }
                    }
                    WireAction::SendPiece { conn, chunk, data } => {
                        self.tracer
                            .piece(self.library.engine.conn_addr(conn), chunk, data.len());
                        if let Some(t) = self.wire_tokens.get(&conn).copied() {
                            if let Some(ws) = self.wire_socks.get_mut(&t) {
                                ws.io.queue_piece(chunk, data);
                                dirty.push(t);
                            }
                        }
                    }
                    WireAction::Close { conn } => {
                        self.nat_conn_closed(conn);
                        if let Some(t) = self.wire_tokens.get(&conn).copied() {
                            if let Some(ws) = self.wire_socks.get_mut(&t) {
                                ws.closing = true;
                                dirty.push(t);
                            }
                        }
                    }
                },
                EngineAction::Storage(job) => self.library.queue_job(job),
                EngineAction::Finish { content } => self.library.finish(content),
                EngineAction::FindPeers { content } => {
                    if let Some(q) = self.dht.get_providers(content, now) {
                        self.peer_queries.insert(q, content);
                        dht_used = true;
                    }
                }
                EngineAction::Announce { content } => {
                    let _ = self.dht.announce(content, 0, now);
                    dht_used = true;
                }
                EngineAction::Banned { addr, node } => {
                    log::warn!(
                        "banned peer {addr} ({}): it sent a chunk that failed verification",
                        node.map_or_else(|| "unknown id".into(), |n| n.to_hex()[..16].to_string())
                    );
                }
            }
        }
        self.pump_jobs();
        dirty.sort_unstable();
        dirty.dedup();
        for t in dirty {
            self.wire_flush(t, now);
        }
        if dht_used {
            self.flush_dht(now);
        }
    }

    fn wire_connect(&mut self, now: Instant, conn: ConnId, addr: SocketAddr) {
        if self.nat_connect(now, conn, addr) {
            return; // through the provider's rendezvous (reactor_nat.rs)
        }
        match TcpStream::connect(addr) {
            Ok(mut stream) => {
                let token = self.alloc_token();
                let interest = Interest::READABLE | Interest::WRITABLE;
                if let Err(e) = self.poll.registry().register(&mut stream, token, interest) {
                    log::debug!("wire: cannot register connection to {addr}: {e}");
                    self.library.engine.closed(now, conn);
                    return;
                }
                let _ = stream.set_nodelay(true);
                self.track_wire(token, conn, stream, true);
            }
            Err(e) => {
                log::debug!("wire: cannot connect to {addr}: {e}");
                self.library.engine.closed(now, conn);
            }
        }
    }

    fn wire_ready(&mut self, token: Token, readable: bool, writable: bool, now: Instant) {
        let Some(ws) = self.wire_socks.get_mut(&token) else {
            return;
        };
        let conn = ws.conn;
        if ws.connecting {
            if !(readable || writable) {
                return;
            }
            match ws.stream.take_error() {
                Ok(None) => {}
                Ok(Some(e)) | Err(e) => {
                    log::debug!("wire: connect failed: {e}");
                    self.wire_drop(token, now, true);
                    return;
                }
            }
            match ws.stream.peer_addr() {
                Ok(_) => {
                    ws.connecting = false;
                    self.nat_direct_connected(conn, now);
                    self.library.engine.connected(now, conn);
                    self.drive_engine(now);
                }
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => {
                    log::debug!("wire: connect failed: {e}");
                    self.wire_drop(token, now, true);
                    return;
                }
            }
        }
        if readable {
            if self.bw.limited(Dir::Down) {
                // Read when the fair scheduler says so (`serve_bandwidth`).
                let content = self.library.engine.conn_content(conn);
                self.bw.wait(Dir::Down, token.0, content);
            } else {
                self.wire_read(token, now, u64::MAX);
            }
        }
        self.wire_flush(token, now);
    }

    /// Reads up to `budget` bytes from a wire connection and feeds the frames to the engine.
    /// Returns true if the budget ran out before the socket was drained.
    fn wire_read(&mut self, token: Token, now: Instant, budget: u64) -> bool {
        let mut exhausted = false;
        let mut nat_frames = Vec::new();
        let mut frames_conn = ConnId::new(0);
        {
            let Some(ws) = self.wire_socks.get_mut(&token) else {
                return false;
            };
            let conn = ws.conn;
            if !ws.closing {
                let mut src = Budgeted::new(&mut ws.stream, budget);
                let res = ws.io.read_frames(&mut src);
                let (moved, hit) = (src.moved, src.exhausted);
                exhausted = hit;
                self.account(Dir::Down, token, conn, moved, budget, now);
                match res {
                    Ok(out) => {
                        for f in out.frames {
                            self.tracer
                                .frame(false, self.library.engine.conn_addr(conn), &f);
                            if nat_glue::is_nat_frame(&f) {
                                nat_frames.push(f);
                                frames_conn = conn;
                                break; // the rest belongs to the NAT layer's new owner
                            }
                            self.library.engine.frame(now, conn, f);
                        }
                        if let Some(e) = out.error {
                            log::debug!("wire: protocol error from connection {conn}: {e}");
                            self.library.engine.closed(now, conn);
                            // Say why before hanging up (wire.md: ERROR, then close), then
                            // close once it is written.
                            if let Some(ws) = self.wire_socks.get_mut(&token) {
                                ws.io.queue(&crate::proto::wire::Message::Error {
                                    code: crate::proto::wire::error_code::PROTOCOL_VIOLATION,
                                    text: format!("cannot decode your frame: {e}"),
                                });
                                ws.closing = true;
                            }
                        } else if out.eof {
                            self.wire_drop(token, now, true);
                        }
                    }
                    Err(e) => {
                        log::debug!("wire: read error on connection {conn}: {e}");
                        self.wire_drop(token, now, true);
                    }
                }
                self.drive_engine(now);
            }
        }
        if !nat_frames.is_empty() {
            self.nat_frames(token, frames_conn, nat_frames, now);
        }
        exhausted
    }

    /// Writes what a wire connection has queued: at once when uploads are unlimited, else
    /// when the fair scheduler grants it bandwidth (`serve_bandwidth`).
    fn wire_flush(&mut self, token: Token, now: Instant) {
        let Some(ws) = self.wire_socks.get_mut(&token) else {
            return;
        };
        if ws.connecting {
            return;
        }
        if self.bw.limited(Dir::Up) && !ws.io.is_flushed() {
            let content = self.library.engine.conn_content(ws.conn);
            self.bw.wait(Dir::Up, token.0, content);
            return;
        }
        self.wire_write(token, now, u64::MAX);
    }

    /// Writes up to `budget` bytes of a connection's queue, then closes it if it was closing
    /// and is flushed, and asks for writability if output is left. Returns true if the budget
    /// ran out with output left.
    fn wire_write(&mut self, token: Token, now: Instant, budget: u64) -> bool {
        let Some(ws) = self.wire_socks.get_mut(&token) else {
            return false;
        };
        if ws.connecting {
            return false;
        }
        let conn = ws.conn;
        let mut freed = false;
        let mut dst = Budgeted::new(&mut ws.stream, budget);
        let res = ws.io.flush(&mut dst);
        let (moved, hit) = (dst.moved, dst.exhausted);
        self.account(Dir::Up, token, conn, moved, budget, now);
        match res {
            Ok(pieces) => {
                for _ in 0..pieces {
                    self.library.engine.piece_sent(now, conn);
                    freed = true;
                }
            }
            Err(e) => {
                log::debug!("wire: write error on connection {conn}: {e}");
                self.wire_drop(token, now, true);
                return false;
            }
        }
        let Some(ws) = self.wire_socks.get_mut(&token) else {
            return false;
        };
        let flushed = ws.io.is_flushed();
        if ws.closing && flushed {
            // Closing with unread input makes the kernel send RST, which can destroy the
            // ERROR just written: stop sending, and discard what has already arrived.
            let _ = ws.stream.shutdown(std::net::Shutdown::Write);
            let mut sink = [0u8; 16 * 1024];
            let mut discarded = 0usize;
            while discarded < (1 << 20) {
                match ws.stream.read(&mut sink) {
                    Ok(n) if n > 0 => discarded += n,
                    _ => break,
                }
            }
            self.wire_drop(token, now, false);
            return false;
        }
        if flushed == ws.writable_interest {
            let interest = if flushed {
                Interest::READABLE
            } else {
                Interest::READABLE | Interest::WRITABLE
            };
            if let Err(e) = self
                .poll
                .registry()
                .reregister(&mut ws.stream, token, interest)
            {
                log::debug!("wire: reregister: {e}");
            }
            ws.writable_interest = !flushed;
        }
        if freed {
            // Sent pieces free room for more reads: let the engine queue them.
            self.drive_engine(now);
        }
        hit && !flushed
    }

    /// Counts `moved` wire bytes of `conn` in direction `d`: the live totals of `status`,
    /// and the buckets if the move was budgeted (`budget < u64::MAX`).
    fn account(
        &mut self,
        d: Dir,
        token: Token,
        conn: ConnId,
        moved: u64,
        budget: u64,
        now: Instant,
    ) {
        self.shared.wire_totals[d as usize].fetch_add(moved, Ordering::Relaxed);
        if budget == u64::MAX {
            self.bw.count(d, moved, now);
        } else {
            let content = self.library.engine.conn_content(conn);
            self.bw.used(d, token.0, content, moved, now);
        }
    }

    /// Hands out bandwidth to the connections waiting for it, fairly (see
    /// `net::bandwidth`): each grant is one budgeted read or write; a connection that used
    /// its whole grant queues again behind the others.
    fn serve_bandwidth(&mut self, now: Instant) {
        for d in [Dir::Down, Dir::Up] {
            // Bounded: a grant is at least 1 KiB of a finite bucket, and a round that
            // moves nothing ends the loop.
            for _ in 0..100_000 {
                let Some(g) = self.bw.next(d, now) else {
                    break;
                };
                let token = Token(g.conn);
                let Some(ws) = self.wire_socks.get(&token) else {
                    continue;
                };
                let content = self.library.engine.conn_content(ws.conn);
                let more = match d {
                    Dir::Down => self.wire_read(token, now, g.bytes),
                    Dir::Up => self.wire_write(token, now, g.bytes),
                };
                if more && self.wire_socks.contains_key(&token) {
                    self.bw.wait(d, g.conn, content);
                }
            }
        }
    }

    /// Forgets a wire socket; `tell_engine` when the engine does not know yet.
    fn wire_drop(&mut self, token: Token, now: Instant, tell_engine: bool) {
        self.bw.forget(token.0);
        if let Some(mut ws) = self.wire_socks.remove(&token) {
            let _ = self.poll.registry().deregister(&mut ws.stream);
            self.wire_tokens.remove(&ws.conn);
            if tell_engine {
                self.library.engine.closed(now, ws.conn);
            }
        }
    }

    /// The node's ID (for the start-up banner).
    pub fn node_id(&self) -> Id {
        self.dht.id()
    }
}

/// The return address of the request `seq` on API connection `token`.
fn reply_to(token: Token, seq: u64) -> ReplyTo {
    ReplyTo {
        conn: token.0 as u64,
        seq,
    }
}
