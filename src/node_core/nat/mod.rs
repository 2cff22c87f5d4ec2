//! NAT traversal inside the node (spec: `protocol-spec/nat.md`): what joins the sans-IO
//! [`Nat`] core and the NAT-PMP client to the DHT and the transfer engine, and every decision
//! about the sockets they need. The driver only carries out [`NatIo`] outputs and reports
//! what its sockets did.
//!
//! - **Reachability**: once peers agree on our address (or, behind a symmetric NAT where
//!   they never will, after a while anyway), a few close peers are asked to dial back.
//! - **Connecting**: a provider whose record names a rendezvous is reached through it
//!   ([`Nat::connect_via`]: introduction, a simultaneous open from our wire port, a relay as
//!   the last resort); others directly, and the time that took is recorded.
//! - **As a rendezvous**: a RELAY on an accepted connection either opens a circuit (the
//!   socket is held until the provider joins) or joins the circuit it names.
//! - **Port mapping**: the NAT-PMP client asks the default gateway, renews, and removes
//!   the mapping when the node stops.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::output::{NatIo, Output};
use crate::conn::ConnId;
use crate::dht::diversity::is_local;
use crate::dht::Dht;
use crate::id::Id;
use crate::nat::lan::Lan;
use crate::nat::pmp::Gateway;
use crate::nat::upnp::UpnpClient;
use crate::nat::{Action, Nat, Reachability, Strategy};
use crate::proto::codec::canonical_addr;
use crate::proto::dht::Contact;
use crate::proto::wire::{self, Message as WireMsg};
use crate::transfer::engine::{Engine, WireAction};

mod mapping;
use mapping::Pmp;

/// How long after start the reachability test runs even though peers do not agree on our
/// address (behind a symmetric NAT every peer sees another port, so they never will).
const BLIND_PROBE_AFTER: Duration = Duration::from_secs(6);
/// How long a plain connect may wait for the peer's SYN-ACK (two SYNs: Linux sends the second
/// 1 s after the first). A provider whose firewall drops SYNs was waited on for the engine's
/// whole 10 s handshake timeout, while the DHT may meanwhile have learnt its rendezvous
/// (issue 20's IPv6 lab: a seeder asked just after it started, 16 s).
const PLAIN_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How soon to look for reachability-test candidates again when peers agreed on our address
/// while the routing table was still empty.
const CANDIDATES_RECHECK: Duration = Duration::from_millis(250);
/// How long a rendezvous holds a RELAY opener waiting for the provider to join.
const RELAY_WAIT: Duration = Duration::from_secs(5);

/// How a wire connection was made, as the peer view (`transfer_peers`) shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnPath {
    /// A plain TCP connection: we dialled the peer's address, or it dialled ours.
    Direct,
    /// It dialled us through the port mapping our router keeps (NAT-PMP).
    Mapped,
    /// A simultaneous open through both NATs, after a rendezvous introduced us.
    Punched,
    /// Carried end to end through a rendezvous.
    Relayed,
}

impl ConnPath {
    /// Lower-case name for replies.
    pub fn name(self) -> &'static str {
        match self {
            ConnPath::Direct => "direct",
            ConnPath::Mapped => "mapped",
            ConnPath::Punched => "punched",
            ConnPath::Relayed => "relayed",
        }
    }
}

impl From<Strategy> for ConnPath {
    fn from(s: Strategy) -> Self {
        match s {
            Strategy::Direct => ConnPath::Direct,
            Strategy::Punched => ConnPath::Punched,
            Strategy::Relayed => ConnPath::Relayed,
        }
    }
}

/// A RELAY opener held by us as a rendezvous, until the provider joins.
struct HeldOpener {
    conn: ConnId,
    target: Id,
    deadline: Instant,
}

/// The node's NAT traversal (see the module docs).
pub struct NatGlue {
    nat: Nat,
    node_id: Id,
    local: SocketAddr,
    /// Downloader punches by the provider's IP: its SYN may reach our listener instead of
    /// our punch socket (when our side is reachable or its NAT changes ports).
    punch_ips: HashMap<IpAddr, ConnId>,
    /// Plain connects being timed for the setup record.
    direct: HashMap<ConnId, (SocketAddr, Instant)>,
    /// When to test reachability even though peers do not agree on our address (or, when
    /// they agreed before we had anyone to ask, when to look for someone again).
    blind_probe: Option<Instant>,
    /// How long until that next look for someone to ask (doubling up to 6 s).
    candidates_wait: Duration,
    pmp: Option<Pmp>,
    /// The UPnP-IGD client, started when PCP and NAT-PMP found no server.
    upnp: Option<UpnpClient>,
    /// The gateway port mapping started with (UPnP needs our address on its LAN).
    gateway: Option<Gateway>,
    /// As a rendezvous: RELAY openers by circuit number.
    held: HashMap<u64, HeldOpener>,
    /// How each open wire connection was made (forgotten when it closes, and checked
    /// against the engine's connections at every timer).
    paths: HashMap<ConnId, ConnPath>,
}

