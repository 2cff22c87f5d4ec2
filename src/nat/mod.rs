//! NAT traversal as a sans-IO state machine (spec: `protocol-spec/nat.md`).
//!
//! [`Nat`] owns no socket and never reads the clock. The reactor (`src/net/reactor_nat.rs`)
//! drives it:
//!
//! - **inputs**: [`Nat::handle_datagram`] (the NAT datagrams the DHT passes on as
//!   `DhtEvent::Nat`), [`Nat::handle_timeout`], and what the reactor saw on TCP:
//!   [`Nat::probe_received`], [`Nat::punch_connected`], [`Nat::relay_ready`],
//!   [`Nat::attempt_failed`];
//! - **commands**: [`Nat::external_address`] (start the reachability test),
//!   [`Nat::connect_via`] (reach a provider behind a rendezvous), [`Nat::relay_open`] (as a
//!   rendezvous, a downloader asks for a relayed circuit), [`Nat::set_mapped`] (a port
//!   mapping from the router), [`Nat::record_setup`];
//! - **outputs**: [`Nat::poll_action`] and [`Nat::poll_timeout`].
//!
//! As for the DHT: after every input or command, drain `poll_action` until `None`, then
//! sleep until `poll_timeout`.
//!
//! What a node does, in order of preference (nat.md, section 2): it is reachable as it is
//! (a peer's dial-back got through), or it maps its port on the router (NAT-PMP), or it
//! registers with a reachable **rendezvous** whose address its provider records carry; a
//! downloader then asks the rendezvous to introduce it and both sides open TCP to each other
//! at once (a simultaneous open through both NATs). If that does not connect in time, the
//! downloader asks the rendezvous to **relay** the connection.

pub mod pmp;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::conn::ConnId;
use crate::id::Id;
use crate::proto::dht::{call_mode, error_code, Contact, Datagram, Message};

/// Tunables. The defaults are the values of nat.md, section 8.
#[derive(Clone, Debug)]
pub struct NatConfig {
    /// Run the reachability test and the rendezvous client at all.
    pub enabled: bool,
    /// How long to wait for a PROBE after a DIALBACK was acknowledged.
    pub probe_wait: Duration,
    /// How long a rendezvous keeps a registration.
    pub registration_lifetime: Duration,
    /// How often a client renews its registration (also keeps its NAT mapping alive).
    pub renew_every: Duration,
    /// Most clients a rendezvous serves.
    pub max_clients: usize,
    /// How long a downloader waits for INTRODUCED.
    pub introduce_timeout: Duration,
    /// How long a downloader lets the simultaneous open try before asking for a relay.
    pub punch_timeout: Duration,
    /// How long a relay request may take to come up.
    pub relay_timeout: Duration,
    /// Most relayed circuits a rendezvous carries at once.
    pub max_circuits: usize,
    /// Most dial-backs in progress at once (others are refused with RATE_LIMITED).
    pub max_dialbacks: usize,
    /// How often to test reachability again once it is known (the router, the address or
    /// the network may change; nat.md, section 3).
    pub recheck_every: Duration,
    /// Ask the router for a port mapping with NAT-PMP (nat.md, section 10).
    pub port_mapping: bool,
    /// The mapping lifetime to ask for; renewed at half of what the router grants.
    pub mapping_lifetime: Duration,
}

impl Default for NatConfig {
    fn default() -> Self {
        NatConfig {
            enabled: true,
            probe_wait: Duration::from_secs(3),
            registration_lifetime: Duration::from_secs(90),
            renew_every: Duration::from_secs(20),
            max_clients: 256,
            introduce_timeout: Duration::from_secs(2),
            punch_timeout: Duration::from_secs(3),
            relay_timeout: Duration::from_secs(5),
            max_circuits: 8,
            max_dialbacks: 8,
            recheck_every: Duration::from_secs(600),
            port_mapping: true,
            mapping_lifetime: Duration::from_secs(7200),
        }
    }
}

/// What the node knows about its own reachability.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reachability {
    /// Not tested yet.
    Unknown,
    /// A peer's dial-back got through: the node is reachable as it is.
    Public,
    /// The router maps a port to the node (NAT-PMP).
    Mapped,
    /// Dial-backs did not get through: the node needs a rendezvous.
    Unreachable,
}

