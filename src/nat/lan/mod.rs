//! LAN discovery as a sans-IO state machine (spec: `protocol-spec/nat.md`, section 11): nodes
//! on one link find each other without a bootstrap address, and a download asks the link
//! who provides its content before (and besides) the DHT.
//!
//! Why a small announce of our own (in the manner of BitTorrent's BEP 14) rather than mDNS
//! through the `mdns-sd` crate: `mdns-sd` runs its own daemon thread with its own sockets and
//! hands results over a channel, which would put socket I/O and timers outside the reactor and
//! outside the simulators' reach; an mDNS record set (PTR, SRV, TXT, A/AAAA per node, with
//! its name compression) is also far more than a node ID and a port. Here the datagram is 40
//! bytes, the decoder 60 lines, and this machine is driven like every other core.
//!
//! [`Lan`] owns no socket and never reads the clock. The reactor (`src/net/lan_io.rs`) sends
//! [`LanTransmit`]s to the multicast groups (IPv4 and IPv6, hop limit 1) or to one peer, and
//! feeds what arrives:
//!
//! - **inputs**: [`Lan::handle_datagram`], [`Lan::handle_timeout`];
//! - **commands**: [`Lan::start`], [`Lan::want`] (a download starts), [`Lan::have`] (answer
//!   a WANT for a content this node provides);
//! - **outputs**: [`Lan::poll_transmit`], [`Lan::poll_event`], [`Lan::poll_timeout`].
//!
//! As everywhere in PeerShare: after every input or command, drain the outputs, then sleep
//! until `poll_timeout`.
//!
//! The schedule: HELLO at start and once more a second later (a lost multicast datagram
//! must not cost a whole announce period); every node hearing a HELLO answers with a unicast
//! ANNOUNCE, so a starting node knows its link within a round trip. Then one multicast
//! ANNOUNCE every `announce_every` (5 minutes): 12 datagrams an hour sent by an idle node.
//! A peer unheard for `peer_ttl` (three periods and a half) is forgotten.

mod codec;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub use codec::{Body, Datagram, DecodeError, LONG_LEN, MAGIC, SHORT_LEN, VERSION};

use crate::id::Id;

/// The IPv4 group (administratively scoped, RFC 2365; sent with TTL 1).
pub const GROUP_V4: std::net::Ipv4Addr = std::net::Ipv4Addr::new(239, 255, 80, 83);
/// The IPv6 group: link-local scope (ff02), so routers never forward it.
pub const GROUP_V6: std::net::Ipv6Addr = std::net::Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x5053);
/// The UDP port of both groups.
pub const GROUP_PORT: u16 = 6771;

/// Tunables.
#[derive(Clone, Debug)]
pub struct LanConfig {
    /// Run LAN discovery at all (`--no-lan` turns it off).
    pub enabled: bool,
    /// The period of the multicast ANNOUNCE.
    pub announce_every: Duration,
    /// HELLOs sent at start, this far apart.
    pub hellos: u32,
    /// The gap between start HELLOs.
    pub hello_gap: Duration,
    /// A peer unheard this long is forgotten.
    pub peer_ttl: Duration,
    /// Most LAN peers remembered (a flood of invented IDs fills no more).
    pub max_peers: usize,
    /// Most node IDs per IP address (several nodes on one host are legitimate).
    pub max_per_ip: usize,
    /// Most unicast answers (ANNOUNCE to a HELLO, HAVE to a WANT) per second, so the group
    /// cannot make this node flood someone.
    pub answers_per_sec: u32,
}

impl Default for LanConfig {
    fn default() -> Self {
        LanConfig {
            enabled: true,
            announce_every: Duration::from_secs(300),
            hellos: 2,
            hello_gap: Duration::from_secs(1),
            peer_ttl: Duration::from_secs(1050),
            max_peers: 64,
            max_per_ip: 8,
            answers_per_sec: 32,
        }
    }
}

/// A datagram to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LanTransmit {
    /// `None`: to the multicast groups; otherwise to this peer (its source address).
    pub dest: Option<SocketAddr>,
    /// The encoded datagram.
    pub bytes: Vec<u8>,
}

/// A node on this link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LanPeer {
    /// Its node ID (as it says; the DHT verifies it like any contact's).
    pub node: Id,
    /// Its DHT and wire address: the datagram's source IP and the port it names.
    pub addr: SocketAddr,
    /// When it was first heard.
    pub first_seen: Instant,
    /// When it was last heard.
    pub last_seen: Instant,
}

