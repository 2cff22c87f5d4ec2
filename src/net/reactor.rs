//! The event loop: one mio `Poll` owns every socket and drives the node core.
//!
//! Each turn: wait for readiness or the next deadline; drain every ready socket until
//! `WouldBlock` (readiness is only a hint) and feed what happened to the [`NodeCore`];
//! pick up the worker pool's results from the completion channel (the pool wakes the loop
//! through the `Waker`); then carry out the core's outputs until it has none (the drain
//! rule: see `node_core`). The reactor makes no protocol decision: it moves bytes between
//! sockets and the core, paces the wire sockets under the bandwidth limits, runs file and
//! ledger work on the workers, and keeps time. The loop never blocks on anything but `poll`,
//! and one misbehaving connection only ever closes that connection.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, UdpSocket};
use mio::{Events, Interest, Poll, Waker};

use super::api_server::{ApiEvent, ApiServer};
use super::bandwidth::{Bandwidth, Dir};
use super::emulate::SendEmulator;
use super::hooks::Hooks;
use super::http_server::HttpServer;
use super::jobs::{Backlog, Completion, Job, JobContext};
use super::lan_io::LanSockets;
use super::nat_io::{NatSockEvent, NatSockets};
use super::relay::{RelayEvent, Relays};
use super::shared::Shared;
use super::socket::dest_for;
use super::tokens::{self, Tokens, API, HTTP, UDP, WAKER, WIRE};
use super::trace::Tracer;
use super::view_pace::ViewPace;
use super::wire_io::{Connecting, Side, WireSocks};
use crate::api::{reply, ReplyTo};
use crate::conn::ConnId;
use crate::ledger::Ledger;
use crate::limits::Limits;
use crate::node_core::{NatIo, NodeCore, Output};
use crate::secure::SecureError;
use crate::storage::DiskStorage;
use crate::transfer::engine::WireAction;
use crate::workers::{Completer, Completions, WorkerPool};

mod shutdown;
mod view;
mod web;

/// How often the view for read-only API commands is republished at least.
const VIEW_EVERY: Duration = Duration::from_millis(500);
/// How often API connections are checked for slow requests and finished lingering closes.
const API_TICK: Duration = Duration::from_secs(1);
/// How long a stopping node waits for the gateway to confirm the mappings' removal.
const UNMAP_FOR: Duration = Duration::from_secs(2);

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
    /// The HTTP side's listener and its address (`None`: off).
    pub http: Option<(TcpListener, SocketAddr)>,
    /// Address of `udp` and `wire`.
    pub local: SocketAddr,
    /// The node.
    pub core: NodeCore,
    /// Send-path emulation.
    pub emulator: SendEmulator,
    /// Worker threads.
    pub workers: WorkerPool,
    /// The files behind the library.
    pub storage: Arc<DiskStorage>,
    /// State shared with workers.
    pub shared: Arc<Shared>,
    /// Set by the signal handler.
    pub shutdown: Arc<AtomicBool>,
    /// The token API clients outside loopback must send (`api::auth`).
    pub api_token: Option<Arc<str>>,
    /// TLS for API clients outside loopback (`api::tls`), when the API listens beyond it.
    pub api_tls: Option<Arc<rustls::ServerConfig>>,
    /// The same for the HTTP side, when it listens beyond loopback.
    pub http_tls: Option<Arc<rustls::ServerConfig>>,
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
    /// LAN discovery's sockets, if it runs (nat.md section 11).
    pub lan: Option<LanSockets>,
    /// This node's keys for wire sessions (secure.md).
    pub keys: Arc<crate::secure::LocalKeys>,
    /// `PEERSHARE_KEYLOG`'s file, if set.
    pub keylog: Option<std::fs::File>,
}

/// The sockets, the pool and the core the loop drives.
pub struct Reactor {
    poll: Poll,
    udp: UdpSocket,
    wire: TcpListener,
    local: SocketAddr,
    core: NodeCore,
    tokens: Tokens,
    api: ApiServer,
    http: Option<HttpServer>,
    wire_socks: WireSocks,
    nat: NatSockets,
    lan: Option<LanSockets>,
    relays: Relays,
    workers: WorkerPool,
    /// What workers need to run jobs.
    jobs: Arc<JobContext>,
    /// Jobs waiting for room in the worker pool.
    backlog: Backlog,
    completions: Completions<Completion>,
    emulator: SendEmulator,
    /// The owner's completion hooks, run off the loop.
    hooks: Hooks,
    tracer: Tracer,
    bw: Bandwidth,
    shared: Arc<Shared>,
    shutdown: Arc<AtomicBool>,
    /// Wire connections with output queued since the last flush.
    dirty: Vec<ConnId>,
    next_view: Instant,
    view_pace: ViewPace,
    view_dirty: bool,
    next_api_tick: Instant,
}

