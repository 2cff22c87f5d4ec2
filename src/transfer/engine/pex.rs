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

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Instant;

use super::{ConnId, Engine};
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
            if p.node_id == self.node_id || self.banned_nodes.contains(&p.node_id) {
                continue;
            }
            self.add_candidate(&content, p.addr, Some(p.node_id));
        }
        self.connect_more(now, content);
    }
}
