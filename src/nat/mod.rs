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
//!
//! The vocabulary and the [`Nat`] state are defined here, with the datagram dispatch; each
//! role has its module: `reachability.rs` (our own test, dialling back for others),
//! `registration.rs` (our rendezvous), `rendezvous.rs` (serving as one), `traversal.rs`
//! (reaching a provider as a downloader); `config.rs` holds the tunables.

pub mod lan;
pub mod pmp;
#[cfg(test)]
mod tests;
pub mod upnp;

mod config;
mod reachability;
mod registration;
mod rendezvous;
mod traversal;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::conn::ConnId;
use crate::id::Id;
use crate::proto::dht::{Contact, Datagram, Message, FLAG_PORTS_VARY};
use reachability::Probe;
use registration::Registration;
use rendezvous::Client;
use traversal::{Attempt, Phase};

pub use config::NatConfig;

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
        /// Header flags of the NAT layer's own (`FLAG_PORTS_VARY`), besides the DHT's.
        flags: u8,
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

/// The NAT layer of one node. See the module docs for the call order.
#[derive(Debug)]
pub struct Nat {
    cfg: NatConfig,
    wire_port: u16,
    rng: u64,
    reach: Reachability,
    /// Our NAT gives each destination another port (the DHT saw it: `Dht::ports_vary`).
    ports_vary: bool,
    probe: Probe,
    next_probe: Option<Instant>,
    /// Peers to ask for dial-backs and to register with, from the routing table.
    candidates: Vec<Contact>,
    registration: Option<Registration>,
    /// Rendezvous tried and failed, not tried again while others remain.
    failed_rendezvous: Vec<SocketAddr>,
    /// When to ask the candidates again, after every one of them failed.
    register_again: Option<Instant>,
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
    /// Punches skipped because they could not work (nat.md section 6): relayed at once.
    pub punches_skipped: u64,
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
            ports_vary: false,
            probe: Probe::Idle,
            next_probe: None,
            candidates: Vec::new(),
            registration: None,
            failed_rendezvous: Vec::new(),
            register_again: None,
            clients: HashMap::new(),
            attempts: HashMap::new(),
            dialbacks: 0,
            circuits: 0,
            setups: VecDeque::new(),
            counters: NatCounters::default(),
            actions: VecDeque::new(),
        }
    }

    /// A fresh 96-bit nonce (PCP's mapping nonce).
    pub fn random_nonce(&mut self) -> [u8; 12] {
        let (a, b) = (self.next_rand(), self.next_rand());
        let mut n = [0u8; 12];
        n[..8].copy_from_slice(&a.to_be_bytes());
        n[8..].copy_from_slice(&b.to_be_bytes()[..4]);
        n
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
        self.send_flagged(to, txid, msg, 0);
    }

    fn send_flagged(&mut self, to: SocketAddr, txid: u64, msg: Message, flags: u8) {
        self.actions.push_back(Action::Send {
            to,
            txid,
            msg,
            flags,
        });
    }

    /// Whether our NAT gives each destination another port (a symmetric NAT): peers saw us
    /// at one IP from different ports (`Dht::ports_vary`). Our REGISTER says so, and a
    /// punch we cannot make work is skipped (nat.md, section 6).
    pub fn set_ports_vary(&mut self, vary: bool) {
        if self.ports_vary != vary {
            log::info!(
                "nat: peers see us from {}",
                if vary {
                    "different ports (a symmetric NAT)"
                } else {
                    "one port"
                }
            );
            self.ports_vary = vary;
        }
    }

    /// Whether a punch to a provider behind a rendezvous cannot work: we are not reachable
    /// (the provider's SYN cannot reach our listener) and one side's NAT gives each
    /// destination another port, so the port the other side is told is not the one its SYN
    /// meets (nat.md, section 6). Unknown reachability punches: we may be reachable.
    fn punch_cannot_work(&self, theirs_vary: bool) -> bool {
        self.reach == Reachability::Unreachable && (self.ports_vary || theirs_vary)
    }

    /// The header flags our REGISTER carries.
    fn register_flags(&self) -> u8 {
        if self.ports_vary {
            FLAG_PORTS_VARY
        } else {
            0
        }
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
            Message::Dialback { nonce, port } => self.on_dialback(from, dg.txid, nonce, port),
            Message::DialbackAck => self.on_dialback_ack(),
            Message::Register { port } => {
                let vary = dg.flags & FLAG_PORTS_VARY != 0;
                self.on_register(now, from, dg.sender, dg.txid, port, vary)
            }
            Message::Registered { .. } => self.on_registered(from, dg.txid),
            Message::Introduce { target, port } => {
                self.on_introduce(now, from, dg.sender, dg.txid, target, port)
            }
            Message::Introduced { addr, port } => {
                let vary = dg.flags & FLAG_PORTS_VARY != 0;
                self.on_introduced(now, from, dg.txid, addr, port, vary)
            }
            Message::Call {
                mode,
                nonce,
                addr,
                port,
                ..
            } => self.on_call(from, dg.txid, mode, nonce, addr, port),
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
                } else if self
                    .registration
                    .is_some_and(|r| r.txid == dg.txid && r.rendezvous == from)
                {
                    self.rendezvous_failed(now);
                }
            }
            // PONGs to punching PINGs, CALL_ACKs: nothing to do.
            Message::Pong { .. } | Message::CallAck => {}
            _ => self.counters.unexpected += 1,
        }
    }

    /// Time has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.probe_timeout(now);
        self.renew_registration(now);
        self.attempts_timeout(now);
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
            self.register_again,
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

    /// Whether our NAT gives each destination another port, as far as we know.
    pub fn ports_vary(&self) -> bool {
        self.ports_vary
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
}