impl Reactor {
    /// Registers the sockets and builds the loop.
    pub fn new(mut p: ReactorParts) -> io::Result<Self> {
        let reg = p.poll.registry();
        reg.register(&mut p.udp, UDP, Interest::READABLE)?;
        reg.register(&mut p.wire, WIRE, Interest::READABLE)?;
        let mut api = ApiServer::new(
            p.api,
            p.api_request_timeout,
            p.api_token.clone(),
            p.api_tls.clone(),
        );
        reg.register(api.listener(), API, Interest::READABLE)?;
        let token = p.api_token.clone();
        let mut http = p.http.map(|(l, addr)| {
            HttpServer::new(
                l,
                addr,
                token,
                p.http_tls.clone(),
                p.shared.clone(),
                p.api_request_timeout,
            )
        });
        if let Some(h) = http.as_mut() {
            reg.register(h.listener(), HTTP, Interest::READABLE)?;
        }
        let (completer, completions) = Completer::new(p.waker.clone());
        let mut tokens = Tokens::default();
        if let Some(lan) = p.lan.as_mut() {
            lan.register(reg, &mut tokens)?;
        }
        let now = Instant::now();
        Ok(Reactor {
            poll: p.poll,
            udp: p.udp,
            wire: p.wire,
            local: p.local,
            core: p.core,
            tokens,
            api,
            http,
            wire_socks: WireSocks::new(p.keys.clone(), p.shared.clone(), p.keylog.take()),
            nat: NatSockets::default(),
            lan: p.lan,
            relays: Relays::default(),
            workers: p.workers,
            jobs: Arc::new(JobContext {
                storage: p.storage,
                shared: p.shared.clone(),
                ledger: p.ledger,
                completer,
            }),
            backlog: Backlog::default(),
            completions,
            emulator: p.emulator,
            hooks: Hooks::new()?,
            tracer: Tracer::new(p.trace),
            bw: Bandwidth::new(p.limits, now),
            shared: p.shared,
            shutdown: p.shutdown,
            dirty: Vec::new(),
            next_view: now,
            view_pace: ViewPace::new(now),
            view_dirty: true,
            next_api_tick: now + API_TICK,
        })
    }

