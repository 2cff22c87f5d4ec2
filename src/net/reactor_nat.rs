//! The reactor's NAT-traversal glue (spec: `protocol-spec/nat.md`): it carries out the
//! actions of the sans-IO [`Nat`] core with real sockets. A child module of the reactor, so
//! that the loop itself only gains a few hooks:
//!
//! - dial-backs: a TCP connection to a prober's wire port carrying one PROBE frame;
//! - punches: TCP sockets bound to our own wire port (SO_REUSEPORT beside the listener)
//!   connecting to the peer while it connects to us, so each side's SYN opens its own NAT
//!   for the other's (a simultaneous open);
//! - relays: as a downloader or provider, a connection to the rendezvous announced with
//!   RELAY; as a rendezvous, circuits that copy bytes between two such connections, with
//!   limits on count, rate, bytes and duration;
//! - port mapping: the NAT-PMP client ([`PmpClient`]) on a UDP socket connected to the
//!   default gateway's port 5351 (the gateway comes from `/proc/net/route`); at shutdown the
//!   mappings are removed before the node exits.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Interest, Token};
use socket2::{Domain, Protocol, Socket, Type};

use super::Reactor;
use crate::id::Id;
use crate::nat::pmp::{self, PmpClient, PmpConfig, PmpEvent};
use crate::nat::{Action, Nat, Reachability, Strategy};
use crate::net::socket::dest_for;
use crate::proto::wire::{self, Message as WireMsg};
use crate::transfer::engine::ConnId;

/// How long a dial-back may take to connect and deliver its PROBE.
const DIALBACK_FOR: Duration = Duration::from_secs(3);
/// Relayed circuits: most bytes per second each way, most bytes in all, longest life.
const CIRCUIT_RATE: f64 = 4_000_000.0;
const CIRCUIT_BYTES: u64 = 1 << 30;
const CIRCUIT_LIFE: Duration = Duration::from_secs(600);
/// Bytes buffered per direction of a circuit.
const CIRCUIT_BUF: usize = 64 * 1024;
/// How long a stopping node waits for the gateway to confirm the mappings' removal.
const UNMAP_FOR: Duration = Duration::from_secs(2);

/// The NAT-PMP client and its socket, connected to the gateway (so that ICMP port
/// unreachable comes back as an error and datagrams from anyone else never arrive).
struct PmpIo {
    client: PmpClient,
    sock: mio::net::UdpSocket,
    token: Token,
    gateway: SocketAddr,
}

enum Kind {
    DialBack { nonce: u64 },
    PunchOut { conn: ConnId },
    PunchIn,
    RelayOpen { conn: ConnId, got: Vec<u8> },
    RelayJoin { peer: SocketAddr },
}

struct NatSock {
    stream: TcpStream,
    kind: Kind,
    deadline: Instant,
    /// The first frame to write once connected (PROBE, RELAY).
    hello: Vec<u8>,
    connected: bool,
}

struct Pending {
    token: Token,
    stream: TcpStream,
    target: Id,
    deadline: Instant,
}

struct Circuit {
    ends: [(Token, TcpStream); 2],
    /// `bufs[i]`: bytes read from end `i`, waiting to be written to the other end.
    bufs: [Vec<u8>; 2],
    started: Instant,
    moved: u64,
    allowance: f64,
    refilled: Instant,
    closed: bool,
}

/// The NAT core and the sockets it has asked for.
pub(super) struct NatIo {
    pub(super) nat: Nat,
    socks: HashMap<Token, NatSock>,
    /// Downloader punches by the provider's IP: its SYN may reach our listener instead
    /// (when our side is reachable or its NAT changes ports).
    punch_ips: HashMap<IpAddr, ConnId>,
    pending: HashMap<u64, Pending>,
    circuits: Vec<Circuit>,
    circuit_tokens: HashMap<Token, usize>,
    /// Plain connects being timed for the setup record.
    direct: HashMap<ConnId, (SocketAddr, Instant)>,
    /// When to test reachability even though peers do not agree on our address (behind a
    /// symmetric NAT every peer sees another port, so they never will).
    blind_probe: Option<Instant>,
    /// Port mapping, when the node has an IPv4 default gateway.
    pmp: Option<PmpIo>,
}