impl Reachability {
    /// Lower-case name for status pages.
    pub fn name(self) -> &'static str {
        match self {
            Reachability::Unknown => "unknown",
            Reachability::Public => "public",
            Reachability::Mapped => "mapped",
            Reachability::Unreachable => "unreachable",
        }
    }
}

/// How a wire connection was set up (nat.md, section 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    /// A plain TCP connect to the provider's address.
    Direct,
    /// Introduced by the rendezvous, then a simultaneous TCP open.
    Punched,
    /// Carried through the rendezvous.
    Relayed,
}

impl Strategy {
    /// Lower-case name for status pages and logs.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Direct => "direct",
            Strategy::Punched => "punched",
            Strategy::Relayed => "relayed",
        }
    }
}

/// One connection set up by this node as a downloader.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setup {
    /// The provider's address.
    pub peer: SocketAddr,
    /// How.
    pub strategy: Strategy,
    /// From the engine's connect request to a connection ready for the HANDSHAKE.
    pub setup: Duration,
}

/// Something for the reactor to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send this DHT datagram (through `Dht::send_nat`, which adds our ID and flags).
    Send {
        /// Destination.
        to: SocketAddr,
        /// Transaction ID.
        txid: u64,
        /// Body.
        msg: Message,
    },
    /// Open TCP to `addr`, send PROBE `nonce`, close.
    DialBack {
        /// The prober's wire address.
        addr: SocketAddr,
        /// Its nonce.
        nonce: u64,
    },
    /// Our reachability changed: set the DHT's NOT_REACHABLE flag accordingly.
    Reachability(Reachability),
    /// Our rendezvous changed: announce it with our provider records.
    Rendezvous(Option<SocketAddr>),
    /// Downloader: open TCP from our wire port to the provider (simultaneous open) for `conn`.
    PunchConnect {
        /// The engine's connection.
        conn: ConnId,
        /// The provider's wire address.
        addr: SocketAddr,
    },
    /// Provider: open TCP from our wire port to a downloader (simultaneous open); once
    /// connected it is an accepted connection.
    PunchAccept {
        /// The downloader's wire address.
        addr: SocketAddr,
    },
    /// Downloader: connect to the rendezvous's wire port and open circuit `nonce` to `node`.
    RelayOpen {
        /// The engine's connection.
        conn: ConnId,
        /// The rendezvous (wire address: its UDP address, same port).
        rendezvous: SocketAddr,
        /// The provider's node ID.
        node: Id,
        /// The circuit's number.
        nonce: u64,
    },
    /// Provider: connect to the rendezvous's wire port and join circuit `nonce`; once
    /// connected it is an accepted connection from `peer`.
    RelayJoin {
        /// The rendezvous's wire address.
        rendezvous: SocketAddr,
        /// The circuit.
        nonce: u64,
        /// The downloader, as the rendezvous saw it.
        peer: SocketAddr,
    },
    /// Downloader: give up on `conn` (tell the engine it closed).
    Failed {
        /// The engine's connection.
        conn: ConnId,
    },
}

#[derive(Clone, Copy, Debug)]
enum Probe {
    Idle,
    Waiting {
        nonce: u64,
        acked: bool,
        deadline: Instant,
    },
}

#[derive(Clone, Copy, Debug)]
struct Client {
    addr: SocketAddr,
    port: u16,
    expires: Instant,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Introducing,
    Punching,
    Relaying,
}

#[derive(Clone, Copy, Debug)]
struct Attempt {
    provider: SocketAddr,
    node: Id,
    rendezvous: SocketAddr,
    started: Instant,
    phase: Phase,
    deadline: Instant,
    txid: u64,
}

/// Our registration with a rendezvous.
#[derive(Clone, Copy, Debug)]
struct Registration {
    rendezvous: SocketAddr,
    txid: u64,
    /// Set once REGISTERED came back.
    confirmed: bool,
    next_renew: Instant,
    /// Renewals sent without an answer.
    unanswered: u32,
}