/// Where NAT decisions land: the DHT (signalling, flags), the engine (connections) and the
/// outputs for the driver.
pub struct Parts<'a> {
    /// The DHT.
    pub dht: &'a mut Dht,
    /// The transfer engine.
    pub engine: &'a mut Engine,
    /// The core's output queue.
    pub out: &'a mut std::collections::VecDeque<Output>,
    /// LAN discovery, when it runs: nodes on our link are reached over it and never asked
    /// to test our reachability (their dial-back would not cross our router).
    pub lan: Option<&'a Lan>,
}

impl Parts<'_> {
    /// Whether `addr` is a node found on our link.
    fn on_lan(&self, addr: &SocketAddr) -> bool {
        self.lan.is_some_and(|l| l.is_peer_addr(addr))
    }
}

impl NatGlue {
    /// NAT traversal for the node `node_id` listening at `local`.
    pub fn new(nat: Nat, node_id: Id, local: SocketAddr, now: Instant) -> Self {
        NatGlue {
            nat,
            node_id,
            local,
            punch_ips: HashMap::new(),
            direct: HashMap::new(),
            blind_probe: Some(now + BLIND_PROBE_AFTER),
            candidates_wait: CANDIDATES_RECHECK,
            pmp: None,
            upnp: None,
            gateway: None,
            held: HashMap::new(),
            paths: HashMap::new(),
        }
    }

    // ----- the NAT core's actions ---------------------------------------------------

    /// Carries out the NAT core's actions.
    pub fn flush(&mut self, p: &mut Parts<'_>, now: Instant) {
        while let Some(a) = self.nat.poll_action() {
            match a {
                Action::Send {
                    to,
                    txid,
                    msg,
                    flags,
                } => p.dht.send_nat(to, txid, msg, flags),
                Action::Reachability(r) => {
                    log::info!("nat: reachability {}", r.name());
                    p.dht.set_reachable(r != Reachability::Unreachable);
                    p.out.push_back(Output::ViewChanged);
                }
                Action::Rendezvous(rv) => {
                    p.dht.set_rendezvous(rv, now);
                    p.out.push_back(Output::ViewChanged);
                }
                Action::DialBack { addr, nonce } => {
                    let hello = frame(&WireMsg::Probe(nonce));
                    p.out
                        .push_back(Output::Nat(NatIo::DialBack { addr, hello }));
                }
                Action::PunchConnect { conn, addr } => {
                    self.punch_ips.insert(addr.ip(), conn);
                    p.out
                        .push_back(Output::Nat(NatIo::PunchConnect { conn, addr }));
                }
                Action::PunchAccept { addr } => {
                    p.out.push_back(Output::Nat(NatIo::PunchAccept { addr }));
                }
                Action::RelayOpen {
                    conn,
                    rendezvous,
                    node,
                    nonce,
                } => {
                    self.drop_punches(p, conn);
                    let hello = frame(&WireMsg::Relay { node, nonce });
                    p.out.push_back(Output::Nat(NatIo::RelayOpen {
                        conn,
                        rendezvous,
                        hello,
                    }));
                }
                Action::RelayJoin {
                    rendezvous,
                    nonce,
                    peer,
                } => {
                    let hello = frame(&WireMsg::Relay {
                        node: self.node_id,
                        nonce,
                    });
                    p.out.push_back(Output::Nat(NatIo::RelayJoin {
                        rendezvous,
                        hello,
                        peer,
                    }));
                }
                Action::Failed { conn } => {
                    log::info!("nat: could not reach the provider of connection {conn}");
                    if let Some(addr) = p.engine.conn_addr(conn) {
                        p.dht.forget_rendezvous(&addr);
                    }
                    self.drop_punches(p, conn);
                    p.engine.closed(now, conn);
                }
            }
        }
    }

    fn drop_punches(&mut self, p: &mut Parts<'_>, conn: ConnId) {
        self.punch_ips.retain(|_, c| *c != conn);
        p.out.push_back(Output::Nat(NatIo::DropPunches { conn }));
    }