impl NatIo {
    pub(super) fn new(nat: Nat) -> Self {
        NatIo {
            nat,
            socks: HashMap::new(),
            punch_ips: HashMap::new(),
            pending: HashMap::new(),
            circuits: Vec::new(),
            circuit_tokens: HashMap::new(),
            direct: HashMap::new(),
            blind_probe: Some(Instant::now() + Duration::from_secs(6)),
            pmp: None,
        }
    }

    /// True if the token is one of the NAT layer's sockets.
    pub(super) fn owns(&self, t: Token) -> bool {
        self.socks.contains_key(&t)
            || self.pmp.as_ref().is_some_and(|p| p.token == t)
            || self.circuit_tokens.contains_key(&t)
            || self.pending.values().any(|p| p.token == t)
    }

    /// The next deadline of the NAT layer.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        let socks = self.socks.values().map(|s| s.deadline).min();
        let pending = self.pending.values().map(|p| p.deadline).min();
        // Circuits waiting for rate allowance are served every 50 ms.
        let circuits =
            (!self.circuits.is_empty()).then(|| Instant::now() + Duration::from_millis(50));
        [
            self.nat.poll_timeout(),
            socks,
            pending,
            circuits,
            self.blind_probe,
            self.pmp.as_ref().and_then(|p| p.client.poll_timeout()),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The `nat` object of the status reply.
    pub(super) fn status_json(&self) -> serde_json::Value {
        let c = self.nat.counters();
        serde_json::json!({
            "reachability": self.nat.reachability().name(),
            "rendezvous": self.nat.rendezvous().map(|a| a.to_string()),
            "rendezvous_clients": self.nat.clients(),
            "circuits": self.circuits.len(),
            "setups": {"direct": c.setups[0], "punched": c.setups[1], "relayed": c.setups[2]},
            "failures": c.failures,
            "introductions": c.introductions,
            "circuits_total": c.circuits,
            "port_mapping": self.pmp.as_ref().map(|p| serde_json::json!({
                "gateway": p.gateway.ip().to_string(),
                "state": p.client.state().name(),
                "external": p.client.external().map(|a| a.to_string()),
                "lifetime_s": p.client.lifetime().map(|l| l.as_secs()),
                "renewals": p.client.counters().renewals,
                "requests_sent": p.client.counters().sent,
            })),
            "connections": self.nat.setups().map(|s| serde_json::json!({
                "peer": s.peer.to_string(),
                "strategy": s.strategy.name(),
                "setup_ms": s.setup.as_secs_f64() * 1000.0,
            })).collect::<Vec<_>>(),
        })
    }
}

/// True for the wire frames the NAT layer handles (never passed to the engine).
pub(super) fn is_nat_frame(m: &WireMsg) -> bool {
    matches!(
        m,
        WireMsg::Probe(_) | WireMsg::Relay { .. } | WireMsg::RelayOk
    )
}

fn frame(m: &WireMsg) -> Vec<u8> {
    let mut v = Vec::with_capacity(m.encoded_len());
    m.encode(&mut v);
    v
}

/// A TCP socket bound to our wire port (beside the listener, SO_REUSEPORT), connecting
/// to `to`: one half of a simultaneous open.
fn punch_socket(local: SocketAddr, to: SocketAddr) -> io::Result<TcpStream> {
    let s = Socket::new(
        Domain::for_address(local),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    if local.is_ipv6() {
        s.set_only_v6(false)?;
    }
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    s.bind(&local.into())?;
    match s.connect(&dest_for(&local, to).into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    let std: std::net::TcpStream = s.into();
    Ok(TcpStream::from_std(std))
}

impl Reactor {
    /// Carries out the NAT core's actions.
    pub(super) fn nat_flush(&mut self, now: Instant) {
        while let Some(a) = self.nat.nat.poll_action() {
            match a {
                Action::Send { to, txid, msg } => self.dht.send_nat(to, txid, msg),
                Action::Reachability(r) => {
                    log::info!("nat: reachability {}", r.name());
                    self.dht.set_reachable(r != Reachability::Unreachable);
                    self.view_dirty = true;
                }
                Action::Rendezvous(rv) => {
                    self.dht.set_rendezvous(rv, now);
                    self.view_dirty = true;
                }
                Action::DialBack { addr, nonce } => {
                    let hello = frame(&WireMsg::Probe(nonce));
                    if !self.nat_open(
                        now,
                        TcpStream::connect(dest_for(&self.local, addr)),
                        Kind::DialBack { nonce },
                        hello,
                        DIALBACK_FOR,
                    ) {
                        self.nat.nat.dialback_done();
                    }
                }
                Action::PunchConnect { conn, addr } => {
                    self.nat.punch_ips.insert(addr.ip(), conn);
                    let s = punch_socket(self.local, addr);
                    if let Err(e) = &s {
                        log::debug!("nat: punch socket to {addr}: {e}");
                    }
                    self.nat_open(
                        now,
                        s,
                        Kind::PunchOut { conn },
                        Vec::new(),
                        Duration::from_secs(10),
                    );
                }
                Action::PunchAccept { addr } => {
                    let s = punch_socket(self.local, addr);
                    if let Err(e) = &s {
                        log::debug!("nat: punch socket to {addr}: {e}");
                    }
                    self.nat_open(now, s, Kind::PunchIn, Vec::new(), Duration::from_secs(10));
                }
                Action::RelayOpen {
                    conn,
                    rendezvous,
                    node,
                    nonce,
                } => {
                    self.nat_drop_punches(conn);
                    let hello = frame(&WireMsg::Relay { node, nonce });
                    let s = TcpStream::connect(dest_for(&self.local, rendezvous));
                    let kind = Kind::RelayOpen {
                        conn,
                        got: Vec::new(),
                    };
                    if !self.nat_open(now, s, kind, hello, Duration::from_secs(10)) {
                        self.nat.nat.attempt_failed(conn);
                    }
                }
                Action::RelayJoin {
                    rendezvous,
                    nonce,
                    peer,
                } => {
                    let hello = frame(&WireMsg::Relay {
                        node: self.dht.id(),
                        nonce,
                    });
                    let s = TcpStream::connect(dest_for(&self.local, rendezvous));
                    self.nat_open(
                        now,
                        s,
                        Kind::RelayJoin { peer },
                        hello,
                        Duration::from_secs(10),
                    );
                }
                Action::Failed { conn } => {
                    log::info!("nat: could not reach the provider of connection {conn}");
                    self.nat_drop_punches(conn);
                    self.library.engine.closed(now, conn);
                    self.drive_engine(now);
                }
            }
        }
        while let Some(t) = self.dht.poll_transmit() {
            if let Some((dest, payload)) = self.emulator.submit(now, t.dest, t.payload) {
                self.send_udp(dest, &payload);
            }
        }
    }

    fn nat_open(
        &mut self,
        now: Instant,
        s: io::Result<TcpStream>,
        kind: Kind,
        hello: Vec<u8>,
        life: Duration,
    ) -> bool {
        let mut stream = match s {
            Ok(s) => s,
            Err(e) => {
                log::debug!("nat: connect failed: {e}");
                return false;
            }
        };
        let token = self.alloc_token();
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) = self.poll.registry().register(&mut stream, token, interest) {
            log::debug!("nat: register: {e}");
            return false;
        }
        self.nat.socks.insert(
            token,
            NatSock {
                stream,
                kind,
                deadline: now + life,
                hello,
                connected: false,
            },
        );
        true
    }

    fn nat_drop_punches(&mut self, conn: ConnId) {
        let tokens: Vec<Token> = self
            .nat
            .socks
            .iter()
            .filter(|(_, s)| matches!(s.kind, Kind::PunchOut { conn: c } if c == conn))
            .map(|(t, _)| *t)
            .collect();
        for t in tokens {
            if let Some(mut s) = self.nat.socks.remove(&t) {
                let _ = self.poll.registry().deregister(&mut s.stream);
            }
        }
        self.nat.punch_ips.retain(|_, c| *c != conn);
    }

    /// A DHT datagram of the NAT layer.
    pub(super) fn nat_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        dg: crate::proto::dht::Datagram,
    ) {
        self.nat.nat.handle_datagram(now, from, dg);
        self.nat_flush(now);
    }

    /// Peers agree on our address: test whether we are reachable there.
    pub(super) fn nat_external(&mut self, now: Instant) {
        let me = self.dht.id();
        let peers = self.dht.routing_table().closest(&me, 4, None);
        self.nat.nat.external_address(now, peers);
        self.nat_flush(now);
    }

    /// The engine wants `conn` to `addr`: through the provider's rendezvous if its record
    /// named one. Returns false for a plain connect (which is then timed).
    pub(super) fn nat_connect(&mut self, now: Instant, conn: ConnId, addr: SocketAddr) -> bool {
        if let Some((node, rv)) = self.dht.rendezvous_of(&addr) {
            log::debug!("nat: {addr} is behind rendezvous {rv}: asking for an introduction");
            let ours = self.dht.external_addr();
            self.nat.nat.connect_via(now, conn, addr, node, rv, ours);
            self.nat_flush(now);
            return true;
        }
        self.nat.direct.insert(conn, (addr, now));
        false
    }

    /// A plain connect completed.
    pub(super) fn nat_direct_connected(&mut self, conn: ConnId, now: Instant) {
        if let Some((addr, t0)) = self.nat.direct.remove(&conn) {
            let took = now.saturating_duration_since(t0);
            self.nat.nat.record_setup(addr, Strategy::Direct, took);
        }
    }

    /// The engine closed `conn`: stop traversing for it.
    pub(super) fn nat_conn_closed(&mut self, conn: ConnId) {
        self.nat.direct.remove(&conn);
        if self.nat.nat.is_attempting(conn) {
            self.nat.nat.forget(conn);
            self.nat_drop_punches(conn);
        }
    }

    /// An accepted wire connection from `peer`: if it is the provider we are punching to,
    /// it is our outgoing connection (its SYN reached our listener). Returns the engine's
    /// connection it belongs to.
    pub(super) fn nat_accepted(&mut self, peer: SocketAddr, now: Instant) -> Option<ConnId> {
        let conn = *self.nat.punch_ips.get(&peer.ip())?;
        if !self.nat.nat.is_attempting(conn) {
            return None;
        }
        self.nat_drop_punches(conn);
        self.nat.nat.punch_connected(conn, now);
        Some(conn)
    }

    /// NAT frames read from a wire connection (which the engine knows as `conn`).
    pub(super) fn nat_frames(
        &mut self,
        token: Token,
        conn: ConnId,
        frames: Vec<WireMsg>,
        now: Instant,
    ) {
        // The first NAT frame decides what the connection is; the reactor stops at it.
        if let Some(f) = frames.into_iter().next() {
            match f {
                WireMsg::Probe(nonce) => {
                    if self.nat.nat.probe_received(now, nonce) {
                        log::info!("nat: a dial-back reached us: reachable");
                    }
                    self.nat_take_wire(token, conn, now);
                    self.nat_flush(now);
                }
                WireMsg::Relay { node, nonce } => {
                    let Some(stream) = self.nat_take_wire(token, conn, now) else {
                        return;
                    };
                    self.relay_frame(now, token, stream, node, nonce);
                }
                other => {
                    log::debug!("wire: unexpected {} from connection {conn}", other.name());
                    self.nat_take_wire(token, conn, now);
                }
            }
        }
    }

    /// Takes a socket away from the wire machinery (the engine forgets it).
    fn nat_take_wire(&mut self, token: Token, conn: ConnId, now: Instant) -> Option<TcpStream> {
        self.library.engine.closed(now, conn);
        self.bw.forget(token.0);
        let ws = self.wire_socks.remove(&token)?;
        self.wire_tokens.remove(&ws.conn);
        Some(ws.stream)
    }

    /// As a rendezvous: RELAY on an accepted connection opens a circuit or joins one.
    fn relay_frame(
        &mut self,
        now: Instant,
        token: Token,
        mut stream: TcpStream,
        node: Id,
        nonce: u64,
    ) {
        if let Some(p) = self.nat.pending.remove(&nonce) {
            if p.target != node {
                let _ = self.poll.registry().deregister(&mut stream);
                self.nat.pending.insert(nonce, p);
                return;
            }
            // Both ends are here: tell the opener, then copy bytes both ways.
            let ok = frame(&WireMsg::RelayOk);
            let circuit = Circuit {
                ends: [(p.token, p.stream), (token, stream)],
                bufs: [Vec::new(), ok],
                started: now,
                moved: 0,
                allowance: CIRCUIT_RATE / 10.0,
                refilled: now,
                closed: false,
            };
            let i = self.nat.circuits.len();
            self.nat.circuit_tokens.insert(p.token, i);
            self.nat.circuit_tokens.insert(token, i);
            self.nat.circuits.push(circuit);
            for (t, s) in self.nat.circuits[i].ends.iter_mut() {
                let _ =
                    self.poll
                        .registry()
                        .reregister(s, *t, Interest::READABLE | Interest::WRITABLE);
            }
            self.pump_circuit(i, now);
            return;
        }
        let opener = stream.peer_addr().unwrap_or(self.local);
        let opener = crate::proto::codec::canonical_addr(opener);
        if self.nat.nat.relay_open(now, &node, nonce, opener) {
            self.nat.pending.insert(
                nonce,
                Pending {
                    token,
                    stream,
                    target: node,
                    deadline: now + Duration::from_secs(5),
                },
            );
            self.nat_flush(now);
        } else {
            let err = frame(&WireMsg::Error {
                code: wire::error_code::TOO_MANY_CONNECTIONS,
                text: "cannot relay to that node".into(),
            });
            let _ = stream.write(&err);
            let _ = self.poll.registry().deregister(&mut stream);
        }
    }

    /// Readiness of one of the NAT layer's sockets.
    pub(super) fn nat_ready(&mut self, token: Token, now: Instant) {
        if self.nat.pmp.as_ref().is_some_and(|p| p.token == token) {
            self.pmp_read(now);
            self.pmp_flush(now);
            return;
        }
        if let Some(&i) = self.nat.circuit_tokens.get(&token) {
            self.pump_circuit(i, now);
            self.reap_circuits();
            return;
        }
        if self.nat.pending.values().any(|p| p.token == token) {
            // The opener may only wait; if it closed, the circuit never comes.
            let nonce = self
                .nat
                .pending
                .iter()
                .find(|(_, p)| p.token == token)
                .map(|(n, _)| *n);
            if let Some(n) = nonce {
                let mut buf = [0u8; 64];
                // Anything but "nothing yet" (EOF, an error, or bytes before RELAY_OK,
                // which the opener must not send) ends the wait.
                let gone = match self.nat.pending.get_mut(&n) {
                    Some(p) => !matches!(
                        p.stream.read(&mut buf),
                        Err(ref e) if e.kind() == io::ErrorKind::WouldBlock
                    ),
                    None => false,
                };
                if gone {
                    if let Some(mut p) = self.nat.pending.remove(&n) {
                        let _ = self.poll.registry().deregister(&mut p.stream);
                        self.nat.nat.circuit_closed();
                    }
                }
            }
            return;
        }
        let Some(s) = self.nat.socks.get_mut(&token) else {
            return;
        };
        if !s.connected {
            match s.stream.take_error() {
                Ok(None) => {}
                Ok(Some(e)) | Err(e) => {
                    log::debug!("nat: connect failed: {e}");
                    self.nat_sock_failed(token, now);
                    return;
                }
            }
            match s.stream.peer_addr() {
                Ok(_) => s.connected = true,
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(e) => {
                    log::debug!("nat: connect failed: {e}");
                    self.nat_sock_failed(token, now);
                    return;
                }
            }
            if !s.hello.is_empty() {
                // A small first frame on a fresh connection: one write takes it.
                let hello = std::mem::take(&mut s.hello);
                if s.stream.write_all(&hello).is_err() {
                    self.nat_sock_failed(token, now);
                    return;
                }
            }
            let _ = s.stream.set_nodelay(true);
        }
        let Some(s) = self.nat.socks.remove(&token) else {
            return;
        };
        match s.kind {
            Kind::DialBack { .. } => {
                let mut stream = s.stream;
                let _ = stream.flush();
                let _ = stream.shutdown(std::net::Shutdown::Write);
                let _ = self.poll.registry().deregister(&mut stream);
                self.nat.nat.dialback_done();
            }
            Kind::PunchOut { conn } => {
                if !self.nat.nat.is_attempting(conn) {
                    let mut stream = s.stream;
                    let _ = self.poll.registry().deregister(&mut stream);
                    return;
                }
                self.nat_drop_punches(conn);
                self.nat.nat.punch_connected(conn, now);
                self.adopt_wire(token, s.stream, conn, true, now);
            }
            Kind::PunchIn | Kind::RelayJoin { .. } => {
                let peer = match s.kind {
                    Kind::RelayJoin { peer } => peer,
                    _ => s.stream.peer_addr().unwrap_or(self.local),
                };
                let conn = self
                    .library
                    .engine
                    .accepted(now, crate::proto::codec::canonical_addr(peer));
                self.adopt_wire(token, s.stream, conn, false, now);
            }
            Kind::RelayOpen { conn, mut got } => {
                let mut stream = s.stream;
                // Read RELAY_OK (5 bytes) and nothing more: what follows is the provider's.
                let ok = frame(&WireMsg::RelayOk);
                let mut failed = false;
                while got.len() < ok.len() {
                    let mut b = [0u8; 5];
                    let want = ok.len() - got.len();
                    match stream.read(&mut b[..want]) {
                        Ok(0) => {
                            failed = true;
                            break;
                        }
                        Ok(n) => got.extend_from_slice(&b[..n]),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(_) => {
                            failed = true;
                            break;
                        }
                    }
                }
                if failed || !ok.starts_with(&got) {
                    log::debug!("nat: relay refused for connection {conn}");
                    let _ = self.poll.registry().deregister(&mut stream);
                    self.nat.nat.attempt_failed(conn);
                    self.nat_flush(now);
                    return;
                }
                if got.len() < ok.len() {
                    self.nat.socks.insert(
                        token,
                        NatSock {
                            stream,
                            kind: Kind::RelayOpen { conn, got },
                            deadline: s.deadline,
                            hello: Vec::new(),
                            connected: true,
                        },
                    );
                    return;
                }
                self.nat.nat.relay_ready(conn, now);
                self.adopt_wire(token, stream, conn, true, now);
            }
        }
    }

    /// Hands a connected socket to the wire machinery: as our outgoing connection `conn`
    /// (we send the HANDSHAKE) or as an accepted one.
    fn adopt_wire(
        &mut self,
        token: Token,
        mut stream: TcpStream,
        conn: ConnId,
        outgoing: bool,
        now: Instant,
    ) {
        let _ = self
            .poll
            .registry()
            .reregister(&mut stream, token, Interest::READABLE);
        self.track_wire(token, conn, stream, false);
        if outgoing {
            self.library.engine.connected(now, conn);
            self.drive_engine(now);
        }
        self.wire_ready(token, true, false, now);
    }

    fn nat_sock_failed(&mut self, token: Token, now: Instant) {
        let Some(mut s) = self.nat.socks.remove(&token) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut s.stream);
        match s.kind {
            Kind::DialBack { nonce } => {
                log::debug!("nat: dial-back {nonce:016x} did not connect");
                self.nat.nat.dialback_done();
            }
            // The punch may still succeed from the other side (its SYN to our listener)
            // until the core's deadline moves on to a relay.
            Kind::PunchOut { .. } | Kind::PunchIn | Kind::RelayJoin { .. } => {}
            Kind::RelayOpen { conn, .. } => {
                self.nat.nat.attempt_failed(conn);
                self.nat_flush(now);
            }
        }
    }