/// The NAT layer of one node. See the module docs for the call order.
#[derive(Debug)]
pub struct Nat {
    cfg: NatConfig,
    wire_port: u16,
    rng: u64,
    reach: Reachability,
    probe: Probe,
    next_probe: Option<Instant>,
    /// Peers to ask for dial-backs and to register with, from the routing table.
    candidates: Vec<Contact>,
    registration: Option<Registration>,
    /// Rendezvous tried and failed, not tried again while others remain.
    failed_rendezvous: Vec<SocketAddr>,
    /// As a rendezvous: clients by node ID.
    clients: HashMap<Id, Client>,
    /// As a downloader: traversals in progress.
    attempts: HashMap<ConnId, Attempt>,
    /// Dial-backs in progress (the reactor reports their end with `dialback_done`).
    dialbacks: usize,
    /// Circuits open or opening at this rendezvous.
    circuits: usize,
    setups: VecDeque<Setup>,
    counters: NatCounters,
    actions: VecDeque<Action>,
}

/// Counters for status pages.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NatCounters {
    /// Connections set up per strategy: direct, punched, relayed.
    pub setups: [u64; 3],
    /// Traversals that failed.
    pub failures: u64,
    /// Introductions this node made as a rendezvous.
    pub introductions: u64,
    /// Circuits this node relayed.
    pub circuits: u64,
    /// NAT datagrams that answered nothing or came from the wrong place.
    pub unexpected: u64,
}

const MAX_SETUPS: usize = 64;

impl Nat {
    /// The NAT layer of a node whose wire listener is on `wire_port`. `seed` feeds its
    /// nonces and transaction IDs.
    pub fn new(wire_port: u16, cfg: NatConfig, seed: u64) -> Self {
        Nat {
            cfg,
            wire_port,
            rng: seed | 1,
            reach: Reachability::Unknown,
            probe: Probe::Idle,
            next_probe: None,
            candidates: Vec::new(),
            registration: None,
            failed_rendezvous: Vec::new(),
            clients: HashMap::new(),
            attempts: HashMap::new(),
            dialbacks: 0,
            circuits: 0,
            setups: VecDeque::new(),
            counters: NatCounters::default(),
            actions: VecDeque::new(),
        }
    }

    fn next_rand(&mut self) -> u64 {
        // xorshift64*: nonces and txids need to be unpredictable to peers only as much as
        // the DHT's own txids; the seed comes from the OS RNG in production.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn send(&mut self, to: SocketAddr, txid: u64, msg: Message) {
        self.actions.push_back(Action::Send { to, txid, msg });
    }

    // ----- commands -----------------------------------------------------------------

    /// Peers agree on our public address: test whether it is reachable by asking up to two
    /// `peers` to dial back. `peers` are also the rendezvous candidates.
    pub fn external_address(&mut self, now: Instant, peers: Vec<Contact>) {
        if !self.cfg.enabled || self.reach == Reachability::Mapped {
            return;
        }
        if !peers.is_empty() {
            self.candidates = peers;
        }
        if matches!(self.probe, Probe::Waiting { .. }) || self.candidates.is_empty() {
            return;
        }
        let nonce = self.next_rand();
        let port = self.wire_port;
        for c in self.candidates.clone().into_iter().take(2) {
            let txid = self.next_rand();
            self.send(c.addr, txid, Message::Dialback { nonce, port });
        }
        self.probe = Probe::Waiting {
            nonce,
            acked: false,
            deadline: now + self.cfg.probe_wait,
        };
    }

    /// The router maps our port (NAT-PMP, [`pmp`]), or stopped doing so. Mapped, we are
    /// reachable and need no rendezvous; the mapping lost, reachability is tested again.
    pub fn set_mapped(&mut self, now: Instant, mapped: bool) {
        if mapped {
            self.set_reach(Reachability::Mapped);
            self.probe = Probe::Idle;
            self.next_probe = None;
            self.drop_registration();
        } else if self.reach == Reachability::Mapped {
            self.set_reach(Reachability::Unknown);
            self.next_probe = Some(now);
        }
    }