/// What the node learns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LanEvent {
    /// A node on the link, new or at a new address.
    PeerFound {
        /// Its ID.
        node: Id,
        /// Its DHT and wire address.
        addr: SocketAddr,
    },
    /// A peer was not heard for `peer_ttl`.
    PeerGone {
        /// Its ID.
        node: Id,
    },
    /// A node asks who provides `content`; answer with [`Lan::have`] if we do.
    Want {
        /// The content.
        content: Id,
        /// Where to answer.
        from: SocketAddr,
    },
    /// A node on the link provides `content` at `addr`.
    Have {
        /// The content.
        content: Id,
        /// Its wire address.
        addr: SocketAddr,
    },
}

/// Counters for status pages and the figures.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LanCounters {
    /// Multicast datagrams sent.
    pub sent_multicast: u64,
    /// Unicast answers sent.
    pub sent_unicast: u64,
    /// Datagrams received and understood (our own echoes excluded).
    pub received: u64,
    /// Datagrams refused by the decoder.
    pub malformed: u64,
    /// The last decode error, for the log and status.
    pub last_error: Option<String>,
    /// Announces of new peers ignored: the table or the address's quota was full.
    pub refused_full: u64,
    /// Answers not sent: over `answers_per_sec`.
    pub answers_limited: u64,
}

/// The LAN discovery machine (see the module docs).
#[derive(Debug)]
pub struct Lan {
    cfg: LanConfig,
    node: Id,
    port: u16,
    hellos_left: u32,
    next_hello: Option<Instant>,
    next_announce: Option<Instant>,
    next_expire: Option<Instant>,
    peers: BTreeMap<Id, LanPeer>,
    /// Answers sent in the current one-second window.
    answers: (Instant, u32),
    /// When each peer last got a unicast ANNOUNCE from us (one per HELLO burst).
    answered: HashMap<SocketAddr, Instant>,
    tx: VecDeque<LanTransmit>,
    events: VecDeque<LanEvent>,
    counters: LanCounters,
}

impl Lan {
    /// Discovery for node `node` whose DHT and wire port is `port`.
    pub fn new(cfg: LanConfig, node: Id, port: u16, now: Instant) -> Self {
        Lan {
            cfg,
            node,
            port,
            hellos_left: 0,
            next_hello: None,
            next_announce: None,
            next_expire: None,
            peers: BTreeMap::new(),
            answers: (now, 0),
            answered: HashMap::new(),
            tx: VecDeque::new(),
            events: VecDeque::new(),
            counters: LanCounters::default(),
        }
    }

    // ----- commands -----------------------------------------------------------------

    /// Starts: the first HELLO now.
    pub fn start(&mut self, now: Instant) {
        self.hellos_left = self.cfg.hellos.max(1);
        self.next_hello = Some(now);
        self.next_announce = Some(now + self.cfg.announce_every);
        self.next_expire = Some(now + self.cfg.peer_ttl);
        self.handle_timeout(now);
    }

    /// A download of `content` starts: ask the link who provides it.
    pub fn want(&mut self, content: Id) {
        self.multicast(Body::Want(content));
    }

    /// Answers a WANT from `to`: we provide `content`.
    pub fn have(&mut self, now: Instant, content: Id, to: SocketAddr) {
        self.unicast(now, to, Body::Have(content));
    }

    // ----- inputs -------------------------------------------------------------------