    /// Runs until the shutdown flag is set, then removes port mappings and saves state.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        let now = Instant::now();
        self.core.start(now, super::nat_io::default_gateway());
        self.drain(now);
        while !self.shutdown.load(Ordering::Relaxed) {
            let now = Instant::now();
            let timeout = self
                .next_deadline(now)
                .map(|d| d.saturating_duration_since(now));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let now = Instant::now();
            for ev in events.iter() {
                let (r, w) = (ev.is_readable(), ev.is_writable());
                match ev.token() {
                    UDP => self.read_udp(now),
                    WIRE => self.accept_wire(now),
                    API => {
                        let mut out = Vec::new();
                        self.api
                            .accept(self.poll.registry(), &mut self.tokens, now, &mut out);
                        self.api_events(now, out);
                    }
                    WAKER => {}
                    HTTP => self.http_accept(now),
                    t if self.http_owns(t) => self.http_ready(t, r, w, now),
                    t if self.api.owns(t) => {
                        let mut out = Vec::new();
                        self.api.ready(self.poll.registry(), t, r, w, now, &mut out);
                        self.api_events(now, out);
                    }
                    t if self.nat.owns(t) => {
                        let mut out = Vec::new();
                        self.nat.ready(self.poll.registry(), t, &mut out);
                        self.nat_events(now, out);
                    }
                    t if self.lan.as_ref().is_some_and(|l| l.owns(t)) => self.read_lan(now, t),
                    t if self.relays.owns(t) => {
                        let mut out = Vec::new();
                        self.relays.ready(self.poll.registry(), t, now, &mut out);
                        self.relay_events(now, out);
                    }
                    t => match tokens::conn_of(t) {
                        Some(conn) => self.wire_ready(conn, r, w, now),
                        None => log::debug!("readiness for unknown token {t:?}"),
                    },
                }
                self.drain(now);
            }
            self.drain_completions(now);
            self.timers(now);
            self.drain(now);
            self.serve_bandwidth(now);
            self.drain(now);
            self.publish_view(now);
        }
        self.stop();
        Ok(())
    }

    fn next_deadline(&mut self, now: Instant) -> Option<Instant> {
        [
            self.bw.next_deadline(now),
            self.core.poll_timeout(),
            self.emulator.next_deadline(),
            self.nat.next_deadline(),
            self.relays.next_deadline(now),
            Some(self.next_view),
            Some(self.next_api_tick),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Everything that runs on time: the core's timers, NAT sockets that took too long,
    /// relayed circuits, delayed datagrams, API connections.
    fn timers(&mut self, now: Instant) {
        if self.core.poll_timeout().is_some_and(|t| t <= now) {
            self.core.handle_timeout(now);
        }
        let mut nat = Vec::new();
        self.nat.timeouts(self.poll.registry(), now, &mut nat);
        self.nat_events(now, nat);
        let mut relay = Vec::new();
        self.relays.tick(self.poll.registry(), now, &mut relay);
        self.relay_events(now, relay);
        while let Some((dest, payload)) = self.emulator.due(now) {
            self.send_udp(dest, &payload);
        }
        if now >= self.next_api_tick {
            self.next_api_tick = now + API_TICK;
            let mut out = Vec::new();
            self.api.housekeeping(self.poll.registry(), now, &mut out);
            self.api_events(now, out);
            self.http_tick(now);
            crate::bufpool::trim_unused();
        }
    }

    // ----- the core's outputs -------------------------------------------------------

    /// Carries out the core's outputs until it has none (the drain rule), flushing the wire
    /// sockets they queued frames on (which may feed the core again).
    fn drain(&mut self, now: Instant) {
        for _ in 0..1_000_000 {
            let mut any = false;
            while let Some(o) = self.core.poll_output() {
                any = true;
                self.carry_out(now, o);
            }
            let dirty = std::mem::take(&mut self.dirty);
            for conn in &dirty {
                self.wire_flush(*conn, now);
            }
            if !any && dirty.is_empty() {
                return;
            }
        }
        log::error!("the node core kept producing work at one instant; yielding to the loop");
    }

    fn carry_out(&mut self, now: Instant, o: Output) {
        match o {
            Output::Datagram(t) => {
                if let Some((dest, payload)) = self.emulator.submit(now, t.dest, t.payload) {
                    self.send_udp(dest, &payload);
                }
            }
            Output::Wire(w) => self.wire_action(now, w),
            Output::Nat(io) => self.nat_io(now, io),
            Output::Lan(t) => {
                if let Some(lan) = &self.lan {
                    lan.send(&t);
                }
            }
            Output::Storage(job) => {
                self.backlog.push(Job::Storage(job));
                self.backlog.submit(&self.workers, &self.jobs);
            }
            Output::Reply { to, bytes } => self.deliver(now, to, bytes),
            Output::Ledger { to, req, known } => {
                self.backlog.push(Job::Ledger { to, req, known });
                self.backlog.submit(&self.workers, &self.jobs);
            }
            Output::Limits(l) => {
                self.bw.set_limits(l, now);
                self.view_changed();
                // Connections queued under a limit that is now gone go back to reading and
                // writing on their own readiness.
                self.serve_bandwidth(now);
            }
            Output::RunHook(h) => {
                self.hooks.run(h);
                self.view_changed();
            }
            Output::ViewChanged => self.view_changed(),
        }
    }

    fn wire_action(&mut self, now: Instant, w: WireAction) {
        match w {
            WireAction::Connect { conn, addr, expect } => {
                let reg = self.poll.registry();
                if let Err(e) = self.wire_socks.connect(reg, conn, addr, expect) {
                    log::debug!("wire: cannot connect to {addr}: {e}");
                    self.core.handle_wire_closed(now, conn);
                }
            }
            WireAction::Send { conn, msg } => {
                if self.tracer.enabled() {
                    // A closing connection is already gone from the core.
                    let peer = self
                        .core
                        .conn_addr(conn)
                        .or_else(|| self.wire_socks.peer_addr(conn));
                    self.tracer.frame(true, peer, &msg);
                }
                if self.wire_socks.queue(conn, &msg) {
                    self.dirty.push(conn);
                }
            }
            WireAction::SendPiece { conn, chunk, data } => {
                self.tracer
                    .piece(self.core.conn_addr(conn), chunk, data.len());
                if self.wire_socks.queue_piece(conn, chunk, data) {
                    self.dirty.push(conn);
                }
            }
            WireAction::Close { conn } => {
                if self.wire_socks.close_when_flushed(conn) {
                    self.dirty.push(conn);
                }
            }
        }
    }

    fn nat_io(&mut self, now: Instant, io: NatIo) {
        let reg = self.poll.registry();
        match io {
            NatIo::HoldForRelay { conn } => {
                self.bw.forget(conn_key(conn), now);
                if let Some(stream) = self.wire_socks.take(conn) {
                    self.relays.hold(reg, conn, stream);
                }
            }
            NatIo::StartCircuit { opener, joiner } => {
                self.bw.forget(conn_key(joiner), now);
                let Some(stream) = self.wire_socks.take(joiner) else {
                    self.relays.drop_held(reg, opener);
                    self.core.handle_circuit_closed(now);
                    return;
                };
                if !self.relays.start(reg, opener, (joiner, stream), now) {
                    self.core.handle_circuit_closed(now);
                }
            }
            NatIo::DropHeld { conn } => self.relays.drop_held(reg, conn),
            io @ (NatIo::DialBack { .. }
            | NatIo::PunchConnect { .. }
            | NatIo::PunchAccept { .. }
            | NatIo::DropPunches { .. }
            | NatIo::RelayOpen { .. }
            | NatIo::RelayJoin { .. }
            | NatIo::PmpSend { .. }
            | NatIo::UpnpSearch { .. }
            | NatIo::UpnpHttp { .. }) => {
                let mut out = Vec::new();
                self.nat
                    .open(reg, &mut self.tokens, self.local, now, io, &mut out);
                self.nat_events(now, out);
            }
        }
    }

    // ----- events of the reactor's own sockets --------------------------------------

    fn api_events(&mut self, now: Instant, events: Vec<ApiEvent>) {
        for ev in events {
            match ev {
                ApiEvent::Request { to, bytes, token } => {
                    if !self.backlog.api_room() {
                        let busy = reply::error("node busy: too many requests queued, try again");
                        self.deliver(now, to, busy);
                        continue;
                    }
                    self.backlog.push(Job::Api {
                        to,
                        bytes,
                        token,
                        fresh: false,
                    });
                    self.backlog.submit(&self.workers, &self.jobs);
                }
                ApiEvent::Closed { conn } => self.core.handle_api_gone(conn),
            }
        }
    }

    fn nat_events(&mut self, now: Instant, events: Vec<NatSockEvent>) {
        for ev in events {
            match ev {
                NatSockEvent::DialBackDone => self.core.handle_dial_back_done(now),
                NatSockEvent::PunchConnected { conn, mut stream } => {
                    if self.core.handle_punch_connected(now, conn) {
                        self.adopt(conn, stream, Side::Dialer, now);
                    } else {
                        let _ = self.poll.registry().deregister(&mut stream);
                    }
                }
                NatSockEvent::Accepted { peer, stream, via } => {
                    let conn = self.core.handle_nat_accepted(now, peer, via);
                    self.adopt(conn, stream, Side::Acceptor, now);
                }
                NatSockEvent::RelayReady { conn, stream } => {
                    self.core.handle_relay_ready(now, conn);
                    self.adopt(conn, stream, Side::Dialer, now);
                }
                NatSockEvent::RelayFailed { conn } => self.core.handle_relay_failed(now, conn),
                NatSockEvent::PmpDatagram(bytes) => self.core.handle_pmp_datagram(now, &bytes),
                NatSockEvent::PmpUnreachable => self.core.handle_pmp_unreachable(now),
                NatSockEvent::PmpFailed => self.core.handle_pmp_failed(),
                NatSockEvent::UpnpSsdp(b) => self.core.handle_upnp_ssdp(now, &b),
                NatSockEvent::UpnpHttp { id, response } => {
                    self.core.handle_upnp_http(now, id, response.as_deref())
                }
            }
        }
    }

    fn relay_events(&mut self, now: Instant, events: Vec<RelayEvent>) {
        for ev in events {
            match ev {
                RelayEvent::HeldGone(conn) => self.core.handle_relay_gone(now, conn),
                RelayEvent::CircuitClosed => self.core.handle_circuit_closed(now),
            }
        }
    }

    /// Hands a connected socket to the wire machinery as `conn`'s.
    fn adopt(&mut self, conn: ConnId, stream: mio::net::TcpStream, side: Side, now: Instant) {
        // An accepted socket may be our own punch that reached the listener: the core knows.
        let side = match self.core.conn_outgoing(conn) {
            Some(true) => Side::Dialer,
            Some(false) => Side::Acceptor,
            None => side,
        };
        // A punched or relayed dial must reach the node its records name, as a plain one does.
        let expect = match side {
            Side::Dialer => self.core.conn_expected_id(conn),
            Side::Acceptor => None,
        };
        if let Err(e) = self
            .wire_socks
            .adopt(self.poll.registry(), conn, stream, side, expect)
        {
            log::debug!("wire: cannot register connection {conn}: {e}");
            self.core.handle_wire_closed(now, conn);
            return;
        }
        self.wire_ready(conn, true, false, now);
    }

    fn drain_completions(&mut self, now: Instant) {
        self.completions.start_drain();
        while let Some(c) = self.completions.try_recv() {
            match c {
                Completion::Reply { to, bytes } => self.deliver(now, to, bytes),
                Completion::ViewWanted { to, bytes, token } => {
                    self.fresh_view(now);
                    self.backlog.push(Job::Api {
                        to,
                        bytes,
                        token,
                        fresh: true,
                    });
                    self.backlog.submit(&self.workers, &self.jobs);
                }
                Completion::Storage(done) => self.core.handle_storage(now, done),
                Completion::Stream(done) => self.http_stream_done(now, done),
                Completion::StreamPending {
                    to,
                    content,
                    chunks,
                } => self.http_stream_pending(now, to, content, chunks),
                Completion::StreamUnknown {
                    to,
                    content,
                    refusal,
                } => self.http_stream_unknown(now, to, content, refusal),
                Completion::Parsed { to, result } => match result {
                    Ok(req) if req.shows_rates() => {
                        let rates = self.bw.flow_rates(now);
                        self.core.handle_api_measured(now, to, req, &rates)
                    }
                    Ok(req) => self.core.handle_api(now, to, req),
                    Err(e) => self.deliver(now, to, reply::error(&e.message)),
                },
            }
            self.drain(now);
        }
        // Results free room in the pool: hand it what waits.
        self.backlog.submit(&self.workers, &self.jobs);
    }

    fn deliver(&mut self, now: Instant, to: ReplyTo, bytes: Vec<u8>) {
        self.shared.api.reply(&bytes);
        if self.http_deliver(now, to, &bytes) {
            return;
        }
        let mut out = Vec::new();
        self.api
            .deliver(self.poll.registry(), to, bytes, now, &mut out);
        self.api_events(now, out);
    }

    // ----- DHT datagrams ------------------------------------------------------------

    fn read_udp(&mut self, now: Instant) {
        // Larger than MAX_DATAGRAM so oversized datagrams are seen (and rejected) whole.
        let mut buf = [0u8; 2048];
        loop {
            match self.udp.recv_from(&mut buf) {
                Ok((n, from)) => {
                    let bytes = buf.get(..n).unwrap_or(&[]);
                    self.tracer.datagram(false, from, bytes);
                    self.core.handle_datagram(now, from, bytes);
                    self.drain(now);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // ICMP errors (port unreachable) surface here on Linux; they concern one
                // peer and the DHT's timeouts handle them.
                Err(e) => log::debug!("udp receive: {e}"),
            }
        }
    }

    fn read_lan(&mut self, now: Instant, t: mio::Token) {
        let mut got = Vec::new();
        if let Some(lan) = self.lan.as_mut() {
            lan.read(t, &mut got);
        }
        for (from, bytes) in got {
            self.core.handle_lan_datagram(now, from, &bytes);
            self.drain(now);
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

    // ----- wire connections ---------------------------------------------------------

    /// Accepts every waiting wire connection (edge-triggered: drain the listener); an
    /// accept error (EMFILE and the like) only ends this round.
    fn accept_wire(&mut self, now: Instant) {
        loop {
            match self.wire.accept() {
                Ok((stream, peer)) => {
                    let conn = self.core.handle_wire_accepted(now, peer);
                    self.adopt(conn, stream, Side::Acceptor, now);
                    self.drain(now);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::warn!("wire: accept failed: {e}");
                    break;
                }
            }
        }
    }

    fn wire_ready(&mut self, conn: ConnId, readable: bool, _writable: bool, now: Instant) {
        if !self.wire_socks.contains(conn) {
            return;
        }
        match self.wire_socks.connecting(conn) {
            Connecting::Pending => return,
            Connecting::Failed(e) => {
                log::debug!("wire: connect failed: {e}");
                self.wire_gone(conn, now);
                return;
            }
            Connecting::JustConnected => self.core.handle_wire_connected(now, conn),
            Connecting::Established => {}
        }
        if readable {
            if self.bw.limited(Dir::Down) {
                // Read when the fair scheduler says so (`serve_bandwidth`).
                let content = self.core.conn_content(conn);
                self.bw.wait(Dir::Down, conn_key(conn), content);
            } else {
                self.wire_read(conn, now, u64::MAX);
            }
        }
        self.wire_flush(conn, now);
    }

    /// Reads up to `budget` bytes from a wire connection and feeds the frames to the core.
    /// Returns true if the budget ran out before the socket was drained.
    fn wire_read(&mut self, conn: ConnId, now: Instant, budget: u64) -> bool {
        let r = self.wire_socks.read(conn, budget);
        self.account(Dir::Down, conn, r.moved, budget, now);
        // A read can make output sendable with no new frame from the core: a handshake
        // message, or the frames queued while the session was being set up.
        if self.wire_socks.has_output(conn) {
            self.dirty.push(conn);
        }
        for f in r.frames {
            self.tracer.frame(false, self.core.conn_addr(conn), &f);
            self.core.handle_wire_frame(now, conn, f);
        }
        if let Some(SecureError::WrongPeer { got, .. }) = r.secure_error {
            self.core.handle_wire_wrong_peer(conn, got);
        }
        if let Some(e) = r.error {
            self.core.handle_wire_error(now, conn, &e);
        } else if r.gone {
            self.wire_gone(conn, now);
        }
        r.exhausted
    }

    /// Writes what a wire connection has queued: at once when uploads are unlimited, else
    /// when the fair scheduler grants it bandwidth (`serve_bandwidth`).
    fn wire_flush(&mut self, conn: ConnId, now: Instant) {
        let has_output = self.wire_socks.has_output(conn);
        if !has_output && !self.wire_socks.is_closing(conn) {
            return;
        }
        if self.bw.limited(Dir::Up) && has_output {
            let content = self.core.conn_content(conn);
            self.bw.wait(Dir::Up, conn_key(conn), content);
            return;
        }
        self.wire_write(conn, now, u64::MAX);
    }

    /// Writes up to `budget` bytes of a connection's queue. Returns true if the budget ran
    /// out with output left.
    fn wire_write(&mut self, conn: ConnId, now: Instant, budget: u64) -> bool {
        let w = self.wire_socks.write(self.poll.registry(), conn, budget);
        self.account(Dir::Up, conn, w.moved, budget, now);
        for _ in 0..w.pieces {
            self.core.handle_piece_sent(now, conn);
        }
        if w.failed {
            self.bw.forget(conn_key(conn), now);
            self.core.handle_wire_closed(now, conn);
        } else if w.closed {
            self.bw.forget(conn_key(conn), now);
        }
        w.exhausted
    }

    /// The connection is gone (closed by the peer, failed): its socket goes, the core is
    /// told.
    fn wire_gone(&mut self, conn: ConnId, now: Instant) {
        self.bw.forget(conn_key(conn), now);
        self.wire_socks.remove(self.poll.registry(), conn);
        self.core.handle_wire_closed(now, conn);
    }

    /// Counts `moved` wire bytes of `conn` in direction `d`: the live totals of `status`,
    /// and the buckets if the move was budgeted (`budget < u64::MAX`).
    fn account(&mut self, d: Dir, conn: ConnId, moved: u64, budget: u64, now: Instant) {
        self.shared.wire_totals[d as usize].fetch_add(moved, Ordering::Relaxed);
        let content = self.core.conn_content(conn);
        if budget == u64::MAX {
            self.bw.count(d, conn_key(conn), content, moved, now);
        } else {
            self.bw.used(d, conn_key(conn), content, moved, now);
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
                let conn = ConnId::new(g.conn as u64);
                if !self.wire_socks.contains(conn) {
                    continue;
                }
                let content = self.core.conn_content(conn);
                let more = match d {
                    Dir::Down => self.wire_read(conn, now, g.bytes),
                    Dir::Up => self.wire_write(conn, now, g.bytes),
                };
                if more && self.wire_socks.contains(conn) {
                    self.bw.wait(d, g.conn, content);
                }
            }
        }
    }

    /// The node's ID (for the start-up banner).
    pub fn node_id(&self) -> crate::id::Id {
        self.core.node_id()
    }
}

/// The bandwidth scheduler's key for a connection.
fn conn_key(conn: ConnId) -> usize {
    conn.get() as usize
}