    /// Downloader: reach `provider` (node `node`) through `rendezvous`. The result comes as
    /// actions: PunchConnect, then RelayOpen if the punch does not connect in time, or
    /// Failed.
    pub fn connect_via(
        &mut self,
        now: Instant,
        conn: ConnId,
        provider: SocketAddr,
        node: Id,
        rendezvous: SocketAddr,
        ours: Option<SocketAddr>,
    ) {
        let txid = self.next_rand();
        let port = self.wire_port;
        self.attempts.insert(
            conn,
            Attempt {
                provider,
                node,
                rendezvous,
                started: now,
                phase: Phase::Introducing,
                deadline: now + self.cfg.introduce_timeout,
                txid,
            },
        );
        // We may be the provider's rendezvous ourselves (a datagram to ourselves would be
        // dropped): then we introduce ourselves, as a rendezvous would.
        match (self.clients.get(&node).copied(), ours) {
            (Some(c), Some(ours)) if c.expires > now => {
                let call = Message::Call {
                    mode: call_mode::PUNCH,
                    nonce: 0,
                    peer: Id([0; 32]),
                    addr: ours,
                    port,
                };
                let call_txid = self.next_rand();
                self.send(c.addr, call_txid, call);
                let msg = Message::Introduced {
                    addr: c.addr,
                    port: c.port,
                };
                let dg = Datagram {
                    flags: 0,
                    txid,
                    sender: node,
                    msg,
                };
                self.handle_datagram(now, rendezvous, dg);
            }
            _ => self.send(rendezvous, txid, Message::Introduce { target: node, port }),
        }
    }

    /// Rendezvous: a downloader asks on a TCP connection for circuit `nonce` to `node`.
    /// On success a CALL goes to the client; the reactor holds the opener's socket until
    /// the client joins.
    pub fn relay_open(&mut self, now: Instant, node: &Id, nonce: u64, opener: SocketAddr) -> bool {
        let Some(c) = self.clients.get(node).copied() else {
            return false;
        };
        if c.expires <= now || self.circuits >= self.cfg.max_circuits {
            return false;
        }
        self.circuits += 1;
        self.counters.circuits += 1;
        let txid = self.next_rand();
        let msg = Message::Call {
            mode: call_mode::RELAY,
            nonce,
            peer: Id([0; 32]),
            addr: opener,
            port: 0,
        };
        self.send(c.addr, txid, msg);
        true
    }

    /// Rendezvous: a circuit closed or never came up.
    pub fn circuit_closed(&mut self) {
        self.circuits = self.circuits.saturating_sub(1);
    }

    /// A dial-back this node was making ended (whatever the outcome).
    pub fn dialback_done(&mut self) {
        self.dialbacks = self.dialbacks.saturating_sub(1);
    }

    /// Records a connection set up without NAT traversal (the reactor times plain connects).
    pub fn record_setup(&mut self, peer: SocketAddr, strategy: Strategy, setup: Duration) {
        self.counters.setups[strategy as usize] += 1;
        log::info!(
            "nat: connection to {peer} {} in {} ms",
            strategy.name(),
            setup.as_millis()
        );
        if self.setups.len() >= MAX_SETUPS {
            self.setups.pop_front();
        }
        self.setups.push_back(Setup {
            peer,
            strategy,
            setup,
        });
    }

    // ----- inputs -------------------------------------------------------------------