    // ----- inputs from the DHT ------------------------------------------------------

    /// A DHT datagram of the NAT layer (`DhtEvent::Nat`).
    pub fn datagram(
        &mut self,
        p: &mut Parts<'_>,
        now: Instant,
        from: SocketAddr,
        dg: crate::proto::dht::Datagram,
    ) {
        self.nat.handle_datagram(now, from, dg);
        self.flush(p, now);
    }

    /// Peers agree on our address: test whether we are reachable there. The peers asked to
    /// dial back (the first two) and to be our rendezvous (the first, then the next) must
    /// reach us from outside our network: a node on our own link would dial back across the
    /// LAN and find us "reachable" behind a router that lets nobody in (the office lab
    /// caught it). So never a node LAN discovery found, never a local address while ours is
    /// global, never one in our own IPv6 /64 (a neighbour behind the same firewall); and one
    /// of the two asked to dial back saw us at our public address. The closest contacts
    /// come first, so that dial-backs and rendezvous spread over the network rather than
    /// all landing on the bootstrap nodes (the first to see every newcomer).
    pub fn external(&mut self, p: &mut Parts<'_>, now: Instant) {
        let ours = p.dht.external_addr();
        let outside = |c: &Contact| {
            let ip = canonical_addr(c.addr).ip();
            let same_net = match (ours.map(|o| canonical_addr(o).ip()), ip) {
                (Some(IpAddr::V6(o)), IpAddr::V6(c)) => o.segments()[..4] == c.segments()[..4],
                (Some(o), c) => !is_local(o) && is_local(c),
                (None, _) => false,
            };
            !p.on_lan(&c.addr) && !same_net
        };
        let witnesses = p.dht.address_witnesses();
        let mut peers = p
            .dht
            .routing_table()
            .closest_where(&self.node_id, 256, None, outside);
        let witnessed = |c: &Contact| witnesses.contains(&c.id);
        if !peers.iter().take(2).any(witnessed) {
            if let Some(i) = peers.iter().position(witnessed) {
                let w = peers.remove(i);
                peers.insert(1.min(peers.len()), w);
            }
        }
        peers.truncate(4);
        self.nat.external_address(now, peers);
        if self.nat.lacks_candidates() {
            // Peers agreed on our address before any contact had proven its key: ask again
            // as soon as the table fills, not at the next blind-probe check 6 s on (a node
            // sharing at once announced without its rendezvous that much longer). Backing
            // off, so that a node with no candidate at all does not wake 4 times a second.
            self.blind_probe = Some(now + self.candidates_wait);
            self.candidates_wait = (self.candidates_wait * 2).min(BLIND_PROBE_AFTER);
        } else {
            self.candidates_wait = CANDIDATES_RECHECK;
        }
        self.flush(p, now);
    }

    // ----- wire connections ---------------------------------------------------------

    /// The engine wants `conn` to `addr`. Through the provider's rendezvous if its record
    /// named one (true: nothing for the driver to connect now); otherwise a plain connect,
    /// which is timed (false).
    pub fn connect(
        &mut self,
        p: &mut Parts<'_>,
        now: Instant,
        conn: ConnId,
        addr: SocketAddr,
    ) -> bool {
        // A node on our link is reached over it, whatever rendezvous its records name: both
        // sides may sit behind one router that does not hairpin.
        let rendezvous = p.dht.rendezvous_of(&addr).filter(|_| !p.on_lan(&addr));
        if let Some((node, rv)) = rendezvous {
            if self.nat.is_reaching(&node) {
                log::debug!("nat: {node} is being reached already: not again at {addr}");
                p.engine.closed(now, conn);
                return true;
            }
            log::debug!("nat: {addr} is behind rendezvous {rv}: asking for an introduction");
            let ours = p.dht.external_addr();
            self.nat.set_ports_vary(p.dht.ports_vary());
            self.nat.connect_via(now, conn, addr, node, rv, ours);
            self.flush(p, now);
            return true;
        }
        self.direct.insert(conn, (addr, now));
        false
    }