    /// Starts port mapping (before the loop): finds the default gateway and asks it with
    /// NAT-PMP. Without an IPv4 gateway (a public host, an IPv6-only node) there is nothing
    /// to ask, which is not an error.
    pub(super) fn nat_start_mapping(&mut self, now: Instant) {
        let cfg = self.nat.nat.config();
        if !cfg.enabled
            || !cfg.port_mapping
            || self.local.is_ipv6() && !self.local.ip().is_unspecified()
        {
            return;
        }
        let lifetime = cfg.mapping_lifetime;
        let gateway = match std::fs::read_to_string("/proc/net/route") {
            Ok(text) => pmp::default_gateway(&text),
            Err(e) => {
                log::debug!("nat-pmp: cannot read /proc/net/route: {e}");
                None
            }
        };
        let Some(gw) = gateway else {
            log::debug!("nat-pmp: no IPv4 default gateway: no port mapping");
            return;
        };
        let gateway = SocketAddr::new(IpAddr::V4(gw), pmp::SERVER_PORT);
        let sock = std::net::UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
            .and_then(|s| s.connect(gateway).map(|()| s))
            .and_then(|s| s.set_nonblocking(true).map(|()| s));
        let mut sock = match sock {
            Ok(s) => mio::net::UdpSocket::from_std(s),
            Err(e) => {
                log::warn!("nat-pmp: cannot open a socket to the gateway {gateway}: {e}");
                return;
            }
        };
        let token = self.alloc_token();
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut sock, token, Interest::READABLE)
        {
            log::warn!("nat-pmp: cannot register the gateway socket: {e}");
            return;
        }
        log::info!(
            "nat-pmp: asking the gateway {gw} to map port {}",
            self.local.port()
        );
        let mut client = PmpClient::new(PmpConfig {
            port: self.local.port(),
            lifetime,
            ..PmpConfig::default()
        });
        client.start(now);
        self.nat.pmp = Some(PmpIo {
            client,
            sock,
            token,
            gateway,
        });
        self.pmp_flush(now);
    }

    /// Removes the mappings before the node exits: waits up to [`UNMAP_FOR`] for the
    /// gateway's answers (the mappings expire on their own if it never answers).
    pub(super) fn nat_stop_mapping(&mut self) {
        let now = Instant::now();
        let Some(p) = self.nat.pmp.as_mut() else {
            return;
        };
        if !p.client.shutdown(now) {
            return;
        }
        let until = now + UNMAP_FOR;
        let mut events = mio::Events::with_capacity(64);
        loop {
            let now = Instant::now();
            self.pmp_flush(now);
            let Some(p) = self.nat.pmp.as_mut() else {
                return;
            };
            if p.client.is_done() || now >= until {
                break;
            }
            let wake = p.client.poll_timeout().unwrap_or(until).min(until);
            match self
                .poll
                .poll(&mut events, Some(wake.saturating_duration_since(now)))
            {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::debug!("nat-pmp: poll while removing mappings: {e}");
                    break;
                }
            }
            // Other sockets' events are dropped: the node is stopping.
            let now = Instant::now();
            self.pmp_read(now);
            if let Some(p) = self.nat.pmp.as_mut() {
                if p.client.poll_timeout().is_some_and(|t| t <= now) {
                    p.client.handle_timeout(now);
                }
            }
        }
        if let Some(p) = &self.nat.pmp {
            if p.client.is_done() {
                log::info!("nat-pmp: mappings removed");
            } else {
                log::info!(
                    "nat-pmp: the gateway did not confirm the removal; the mappings will expire"
                );
            }
        }
    }

    /// Reads what the gateway sent.
    fn pmp_read(&mut self, now: Instant) {
        let Some(p) = self.nat.pmp.as_mut() else {
            return;
        };
        let mut buf = [0u8; 64];
        loop {
            match p.sock.recv(&mut buf) {
                Ok(n) => {
                    let bytes = buf.get(..n).unwrap_or(&[]);
                    if let Err(e) = p.client.handle_datagram(now, bytes) {
                        log::debug!("nat-pmp: from {}: {e}", p.gateway);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    p.client.handle_unreachable(now);
                }
                Err(e) => {
                    log::debug!("nat-pmp: receive from {}: {e}", p.gateway);
                    break;
                }
            }
        }
    }

    /// Drains the NAT-PMP client: datagrams to the gateway, mapping events to the NAT core.
    fn pmp_flush(&mut self, now: Instant) {
        let mut changed = Vec::new();
        if let Some(p) = self.nat.pmp.as_mut() {
            loop {
                while let Some(bytes) = p.client.poll_transmit() {
                    match p.sock.send(&bytes) {
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                            p.client.handle_unreachable(now);
                        }
                        // Lost like a datagram on the wire; the client retransmits.
                        Err(e) => log::debug!("nat-pmp: send to {}: {e}", p.gateway),
                    }
                }
                let Some(ev) = p.client.poll_event() else {
                    break;
                };
                match ev {
                    PmpEvent::Mapped {
                        external,
                        port,
                        lifetime,
                    } => {
                        log::info!(
                            "nat-pmp: {external}:{port} (udp and tcp) maps to us for {} s",
                            lifetime.as_secs()
                        );
                        changed.push(true);
                    }
                    PmpEvent::Unavailable { reason } => {
                        log::info!("nat-pmp: no port mapping: {reason}");
                        changed.push(false);
                    }
                    PmpEvent::Removed => log::debug!("nat-pmp: removal done"),
                }
            }
        }
        for mapped in changed {
            self.nat.nat.set_mapped(now, mapped);
            self.nat_flush(now);
        }
    }

    /// Timers of the NAT layer: the core's, sockets that took too long, circuits.
    pub(super) fn nat_timeouts(&mut self, now: Instant) {
        if let Some(p) = self.nat.pmp.as_mut() {
            if p.client.poll_timeout().is_some_and(|t| t <= now) {
                p.client.handle_timeout(now);
                self.pmp_flush(now);
            }
        }
        log::trace!(
            "nat: blind probe check {:?}",
            self.nat
                .blind_probe
                .map(|t| t.saturating_duration_since(now))
        );
        if self.nat.blind_probe.is_some_and(|t| t <= now) {
            if self.nat.nat.reachability() != Reachability::Unknown {
                self.nat.blind_probe = None;
            } else if self.dht.routing_table().is_empty() || self.dht.external_addr().is_some() {
                self.nat.blind_probe = Some(now + Duration::from_secs(6));
            } else {
                log::info!("nat: peers disagree on our address: testing reachability anyway");
                self.nat.blind_probe = None;
                self.nat_external(now);
            }
        }
        if self.nat.nat.poll_timeout().is_some_and(|t| t <= now) {
            self.nat.nat.handle_timeout(now);
            self.nat_flush(now);
        }
        let late: Vec<Token> = self
            .nat
            .socks
            .iter()
            .filter(|(_, s)| s.deadline <= now)
            .map(|(t, _)| *t)
            .collect();
        for t in late {
            self.nat_sock_failed(t, now);
        }
        let late: Vec<u64> = self
            .nat
            .pending
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(n, _)| *n)
            .collect();
        for n in late {
            if let Some(mut p) = self.nat.pending.remove(&n) {
                let _ = self.poll.registry().deregister(&mut p.stream);
                self.nat.nat.circuit_closed();
            }
        }
        for i in 0..self.nat.circuits.len() {
            self.pump_circuit(i, now);
        }
        self.reap_circuits();
    }

    /// Copies what it can between the two ends of circuit `i`, within its limits.
    fn pump_circuit(&mut self, i: usize, now: Instant) {
        let Some(c) = self.nat.circuits.get_mut(i) else {
            return;
        };
        if c.closed {
            return;
        }
        let dt = now.saturating_duration_since(c.refilled).as_secs_f64();
        c.refilled = now;
        c.allowance = (c.allowance + dt * CIRCUIT_RATE).min(CIRCUIT_RATE / 10.0);
        if now.saturating_duration_since(c.started) > CIRCUIT_LIFE || c.moved > CIRCUIT_BYTES {
            c.closed = true;
            return;
        }
        let mut buf = vec![0u8; 16 * 1024];
        for from in 0..2 {
            let to = 1 - from;
            // Read from `from` while there is room and allowance.
            loop {
                let room = CIRCUIT_BUF.saturating_sub(c.bufs[from].len());
                let allow = c.allowance.max(0.0) as usize;
                let n = room.min(allow).min(buf.len());
                if n == 0 {
                    break;
                }
                match c.ends[from].1.read(&mut buf[..n]) {
                    Ok(0) => {
                        c.closed = true;
                        break;
                    }
                    Ok(k) => {
                        c.bufs[from].extend_from_slice(&buf[..k]);
                        c.allowance -= k as f64;
                        c.moved += k as u64;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => {
                        c.closed = true;
                        break;
                    }
                }
            }
            // Write it to `to`.
            while !c.bufs[from].is_empty() {
                match c.ends[to].1.write(&c.bufs[from]) {
                    Ok(0) => {
                        c.closed = true;
                        break;
                    }
                    Ok(k) => {
                        c.bufs[from].drain(..k);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => {
                        c.closed = true;
                        break;
                    }
                }
            }
        }
    }

    fn reap_circuits(&mut self) {
        if !self.nat.circuits.iter().any(|c| c.closed) {
            return;
        }
        let old = std::mem::take(&mut self.nat.circuits);
        self.nat.circuit_tokens.clear();
        for mut c in old {
            if c.closed {
                for (_, s) in c.ends.iter_mut() {
                    // Flush what is left, best effort, then close both ends.
                    let _ = s.flush();
                    let _ = self.poll.registry().deregister(s);
                }
                self.nat.nat.circuit_closed();
                continue;
            }
            let i = self.nat.circuits.len();
            for (t, _) in &c.ends {
                self.nat.circuit_tokens.insert(*t, i);
            }
            self.nat.circuits.push(c);
        }
    }
}