    /// A NAT datagram from `from` (see `DhtEvent::Nat`).
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, dg: Datagram) {
        match dg.msg {
            Message::Dialback { nonce, port } => {
                if self.dialbacks >= self.cfg.max_dialbacks || port == 0 {
                    let msg = Message::Error {
                        code: error_code::RATE_LIMITED,
                        text: "too many dial-backs in progress".into(),
                    };
                    self.send(from, dg.txid, msg);
                    return;
                }
                self.dialbacks += 1;
                self.send(from, dg.txid, Message::DialbackAck);
                self.actions.push_back(Action::DialBack {
                    addr: SocketAddr::new(from.ip(), port),
                    nonce,
                });
            }
            Message::DialbackAck => {
                if let Probe::Waiting { acked, .. } = &mut self.probe {
                    *acked = true;
                }
            }
            Message::Register { port } => {
                // Only a node others can reach can introduce them to its clients: an
                // unreachable (or untested) one would only strand the client's downloaders
                // (the whole-network simulator caught NATed nodes serving as rendezvous).
                if !matches!(self.reach, Reachability::Public | Reachability::Mapped) {
                    let msg = Message::Error {
                        code: error_code::BAD_REQUEST,
                        text: "this node is not known to be reachable: it cannot be a rendezvous"
                            .into(),
                    };
                    self.send(from, dg.txid, msg);
                    return;
                }
                let known = self.clients.contains_key(&dg.sender);
                self.clients.retain(|_, c| c.expires > now);
                if !known && self.clients.len() >= self.cfg.max_clients {
                    let msg = Message::Error {
                        code: error_code::STORE_FULL,
                        text: "rendezvous full".into(),
                    };
                    self.send(from, dg.txid, msg);
                    return;
                }
                let expires = now + self.cfg.registration_lifetime;
                self.clients.insert(
                    dg.sender,
                    Client {
                        addr: from,
                        port,
                        expires,
                    },
                );
                let lifetime =
                    u16::try_from(self.cfg.registration_lifetime.as_secs()).unwrap_or(u16::MAX);
                self.send(from, dg.txid, Message::Registered { lifetime });
            }
            Message::Registered { .. } => {
                let ours = self
                    .registration
                    .as_mut()
                    .filter(|r| r.txid == dg.txid && r.rendezvous == from);
                match ours {
                    Some(r) => {
                        r.unanswered = 0;
                        if !r.confirmed {
                            r.confirmed = true;
                            log::info!("nat: {from} is our rendezvous");
                            self.actions.push_back(Action::Rendezvous(Some(from)));
                        }
                    }
                    None => self.counters.unexpected += 1,
                }
            }
            Message::Introduce { target, port } => match self.clients.get(&target).copied() {
                Some(c) if c.expires > now => {
                    self.counters.introductions += 1;
                    self.send(
                        from,
                        dg.txid,
                        Message::Introduced {
                            addr: c.addr,
                            port: c.port,
                        },
                    );
                    let txid = self.next_rand();
                    let call = Message::Call {
                        mode: call_mode::PUNCH,
                        nonce: 0,
                        peer: dg.sender,
                        addr: from,
                        port,
                    };
                    self.send(c.addr, txid, call);
                }
                _ => {
                    let msg = Message::Error {
                        code: error_code::UNKNOWN_PEER,
                        text: "no such client here".into(),
                    };
                    self.send(from, dg.txid, msg);
                }
            },
            Message::Introduced { addr, port } => {
                let found = self
                    .attempts
                    .iter()
                    .find(|(_, a)| a.txid == dg.txid && a.phase == Phase::Introducing)
                    .map(|(c, a)| (*c, *a));
                let Some((conn, a)) = found else {
                    self.counters.unexpected += 1;
                    return;
                };
                if from != a.rendezvous {
                    self.counters.unexpected += 1;
                    return;
                }
                // Open our NAT for the provider's datagrams (the UDP punch) and its SYN.
                let txid = self.next_rand();
                self.send(addr, txid, Message::Ping);
                let tcp = SocketAddr::new(addr.ip(), if port == 0 { addr.port() } else { port });
                self.actions
                    .push_back(Action::PunchConnect { conn, addr: tcp });
                if let Some(a) = self.attempts.get_mut(&conn) {
                    a.phase = Phase::Punching;
                    a.deadline = now + self.cfg.punch_timeout;
                }
            }
            Message::Call {
                mode,
                nonce,
                addr,
                port,
                ..
            } => {
                let from_ours = self
                    .registration
                    .is_some_and(|r| r.rendezvous == from && r.confirmed);
                if !from_ours {
                    self.counters.unexpected += 1;
                    return;
                }
                self.send(from, dg.txid, Message::CallAck);
                if mode == call_mode::RELAY {
                    self.actions.push_back(Action::RelayJoin {
                        rendezvous: from,
                        nonce,
                        peer: addr,
                    });
                } else {
                    let txid = self.next_rand();
                    self.send(addr, txid, Message::Ping);
                    let tcp =
                        SocketAddr::new(addr.ip(), if port == 0 { addr.port() } else { port });
                    self.actions.push_back(Action::PunchAccept { addr: tcp });
                }
            }
            Message::Error { code, .. } => {
                // An ERROR answering our INTRODUCE: the rendezvous lost the provider.
                let found = self
                    .attempts
                    .iter()
                    .find(|(_, a)| a.txid == dg.txid && a.phase == Phase::Introducing)
                    .map(|(c, _)| *c);
                if let Some(conn) = found {
                    log::debug!("nat: rendezvous {from} refused an introduction ({code})");
                    self.fail(conn);
                } else if self.registration.is_some_and(|r| r.txid == dg.txid) {
                    self.rendezvous_failed(now);
                }
            }
            // PONGs to punching PINGs, CALL_ACKs: nothing to do.
            Message::Pong { .. } | Message::CallAck => {}
            _ => self.counters.unexpected += 1,
        }
    }

    /// A PROBE frame arrived on a connection to our wire port.
    pub fn probe_received(&mut self, now: Instant, nonce: u64) -> bool {
        match self.probe {
            Probe::Waiting { nonce: n, .. } if n == nonce => {
                self.probe = Probe::Idle;
                self.set_reach(Reachability::Public);
                self.drop_registration();
                self.next_probe = Some(now + self.cfg.recheck_every);
                true
            }
            _ => false,
        }
    }

    /// Downloader: the punched connection for `conn` is up.
    pub fn punch_connected(&mut self, conn: ConnId, now: Instant) {
        if let Some(a) = self.attempts.remove(&conn) {
            let took = now.saturating_duration_since(a.started);
            self.record_setup(a.provider, Strategy::Punched, took);
        }
    }

    /// Downloader: the relayed circuit for `conn` is up.
    pub fn relay_ready(&mut self, conn: ConnId, now: Instant) {
        if let Some(a) = self.attempts.remove(&conn) {
            let took = now.saturating_duration_since(a.started);
            self.record_setup(a.provider, Strategy::Relayed, took);
        }
    }

    /// Downloader: the relay for `conn` failed (the punch failing is only final at its
    /// deadline: the other side's SYN may still come).
    pub fn attempt_failed(&mut self, conn: ConnId) {
        if self
            .attempts
            .get(&conn)
            .is_some_and(|a| a.phase == Phase::Relaying)
        {
            self.fail(conn);
        }
    }

    /// Downloader: the engine gave up on `conn` (timeout, closed): forget it.
    pub fn forget(&mut self, conn: ConnId) {
        self.attempts.remove(&conn);
    }

    /// True while `conn` is being set up by NAT traversal.
    pub fn is_attempting(&self, conn: ConnId) -> bool {
        self.attempts.contains_key(&conn)
    }

    /// Time has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Probe::Waiting {
            acked, deadline, ..
        } = self.probe
        {
            if deadline <= now {
                self.probe = Probe::Idle;
                if acked {
                    // A peer tried to reach us and could not.
                    log::info!("nat: dial-back did not get through: not reachable");
                    self.set_reach(Reachability::Unreachable);
                    // A re-test that confirms it keeps the rendezvous we have.
                    if self.registration.is_none() {
                        self.register(now);
                    }
                    self.next_probe = Some(now + self.cfg.recheck_every);
                } else {
                    // Nobody answered: try again later.
                    self.next_probe = Some(now + Duration::from_secs(10));
                }
            }
        }
        if self.next_probe.is_some_and(|t| t <= now) {
            self.next_probe = None;
            self.external_address(now, Vec::new());
        }
        if let Some(r) = self.registration {
            if r.next_renew <= now {
                if r.unanswered >= 2 {
                    self.rendezvous_failed(now);
                } else {
                    let txid = self.next_rand();
                    let port = self.wire_port;
                    self.send(r.rendezvous, txid, Message::Register { port });
                    if let Some(r) = self.registration.as_mut() {
                        r.txid = txid;
                        r.unanswered += 1;
                        r.next_renew = now
                            + if r.confirmed {
                                self.cfg.renew_every
                            } else {
                                Duration::from_secs(2)
                            };
                    }
                }
            }
        }
        let due: Vec<ConnId> = self
            .attempts
            .iter()
            .filter(|(_, a)| a.deadline <= now)
            .map(|(c, _)| *c)
            .collect();
        for conn in due {
            let Some(a) = self.attempts.get(&conn).copied() else {
                continue;
            };
            match a.phase {
                Phase::Introducing | Phase::Relaying => self.fail(conn),
                Phase::Punching => {
                    log::debug!("nat: punch to {} timed out: relaying", a.provider);
                    let nonce = self.next_rand();
                    self.actions.push_back(Action::RelayOpen {
                        conn,
                        rendezvous: a.rendezvous,
                        node: a.node,
                        nonce,
                    });
                    if let Some(a) = self.attempts.get_mut(&conn) {
                        a.phase = Phase::Relaying;
                        a.deadline = now + self.cfg.relay_timeout;
                    }
                }
            }
        }
    }

    // ----- outputs ------------------------------------------------------------------

    /// The next thing to do.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Nat::handle_timeout`] must next be called.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let probe = match self.probe {
            Probe::Waiting { deadline, .. } => Some(deadline),
            Probe::Idle => None,
        };
        let attempts = self.attempts.values().map(|a| a.deadline).min();
        [
            probe,
            attempts,
            self.next_probe,
            self.registration.map(|r| r.next_renew),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    // ----- introspection ------------------------------------------------------------

    /// The tunables.
    pub fn config(&self) -> &NatConfig {
        &self.cfg
    }

    /// What we know of our reachability.
    pub fn reachability(&self) -> Reachability {
        self.reach
    }

    /// Our confirmed rendezvous.
    pub fn rendezvous(&self) -> Option<SocketAddr> {
        self.registration
            .filter(|r| r.confirmed)
            .map(|r| r.rendezvous)
    }

    /// Clients registered with us as their rendezvous.
    pub fn clients(&self) -> usize {
        self.clients.len()
    }

    /// The last connections set up, oldest first.
    pub fn setups(&self) -> impl Iterator<Item = &Setup> {
        self.setups.iter()
    }

    /// Counters.
    pub fn counters(&self) -> &NatCounters {
        &self.counters
    }

    // ----- internals ----------------------------------------------------------------

    fn set_reach(&mut self, r: Reachability) {
        if self.reach != r {
            self.reach = r;
            self.actions.push_back(Action::Reachability(r));
        }
    }

    fn fail(&mut self, conn: ConnId) {
        if self.attempts.remove(&conn).is_some() {
            self.counters.failures += 1;
            self.actions.push_back(Action::Failed { conn });
        }
    }

    fn register(&mut self, now: Instant) {
        let pick = self
            .candidates
            .iter()
            .find(|c| !self.failed_rendezvous.contains(&c.addr))
            .or_else(|| self.candidates.first())
            .copied();
        let Some(c) = pick else {
            return;
        };
        let txid = self.next_rand();
        let port = self.wire_port;
        self.send(c.addr, txid, Message::Register { port });
        self.registration = Some(Registration {
            rendezvous: c.addr,
            txid,
            confirmed: false,
            next_renew: now + Duration::from_secs(2),
            unanswered: 1,
        });
    }

    fn rendezvous_failed(&mut self, now: Instant) {
        if let Some(r) = self.registration.take() {
            log::info!("nat: rendezvous {} stopped answering", r.rendezvous);
            if self.failed_rendezvous.len() >= 16 {
                self.failed_rendezvous.remove(0);
            }
            self.failed_rendezvous.push(r.rendezvous);
            if r.confirmed {
                self.actions.push_back(Action::Rendezvous(None));
            }
        }
        if self.reach == Reachability::Unreachable {
            self.register(now);
        }
    }

    fn drop_registration(&mut self) {
        if let Some(r) = self.registration.take() {
            if r.confirmed {
                self.actions.push_back(Action::Rendezvous(None));
            }
        }
    }
}