    /// A provider search for `content` ended, naming `providers`: a plain connect still
    /// waiting on one of them that the search found behind a rendezvous is given up, and the
    /// provider dialled again, through the rendezvous (nat.md section 6). Its first records
    /// went out before it knew it was unreachable; its firewall drops our SYNs.
    pub fn rendezvous_learnt(
        &mut self,
        p: &mut Parts<'_>,
        now: Instant,
        content: &Id,
        providers: &[SocketAddr],
    ) {
        let behind: Vec<(ConnId, SocketAddr)> = self
            .direct
            .iter()
            .filter(|(_, (a, _))| providers.contains(a) && !p.on_lan(a))
            .filter(|(_, (a, _))| p.dht.rendezvous_of(a).is_some())
            .map(|(c, (a, _))| (*c, *a))
            .collect();
        for (conn, addr) in behind {
            self.direct.remove(&conn);
            if p.engine.abandon_connect(now, conn) {
                log::info!("nat: {addr} is behind a rendezvous: its plain connect given up");
                p.engine.dial_again(now, content, addr);
            }
        }
    }

    /// A plain connect completed.
    pub fn direct_connected(&mut self, conn: ConnId, now: Instant) {
        self.paths.insert(conn, ConnPath::Direct);
        if let Some((addr, t0)) = self.direct.remove(&conn) {
            let took = now.saturating_duration_since(t0);
            self.nat.record_setup(addr, Strategy::Direct, took);
        }
    }

    /// Plain connects under way (their start times, for the set-up figures).
    pub fn direct_pending(&self) -> usize {
        self.direct.len()
    }

    /// True while node `node` is being reached through its rendezvous.
    pub fn is_reaching(&self, node: &Id) -> bool {
        self.nat.is_reaching(node)
    }

    /// Connections whose path is remembered.
    pub fn paths_known(&self) -> usize {
        self.paths.len()
    }

    /// The engine closed `conn`, or its socket failed: stop traversing for it.
    pub fn conn_closed(&mut self, p: &mut Parts<'_>, conn: ConnId) {
        self.direct.remove(&conn);
        self.paths.remove(&conn);
        if self.nat.is_attempting(conn) {
            self.nat.forget(conn);
            self.drop_punches(p, conn);
        }
    }

    /// An accepted wire connection from `peer`: if it is the provider we are punching to, it
    /// is our outgoing connection (its SYN reached our listener). Returns that connection.
    pub fn accepted(
        &mut self,
        p: &mut Parts<'_>,
        peer: SocketAddr,
        now: Instant,
    ) -> Option<ConnId> {
        let conn = *self.punch_ips.get(&peer.ip())?;
        if !self.nat.is_attempting(conn) {
            return None;
        }
        self.drop_punches(p, conn);
        self.nat.punch_connected(conn, now);
        self.paths.insert(conn, ConnPath::Punched);
        Some(conn)
    }

    /// A peer connected to us (`conn`, the engine's): through our listener (`via` None:
    /// through our port mapping if the router keeps one, else directly), or through a punch
    /// or a relayed circuit it asked for.
    pub fn incoming(&mut self, conn: ConnId, via: Option<Strategy>) {
        let path = match via {
            Some(s) => s.into(),
            None if self.nat.reachability() == Reachability::Mapped => ConnPath::Mapped,
            None => ConnPath::Direct,
        };
        self.paths.insert(conn, path);
    }

    /// How `conn` was made, if it is open and was made at all.
    pub fn conn_path(&self, conn: ConnId) -> Option<ConnPath> {
        self.paths.get(&conn).copied()
    }

    /// Wire connections open now by how they were made: `[direct, mapped, punched,
    /// relayed]` (`/metrics`).
    pub fn connections_by_path(&self) -> [u64; 4] {
        let mut n = [0u64; 4];
        for p in self.paths.values() {
            let i = match p {
                ConnPath::Direct => 0,
                ConnPath::Mapped => 1,
                ConnPath::Punched => 2,
                ConnPath::Relayed => 3,
            };
            if let Some(c) = n.get_mut(i) {
                *c += 1;
            }
        }
        n
    }

    /// A punch socket of `conn` connected. Returns whether the driver keeps it as `conn`
    /// (false: the attempt is over, close it).
    pub fn punch_connected(&mut self, p: &mut Parts<'_>, conn: ConnId, now: Instant) -> bool {
        if !self.nat.is_attempting(conn) {
            return false;
        }
        self.drop_punches(p, conn);
        self.nat.punch_connected(conn, now);
        self.paths.insert(conn, ConnPath::Punched);
        true
    }

    /// The relayed circuit of `conn` is up (RELAY_OK read).
    pub fn relay_ready(&mut self, conn: ConnId, now: Instant) {
        self.paths.insert(conn, ConnPath::Relayed);
        self.nat.relay_ready(conn, now);
    }