    /// A datagram arrived on the group's port or on our sending socket.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        if self.next_announce.is_none() {
            // Not started: nothing is answered before our own first HELLO.
            return;
        }
        let d = match Datagram::decode(bytes) {
            Ok(d) => d,
            Err(e) => {
                self.counters.malformed += 1;
                log::debug!("lan: datagram from {from} refused: {e}");
                self.counters.last_error = Some(format!("from {from}: {e}"));
                return;
            }
        };
        if d.node == self.node {
            // Our own multicast, looped back (or someone using our ID: nothing to learn).
            return;
        }
        self.counters.received += 1;
        let from = crate::proto::codec::canonical_addr(from);
        let addr = SocketAddr::new(from.ip(), d.port);
        let addr = match (from, addr) {
            // A link-local IPv6 source is only usable with its interface.
            (SocketAddr::V6(f), SocketAddr::V6(mut a)) => {
                a.set_scope_id(f.scope_id());
                SocketAddr::V6(a)
            }
            (_, a) => a,
        };
        self.seen(now, d.node, addr);
        match d.body {
            Body::Hello => {
                let last = self.answered.get(&from).copied();
                if last.is_none_or(|t| now.saturating_duration_since(t) >= self.cfg.hello_gap / 2) {
                    self.answered.insert(from, now);
                    self.unicast(now, from, Body::Announce);
                }
            }
            Body::Announce => {}
            Body::Want(content) => self.events.push_back(LanEvent::Want { content, from }),
            Body::Have(content) => self.events.push_back(LanEvent::Have { content, addr }),
        }
    }

    /// Timers: HELLOs at start, the periodic ANNOUNCE, forgetting silent peers.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.next_hello.is_some_and(|t| t <= now) && self.hellos_left > 0 {
            self.hellos_left -= 1;
            self.multicast(Body::Hello);
            self.next_hello = (self.hellos_left > 0).then(|| now + self.cfg.hello_gap);
        }
        if let Some(t) = self.next_announce.filter(|t| *t <= now) {
            self.multicast(Body::Announce);
            // From the due time, not from now: a late wake-up does not shift the schedule.
            let mut next = t + self.cfg.announce_every;
            if next <= now {
                next = now + self.cfg.announce_every;
            }
            self.next_announce = Some(next);
        }
        if self.next_expire.is_some_and(|t| t <= now) {
            self.next_expire = Some(now + self.cfg.announce_every);
            let ttl = self.cfg.peer_ttl;
            let gone: Vec<Id> = self
                .peers
                .values()
                .filter(|p| now.saturating_duration_since(p.last_seen) >= ttl)
                .map(|p| p.node)
                .collect();
            for node in gone {
                self.peers.remove(&node);
                self.events.push_back(LanEvent::PeerGone { node });
            }
            let gap = self.cfg.hello_gap;
            self.answered
                .retain(|_, t| now.saturating_duration_since(*t) < gap);
        }
    }

    // ----- outputs ------------------------------------------------------------------

    /// The next datagram to send.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<LanTransmit> {
        self.tx.pop_front()
    }

    /// The next thing learnt.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<LanEvent> {
        self.events.pop_front()
    }

    /// When to call [`Lan::handle_timeout`] next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.next_hello.filter(|_| self.hellos_left > 0),
            self.next_announce,
            self.next_expire,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    // ----- getters ------------------------------------------------------------------

    /// The nodes on this link, by ID.
    pub fn peers(&self) -> impl Iterator<Item = &LanPeer> {
        self.peers.values()
    }

    /// Whether `addr` is a LAN peer's address (IP and port).
    pub fn is_peer_addr(&self, addr: &SocketAddr) -> bool {
        self.peers.values().any(|p| p.addr == *addr)
    }

    /// The counters.
    pub fn counters(&self) -> &LanCounters {
        &self.counters
    }

    // ----- internals ----------------------------------------------------------------

    fn seen(&mut self, now: Instant, node: Id, addr: SocketAddr) {
        if let Some(p) = self.peers.get_mut(&node) {
            p.last_seen = now;
            // A node bound to `::` is heard on both groups: keep one address, the IPv4 or
            // routable one rather than an IPv6 link-local one (which only works with its
            // interface and means nothing to other nodes).
            if p.addr != addr && (p.addr.is_ipv4() == addr.is_ipv4() || is_link_local_v6(&p.addr)) {
                p.addr = addr;
                self.events.push_back(LanEvent::PeerFound { node, addr });
            }
            return;
        }
        let same_ip = self
            .peers
            .values()
            .filter(|p| p.addr.ip() == addr.ip())
            .count();
        if self.peers.len() >= self.cfg.max_peers || same_ip >= self.cfg.max_per_ip {
            self.counters.refused_full += 1;
            return;
        }
        self.peers.insert(
            node,
            LanPeer {
                node,
                addr,
                first_seen: now,
                last_seen: now,
            },
        );
        self.events.push_back(LanEvent::PeerFound { node, addr });
    }

    fn datagram(&self, body: Body) -> Vec<u8> {
        Datagram {
            node: self.node,
            port: self.port,
            body,
        }
        .encode()
    }

    fn multicast(&mut self, body: Body) {
        self.counters.sent_multicast += 1;
        let bytes = self.datagram(body);
        self.tx.push_back(LanTransmit { dest: None, bytes });
    }

    fn unicast(&mut self, now: Instant, to: SocketAddr, body: Body) {
        if now.saturating_duration_since(self.answers.0) >= Duration::from_secs(1) {
            self.answers = (now, 0);
        }
        if self.answers.1 >= self.cfg.answers_per_sec {
            self.counters.answers_limited += 1;
            return;
        }
        self.answers.1 += 1;
        self.counters.sent_unicast += 1;
        let bytes = self.datagram(body);
        self.tx.push_back(LanTransmit {
            dest: Some(to),
            bytes,
        });
    }
}

fn is_link_local_v6(a: &SocketAddr) -> bool {
    matches!(a, SocketAddr::V6(v6) if (v6.ip().segments()[0] & 0xffc0) == 0xfe80)
}

#[cfg(test)]
mod tests;
