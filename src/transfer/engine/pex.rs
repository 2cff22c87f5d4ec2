//! Peer exchange (wire.md, section 4.16): the PEERS a node sends, listing the peers it has
//! handshaken with and the node ID each proved, and what it does with the PEERS it receives:
//! each entry is a candidate whose dial expects the listed ID.
//!
//! What a hostile lister can do with this is bounded (the spec says so too): every entry
//! goes through the candidate queue (at most `MAX_CANDIDATES` per content), an address is
//! dialled at most once until the engine looks for peers again, the first ID named for an
//! address is the one kept (a DHT record's before any PEERS entry's), and PEX IDs live with
//! the queued addresses, not in the DHT's map, so no flood of entries can push a provider
//! record's ID out.
//!
//! A wrong ID must not cost the real node at that address for long: the dial refused at the
//! handshake proves which node is there. If another entry named that ID for the address
//! while it waited, the address is dialled again at once, expecting it; later, an entry
//! naming it queues the address again (once), while entries naming any other ID for it are
//! dropped.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Instant;

use super::{ConnId, Dials, Engine, MAX_TRIED};
use crate::id::Id;
use crate::proto::wire::{self, Message, PexPeer};

impl Engine {
    /// Sends `conn` the peers of `content` we completed a handshake with, each at the port it
    /// said it accepts connections on and with the node ID its session proved (the reactor
    /// refuses a HANDSHAKE naming another), each address once.
    pub(super) fn send_peer_list(&mut self, now: Instant, conn: ConnId, content: Id) {
        let Some(c) = self.contents.get(&content) else {
            return;
        };
        let mut seen = HashSet::new();
        let peers: Vec<PexPeer> = c
            .conns
            .iter()
            .filter(|k| **k != conn)
            .filter_map(|k| self.conns.get(k))
            .filter_map(|k| {
                let h = k.remote.as_ref()?;
                let addr = SocketAddr::new(k.addr.ip(), h.listen_port);
                // Two peers behind one NAT may name the same port: one entry per address.
                (h.listen_port != 0 && seen.insert(addr)).then_some(PexPeer {
                    addr,
                    node_id: h.node_id,
                })
            })
            .take(wire::MAX_PEERS)
            .collect();
        if !peers.is_empty() {
            self.send(conn, now, Message::Peers(peers));
        }
    }

    /// A PEERS for `content`: each entry becomes a candidate whose dial expects its ID. An
    /// entry naming our own ID or a banned one is dropped (it is us, or a peer we will not
    /// talk to, whatever its address).
    pub(super) fn on_peers(&mut self, now: Instant, content: Id, peers: Vec<PexPeer>) {
        for p in peers {
            if p.node_id == self.node_id || self.bans.nodes.contains(&p.node_id) {
                continue;
            }
            self.add_candidate(&content, p.addr, Some(p.node_id));
        }
        self.connect_more(now, content);
    }

    /// A dial of ours reached a node that proved `proven`, not the node ID it expected
    /// (secure.md section 3). If only a PEERS entry named the expected ID, the address is
    /// known to hold `proven` (module docs); an ID a DHT record named is left to the next
    /// provider search. The driver closes the connection next ([`Engine::closed`]), which
    /// dials the next candidate.
    pub fn wrong_peer(&mut self, conn: ConnId, proven: Id) {
        let Some(k) = self.conns.get(&conn) else {
            return;
        };
        let (Some(pex), Some(content), addr) = (k.pex, k.content, k.addr) else {
            return;
        };
        if proven == self.node_id || self.bans.nodes.contains(&proven) {
            return;
        }
        let Some(c) = self.contents.get_mut(&content) else {
            return;
        };
        let d = c.dials();
        if d.proven.len() >= MAX_TRIED {
            d.proven.clear();
        }
        d.proven.insert(addr, proven);
        if pex.alt == Some(proven) {
            // First in line: the dial that `closed` makes next goes there.
            self.add_candidate(&content, addr, Some(proven));
            if let Some(d) = self
                .contents
                .get_mut(&content)
                .and_then(|c| c.dials.as_mut())
            {
                if d.candidates.back() == Some(&addr) {
                    d.candidates.pop_back();
                    d.candidates.push_front(addr);
                }
            }
        }
    }
}

impl Dials {
    /// Whether an address dialled already is queued again for a PEERS entry naming `pex_id`:
    /// only if a dial there proved that very ID (then it is forgotten as tried, so that it is
    /// dialled once more).
    pub(super) fn retry_proven(&mut self, addr: SocketAddr, pex_id: Option<Id>) -> bool {
        let retry = pex_id.is_some() && self.proven.get(&addr) == pex_id.as_ref();
        if retry {
            self.proven.remove(&addr);
            self.tried.remove(&addr);
        }
        retry
    }
}