    /// The relay attempt of `conn` failed.
    pub fn relay_failed(&mut self, p: &mut Parts<'_>, conn: ConnId, now: Instant) {
        self.nat.attempt_failed(conn);
        self.flush(p, now);
    }

    /// A dial-back we were asked to make is over (connected or not).
    pub fn dial_back_done(&mut self) {
        self.nat.dialback_done();
    }

    /// A frame of the NAT layer arrived on `conn`, which the engine has already forgotten
    /// (PROBE, RELAY and RELAY_OK open a connection and end its framed part, wire.md).
    pub fn frame(
        &mut self,
        p: &mut Parts<'_>,
        now: Instant,
        conn: ConnId,
        from: SocketAddr,
        msg: WireMsg,
    ) {
        match msg {
            WireMsg::Probe(nonce) => {
                if self.nat.probe_received(now, nonce) {
                    log::info!("nat: a dial-back reached us: reachable");
                }
                p.out.push_back(Output::Wire(WireAction::Close { conn }));
                self.flush(p, now);
            }
            WireMsg::Relay { node, nonce } => self.relay_frame(p, now, conn, from, node, nonce),
            other => {
                log::debug!("wire: unexpected {} from connection {conn}", other.name());
                p.out.push_back(Output::Wire(WireAction::Close { conn }));
            }
        }
    }

    /// As a rendezvous: RELAY on an accepted connection opens a circuit or joins one.
    fn relay_frame(
        &mut self,
        p: &mut Parts<'_>,
        now: Instant,
        conn: ConnId,
        from: SocketAddr,
        node: Id,
        nonce: u64,
    ) {
        if let Some(h) = self.held.get(&nonce) {
            if h.target != node {
                // Not the node the opener asked for: that circuit keeps waiting.
                p.out.push_back(Output::Wire(WireAction::Close { conn }));
                return;
            }
            let opener = h.conn;
            self.held.remove(&nonce);
            p.out.push_back(Output::Nat(NatIo::StartCircuit {
                opener,
                joiner: conn,
            }));
            return;
        }
        if self.nat.relay_open(now, &node, nonce, from) {
            self.held.insert(
                nonce,
                HeldOpener {
                    conn,
                    target: node,
                    deadline: now + RELAY_WAIT,
                },
            );
            p.out.push_back(Output::Nat(NatIo::HoldForRelay { conn }));
            self.flush(p, now);
        } else {
            p.out.push_back(Output::Wire(WireAction::Send {
                conn,
                msg: WireMsg::Error {
                    code: wire::error_code::TOO_MANY_CONNECTIONS,
                    text: "cannot relay to that node".into(),
                },
            }));
            p.out.push_back(Output::Wire(WireAction::Close { conn }));
        }
    }

    /// A held opener closed before its circuit came.
    pub fn relay_gone(&mut self, conn: ConnId) {
        let before = self.held.len();
        self.held.retain(|_, h| h.conn != conn);
        if self.held.len() < before {
            self.nat.circuit_closed();
        }
    }

    /// A relayed circuit we carried ended.
    pub fn circuit_closed(&mut self) {
        self.nat.circuit_closed();
    }

    // ----- time ---------------------------------------------------------------------

    /// Timers: the NAT core's, the port mapping's, the blind reachability test, held
    /// relay openers.
    pub fn handle_timeout(&mut self, p: &mut Parts<'_>, now: Instant) {
        // What peers saw of our ports, for our next REGISTER (the DHT learns it from PONGs).
        self.nat.set_ports_vary(p.dht.ports_vary());
        // Connections the engine closed without telling us (an ERROR it sent, a frame that
        // left the transfer protocol) leave nothing behind.
        self.paths.retain(|c, _| p.engine.conn_addr(*c).is_some());
        if let Some(m) = self.pmp.as_mut() {
            if m.client.poll_timeout().is_some_and(|t| t <= now) {
                m.client.handle_timeout(now);
                self.pmp_flush(p, now);
            }
        }
        if let Some(u) = self.upnp.as_mut() {
            if u.poll_timeout().is_some_and(|t| t <= now) {
                u.handle_timeout(now);
                self.upnp_flush(p, now);
            }
        }
        let silent: Vec<(ConnId, SocketAddr)> = self
            .direct
            .iter()
            .filter(|(_, (_, t0))| *t0 + PLAIN_CONNECT_TIMEOUT <= now)
            .map(|(c, (a, _))| (*c, *a))
            .collect();
        for (conn, addr) in silent {
            self.direct.remove(&conn);
            if p.engine.abandon_connect(now, conn) {
                log::info!(
                    "nat: {addr} did not answer a connect in {} s: given up (a firewall?)",
                    PLAIN_CONNECT_TIMEOUT.as_secs()
                );
            }
        }
        if self.blind_probe.is_some_and(|t| t <= now) {
            if !self.nat.config().enabled || self.nat.reachability() != Reachability::Unknown {
                self.blind_probe = None;
            } else if p.dht.routing_table().is_empty() {
                let soon = p.dht.external_addr().is_some() && self.nat.lacks_candidates();
                self.blind_probe = Some(
                    now + if soon {
                        self.candidates_wait
                    } else {
                        BLIND_PROBE_AFTER
                    },
                );
                if soon {
                    self.candidates_wait = (self.candidates_wait * 2).min(BLIND_PROBE_AFTER);
                }
            } else if p.dht.external_addr().is_some() {
                // The test ran when peers agreed on our address; if the table was empty
                // then, it had nobody to ask: ask now that contacts are in.
                self.blind_probe = Some(now + BLIND_PROBE_AFTER);
                if self.nat.lacks_candidates() {
                    self.external(p, now);
                }
            } else {
                log::info!("nat: peers disagree on our address: testing reachability anyway");
                self.blind_probe = None;
                self.external(p, now);
            }
        }
        if self.nat.poll_timeout().is_some_and(|t| t <= now) {
            self.nat.handle_timeout(now);
            self.flush(p, now);
        }
        let late: Vec<u64> = self
            .held
            .iter()
            .filter(|(_, h)| h.deadline <= now)
            .map(|(n, _)| *n)
            .collect();
        for n in late {
            if let Some(h) = self.held.remove(&n) {
                p.out
                    .push_back(Output::Nat(NatIo::DropHeld { conn: h.conn }));
                self.nat.circuit_closed();
            }
        }
    }

    /// When [`NatGlue::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.nat.poll_timeout(),
            self.blind_probe,
            self.held.values().map(|h| h.deadline).min(),
            self.direct
                .values()
                .map(|(_, t0)| *t0 + PLAIN_CONNECT_TIMEOUT)
                .min(),
            self.pmp.as_ref().and_then(|m| m.client.poll_timeout()),
            self.upnp.as_ref().and_then(UpnpClient::poll_timeout),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The `nat` object of the status reply (the driver adds the circuits it carries).
    pub fn status_json(&self) -> serde_json::Value {
        let c = self.nat.counters();
        serde_json::json!({
            "reachability": self.nat.reachability().name(),
            "rendezvous": self.nat.rendezvous().map(|a| a.to_string()),
            "rendezvous_clients": self.nat.clients(),
            "setups": {"direct": c.setups[0], "punched": c.setups[1], "relayed": c.setups[2]},
            "failures": c.failures,
            "ports_vary": self.nat.ports_vary(),
            "punches_skipped": c.punches_skipped,
            "introductions": c.introductions,
            "circuits_total": c.circuits,
            "port_mapping": self.upnp.as_ref().map(|u| serde_json::json!({
                "gateway": u.control().map(|c| c.addr.ip().to_string()),
                "protocol": "upnp-igd",
                "state": u.state().name(),
                "external": u.external().map(|a| a.to_string()),
                "lifetime_s": u.lifetime().map(|l| l.as_secs()),
                "renewals": u.counters().renewals,
                "requests_sent": u.counters().sent,
            })).or_else(|| self.pmp.as_ref().map(|m| serde_json::json!({
                "gateway": m.gateway.ip().to_string(),
                "protocol": m.client.version().name(),
                "state": m.client.state().name(),
                "external": m.client.external().map(|a| a.to_string()),
                "lifetime_s": m.client.lifetime().map(|l| l.as_secs()),
                "renewals": m.client.counters().renewals,
                "requests_sent": m.client.counters().sent,
            }))),
            "connections": self.nat.setups().map(|s| serde_json::json!({
                "peer": s.peer.to_string(),
                "strategy": s.strategy.name(),
                "setup_ms": s.setup.as_secs_f64() * 1000.0,
            })).collect::<Vec<_>>(),
        })
    }
}

/// A wire frame's bytes.
fn frame(m: &WireMsg) -> Vec<u8> {
    let mut v = Vec::with_capacity(m.encoded_len());
    m.encode(&mut v);
    v
}
